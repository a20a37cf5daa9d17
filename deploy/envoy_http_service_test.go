package deploy_test

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// Names that envoy-http-service.yaml and the tests agree on.
const (
	envoyHTTPServiceConfig = "envoy/envoy-http-service.yaml"
	forwardAuthCluster     = "ory-ext-authz-forward-auth"
	headerMutationFilter   = "envoy.filters.http.header_mutation"
	// forwardAuthPort is the --forward-auth-addr port of the examples
	// (the flag has no default: forward-auth is off unless asked for).
	forwardAuthPort = 9004
	// envoyAuthHeadersToRemove is the header of a 200 answer in which an
	// HTTP authorization server names request headers for Envoy to remove
	// (ext_authz.h: Headers::EnvoyAuthHeadersToRemove, read by
	// RawHttpClientImpl::toResponse).
	envoyAuthHeadersToRemove = "x-envoy-auth-headers-to-remove"
)

// envoyDeniedHeaders are the headers of a denial Envoy passes to the client
// whatever allowed_client_headers lists (ClientConfig::toClientMatchers).
var envoyDeniedHeaders = []string{":status", "content-length", "www-authenticate", "location"}

// headerMutationOf is the header_mutation filter's config.
func headerMutationOf(t *testing.T, s *envoySetup) *headermutationv3.HeaderMutation {
	t.Helper()
	for _, f := range s.hcm.GetHttpFilters() {
		if f.GetName() == headerMutationFilter {
			return unpack[*headermutationv3.HeaderMutation](t, f.GetTypedConfig())
		}
	}
	t.Fatalf("no %s filter", headerMutationFilter)
	return nil
}

// exactNames returns the exact patterns of l, failing t on any other kind
// (a prefix or a regex could let through what the test does not list).
func exactNames(t *testing.T, what string, l *matcherv3.ListStringMatcher) []string {
	t.Helper()
	var out []string
	for _, p := range l.GetPatterns() {
		e, ok := p.GetMatchPattern().(*matcherv3.StringMatcher_Exact)
		if !ok || p.GetIgnoreCase() {
			t.Errorf("%s: pattern %v, want exact lower-case names only", what, p)
			continue
		}
		out = append(out, e.Exact)
	}
	slices.Sort(out)
	return out
}

// httpServiceTable is the route table the http_service variant is served
// with: the Deployment's (deploy/kubernetes/configmap-routes.yaml).
func httpServiceTable(t *testing.T) (*routes.Table, string) {
	t.Helper()
	_, where, data := deploymentRoutes(t, loadKubernetes(t))
	table, err := routes.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return table, where
}

// TestEnvoyHTTPServiceConfig: envoy-http-service.yaml parses strictly and
// validates like envoy.yaml, and is wired to the server's forward-auth
// listener as ext_authz_http_impl.cc reads an http_service: the /envoy
// prefix, the headers the server reads, the answer's Authorization and
// identity headers (every one the route table sets) copied upstream with
// overwrite, Kratos' cookies to the client, a denial's headers to the
// client; the client's identity headers removed before ext_authz; jwt_authn
// as in envoy.yaml except for preflights.
func TestEnvoyHTTPServiceConfig(t *testing.T) {
	s := loadEnvoy(t, envoyHTTPServiceConfig)
	t.Logf("validated %d typed configs: %s", len(s.anyTypes), strings.Join(s.anyTypes, ", "))
	table, where := httpServiceTable(t)
	idNames := slices.Sorted(slices.Values(table.HeaderNames()))
	if len(idNames) == 0 {
		t.Fatalf("%s sets no identity header: the test would check nothing", where)
	}
	hs := s.extAuthz.GetHttpService()

	t.Run("filter order", func(t *testing.T) {
		var names []string
		for _, f := range s.hcm.GetHttpFilters() {
			names = append(names, f.GetName())
		}
		// header_mutation must remove the client's identity headers before
		// ext_authz sets the server's; jwt_authn must see ext_authz's JWT.
		want := []string{headerMutationFilter, extAuthzFilter, jwtAuthnFilter, routerFilter}
		if !slices.Equal(names, want) {
			t.Errorf("http_filters = %v, want %v", names, want)
		}
	})

	t.Run("http_service asks the forward-auth listener", func(t *testing.T) {
		if hs == nil || s.extAuthz.GetGrpcService() != nil {
			t.Fatal("ext_authz is not an http_service")
		}
		if hs.GetPathPrefix() != authz.ForwardAuthEnvoyPrefix || hs.GetPathOverride() != "" {
			t.Errorf("path_prefix %q path_override %q, want the prefix %q the server serves", hs.GetPathPrefix(), hs.GetPathOverride(), authz.ForwardAuthEnvoyPrefix)
		}
		su := hs.GetServerUri()
		if su.GetCluster() != forwardAuthCluster {
			t.Fatalf("server_uri cluster %q, want %q", su.GetCluster(), forwardAuthCluster)
		}
		c := s.clusters[forwardAuthCluster]
		if c == nil {
			t.Fatalf("no cluster %s", forwardAuthCluster)
		}
		if len(c.GetTypedExtensionProtocolOptions()) != 0 {
			t.Errorf("cluster %s sets protocol options: the forward-auth listener speaks HTTP/1.1", forwardAuthCluster)
		}
		u, err := url.Parse(su.GetUri())
		if err != nil || u.Scheme != "http" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			t.Errorf("server_uri uri %q, want http://host:port (the listener has no TLS; the path is path_prefix's)", su.GetUri())
		}
		jwksHosts := map[string]bool{}
		for _, ep := range s.clusters[jwksCluster].GetLoadAssignment().GetEndpoints() {
			for _, lb := range ep.GetLbEndpoints() {
				jwksHosts[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = true
			}
		}
		var n int
		for _, ep := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range ep.GetLbEndpoints() {
				n++
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if sa.GetPortValue() != forwardAuthPort {
					t.Errorf("cluster %s: endpoint port %d, want --forward-auth-addr :%d", forwardAuthCluster, sa.GetPortValue(), forwardAuthPort)
				}
				if !jwksHosts[sa.GetAddress()] {
					t.Errorf("cluster %s: endpoint %s is not a host of %s (the same server)", forwardAuthCluster, sa.GetAddress(), jwksCluster)
				}
				if u != nil && (u.Hostname() != sa.GetAddress() || u.Port() != strconv.Itoa(int(sa.GetPortValue()))) {
					t.Errorf("server_uri host %s, cluster endpoint %s:%d", u.Host, sa.GetAddress(), sa.GetPortValue())
				}
				// Health-checked on the HTTP listener's /readyz.
				if p := lb.GetEndpoint().GetHealthCheckConfig().GetPortValue(); p != addrPort(t, config.DefaultHTTPAddr) {
					t.Errorf("cluster %s: health_check_config port %d, want the server's HTTP port %s", forwardAuthCluster, p, config.DefaultHTTPAddr)
				}
			}
		}
		if n == 0 {
			t.Errorf("cluster %s has no endpoint", forwardAuthCluster)
		}
		if d := su.GetTimeout().AsDuration(); d <= config.DefaultWhoamiTimeout {
			t.Errorf("server_uri timeout %s must exceed the default --whoami-timeout %s", d, config.DefaultWhoamiTimeout)
		}
		if s.extAuthz.GetFailureModeAllow() {
			t.Error("failure_mode_allow is true: an unreachable server would let every request through")
		}
		// Envoy turns a 5xx answer into an error (toResponse), so the
		// server's 503 for Ory trouble is status_on_error.
		if code := s.extAuthz.GetStatusOnError().GetCode(); code != http.StatusServiceUnavailable {
			t.Errorf("status_on_error = %d, want 503", code)
		}
		if s.extAuthz.GetWithRequestBody() != nil {
			t.Error("with_request_body set: the server reads no body")
		}
	})

	t.Run("health check asks the server's readiness", func(t *testing.T) {
		hcs := s.clusters[forwardAuthCluster].GetHealthChecks()
		if len(hcs) == 0 {
			t.Fatalf("cluster %s has no health check", forwardAuthCluster)
		}
		addrs := servertest.Start(t, server.Options{Authz: &authv3.UnimplementedAuthorizationServer{}, ShutdownTimeout: time.Second})
		for _, hc := range hcs {
			h := hc.GetHttpHealthCheck()
			if h == nil {
				t.Fatalf("health check %v is not http_health_check", hc)
			}
			resp, _ := servertest.Do(t, http.MethodGet, "http://"+addrs.HTTP+h.GetPath(), nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s on the server's HTTP listener: %d, want 200", h.GetPath(), resp.StatusCode)
			}
		}
	})

	t.Run("allowed_headers are what the server reads", func(t *testing.T) {
		checkAllowedHeaders(t, s.extAuthz.GetAllowedHeaders().GetPatterns())
		// The deprecated authorization_request.allowed_headers and the
		// top-level field at once: Envoy refuses the config.
		ar := hs.GetAuthorizationRequest()
		if fd := ar.ProtoReflect().Descriptor().Fields().ByName("allowed_headers"); ar != nil && ar.ProtoReflect().Has(fd) {
			t.Error("authorization_request.allowed_headers is set: deprecated, and Envoy refuses it next to allowed_headers")
		}
		if len(ar.GetHeadersToAdd()) != 0 {
			t.Errorf("authorization_request.headers_to_add %v: nothing the server reads comes from Envoy's config", ar.GetHeadersToAdd())
		}
	})

	t.Run("authorization_response", func(t *testing.T) {
		ar := hs.GetAuthorizationResponse()
		want := slices.Sorted(slices.Values(append([]string{"authorization"}, idNames...)))
		if got := exactNames(t, "allowed_upstream_headers", ar.GetAllowedUpstreamHeaders()); !slices.Equal(got, want) {
			t.Errorf("allowed_upstream_headers %q, want %q: the JWT and every identity header of %s, nothing else", got, want, where)
		}
		if len(ar.GetAllowedUpstreamHeadersToAppend().GetPatterns()) != 0 {
			t.Error("allowed_upstream_headers_to_append set: an appended header keeps the client's value next to the server's")
		}
		if got := exactNames(t, "allowed_client_headers_on_success", ar.GetAllowedClientHeadersOnSuccess()); !slices.Equal(got, []string{"set-cookie"}) {
			t.Errorf("allowed_client_headers_on_success %q, want [set-cookie] (Kratos' refreshed session cookie)", got)
		}
		client := exactNames(t, "allowed_client_headers", ar.GetAllowedClientHeaders())
		if len(client) == 0 {
			t.Error("allowed_client_headers empty: Envoy would pass every header of a denial to the client")
		}
		for _, h := range client {
			if h == "authorization" || slices.Contains(idNames, h) {
				t.Errorf("allowed_client_headers lists %s, which is for the upstream", h)
			}
		}
		if len(ar.GetDynamicMetadataFromHeaders().GetPatterns()) != 0 {
			t.Error("dynamic_metadata_from_headers set: nothing reads it")
		}
	})

	t.Run("header_mutation removes the client's identity headers", func(t *testing.T) {
		hm := headerMutationOf(t, s)
		m := hm.GetMutations()
		var removed []string
		for _, rm := range m.GetRequestMutations() {
			r, ok := rm.GetAction().(*mutationv3.HeaderMutation_Remove)
			if !ok {
				t.Errorf("request mutation %v is not a remove", rm)
				continue
			}
			removed = append(removed, r.Remove)
		}
		slices.Sort(removed)
		if !slices.Equal(removed, idNames) {
			t.Errorf("header_mutation removes %q, want every identity header of %s: %q", removed, where, idNames)
		}
		read := authz.HeadersRead(config.DefaultSessionTokenHeader)
		for _, h := range removed {
			if slices.Contains(read, h) {
				t.Errorf("header_mutation removes %s, which the server reads", h)
			}
		}
		if len(m.GetResponseMutations()) != 0 || len(m.GetQueryParameterMutations()) != 0 || len(m.GetRequestTrailersMutations()) != 0 || len(m.GetResponseTrailersMutations()) != 0 {
			t.Errorf("header_mutation does more than remove request headers: %v", m)
		}
	})

	t.Run("jwt_authn verifies what Kratos issues", func(t *testing.T) {
		checkJWTProviders(t, s)
		for name, p := range s.jwt.GetProviders() {
			checkRemoteJWKS(t, s, name, p.GetRemoteJwks())
		}
		// Preflights are not bypassed: the server's OK answer over HTTP
		// cannot remove the client's Authorization.
		if s.jwt.GetBypassCorsPreflight() {
			t.Error("bypass_cors_preflight is true: a preflight's forged Authorization would reach the upstream unverified")
		}
		rules := s.jwt.GetRules()
		if len(rules) != 2 {
			t.Fatalf("jwt_authn rules %v, want the preflight rule and the catch-all", rules)
		}
		pre, all := rules[0], rules[1]
		if pre.GetMatch().GetPrefix() != "/" || !isPreflightMatch(pre.GetMatch()) {
			t.Errorf("first rule matches %v, want every preflight (OPTIONS with origin and access-control-request-method)", pre.GetMatch())
		}
		checkAllowMissingRequirement(t, s, "preflight rule", pre.GetRequires())
		if all.GetMatch().GetPrefix() != "/" || len(all.GetMatch().GetHeaders()) != 0 {
			t.Errorf("last rule matches %v, want the catch-all prefix /", all.GetMatch())
		}
		if _, ok := s.jwt.GetProviders()[all.GetRequires().GetProviderName()]; !ok {
			t.Errorf("catch-all rule requires %v, want the provider", all.GetRequires())
		}
	})

	t.Run("routes", func(t *testing.T) {
		filters := map[string]bool{}
		for _, f := range s.hcm.GetHttpFilters() {
			filters[f.GetName()] = true
		}
		vhosts := s.hcm.GetRouteConfig().GetVirtualHosts()
		if len(vhosts) != 1 {
			t.Fatalf("%d virtual hosts, want 1", len(vhosts))
		}
		vh := vhosts[0]
		// The router applies these after ext_authz: they would remove the
		// server's headers too.
		for _, h := range vh.GetRequestHeadersToRemove() {
			if h == "authorization" || slices.Contains(idNames, h) {
				t.Errorf("virtual host removes %s in the router, after ext_authz set it", h)
			}
		}
		if !slices.Contains(vh.GetRequestHeadersToRemove(), strings.ToLower(config.DefaultSessionTokenHeader)) {
			t.Errorf("virtual host keeps %s: the session token would reach the upstream", config.DefaultSessionTokenHeader)
		}
		routesList := vh.GetRoutes()
		if len(routesList) == 0 || routesList[len(routesList)-1].GetMatch().GetPrefix() != "/" {
			t.Fatal("the last route must be the catch-all prefix /")
		}
		var public int
		for _, r := range routesList {
			for key := range r.GetTypedPerFilterConfig() {
				if !filters[key] {
					t.Errorf("route %s: typed_per_filter_config[%s] names no filter of the chain", r.GetName(), key)
				}
			}
			ea := perRouteExtAuthz(t, r)
			jp := perRouteJWT(t, r)
			switch {
			case ea.GetDisabled():
				public++
				if !jp.GetDisabled() {
					t.Errorf("route %s: ext_authz disabled, jwt_authn not", r.GetName())
				}
				if !slices.Contains(r.GetRequestHeadersToRemove(), "authorization") {
					t.Errorf("route %s: without ext_authz a client's Authorization reaches the upstream unverified", r.GetName())
				}
			case ea != nil:
				// check_settings (context_extensions) are for a gRPC service
				// only: the route table must say it.
				t.Errorf("route %s: ext_authz per-route %v, which an http_service ignores; put it in the route table", r.GetName(), ea)
			default:
				for _, h := range r.GetRequestHeadersToRemove() {
					if h == "authorization" || slices.Contains(idNames, h) {
						t.Errorf("route %s removes %s in the router, after ext_authz set it", r.GetName(), h)
					}
				}
				if jp.GetDisabled() {
					t.Errorf("route %s: jwt_authn disabled while ext_authz runs", r.GetName())
				}
			}
		}
		if public == 0 {
			t.Error("no public route")
		}
		// Each rule of the table, at its sample path, lands on an Envoy
		// route whose JWT requirement fits its on_missing.
		defaults := routes.Settings{TokenizeAs: kratosdev.MeshTemplate, OnMissing: routes.OnMissing(config.DefaultOnMissing)}
		for _, rule := range table.Rules() {
			path, ok := istioRouteSamples[rule.Name()]
			if !ok {
				t.Fatalf("%s: %s has no sample path in istioRouteSamples", where, rule)
			}
			r := envoyRouteFor(t, s, path)
			if perRouteExtAuthz(t, r).GetDisabled() {
				t.Errorf("%s (sample %s) lands on route %s, where no check runs", rule, path, r.GetName())
				continue
			}
			jp := perRouteJWT(t, r)
			if rule.Settings(defaults).OnMissing == routes.OnMissingAllow {
				checkAllowMissing(t, s, r.GetName(), jp)
			} else if jp != nil {
				checkJWTRequired(t, s, r.GetName(), jp)
				if req := s.jwt.GetRequirementMap()[jp.GetRequirementName()]; req.GetRequiresAny() != nil || req.GetAllowMissing() != nil {
					t.Errorf("%s (sample %s) needs a session, but route %s lets a request without a JWT on", rule, path, r.GetName())
				}
			}
		}
	})
}

// isPreflightMatch: m matches OPTIONS requests with origin and
// access-control-request-method, as jwt_authn's bypass_cors_preflight and
// the server tell a preflight.
func isPreflightMatch(m *routev3.RouteMatch) bool {
	var method, origin, acrm bool
	for _, h := range m.GetHeaders() {
		if h.GetInvertMatch() {
			return false
		}
		switch h.GetName() {
		case ":method":
			method = h.GetStringMatch().GetExact() == http.MethodOptions
		case "origin":
			origin = h.GetPresentMatch()
		case "access-control-request-method":
			acrm = h.GetPresentMatch()
		default:
			return false
		}
	}
	return method && origin && acrm
}

// checkAllowMissingRequirement: req lets a missing JWT pass and verifies a
// present one with the provider.
func checkAllowMissingRequirement(t *testing.T, s *envoySetup, what string, req *jwtv3.JwtRequirement) {
	t.Helper()
	var provider, missing bool
	for _, r := range req.GetRequiresAny().GetRequirements() {
		if _, ok := s.jwt.GetProviders()[r.GetProviderName()]; ok {
			provider = true
		}
		if r.GetAllowMissing() != nil {
			missing = true
		}
		if r.GetAllowMissingOrFailed() != nil {
			t.Errorf("%s: allow_missing_or_failed lets invalid JWTs through", what)
		}
	}
	if !provider || !missing {
		t.Errorf("%s: requirement %v, want requires_any of the provider and allow_missing", what, req)
	}
}

// perRouteExtAuthz is the route's ext_authz per-route config, nil if none.
func perRouteExtAuthz(t *testing.T, r *routev3.Route) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	if a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]; ok {
		return unpack[*extauthzv3.ExtAuthzPerRoute](t, a)
	}
	return nil
}

// perRouteJWT is the route's jwt_authn per-route config, nil if none.
func perRouteJWT(t *testing.T, r *routev3.Route) *jwtv3.PerRouteConfig {
	t.Helper()
	if a, ok := r.GetTypedPerFilterConfig()[jwtAuthnFilter]; ok {
		return unpack[*jwtv3.PerRouteConfig](t, a)
	}
	return nil
}

// envoyRouteFor is the route Envoy picks for path: the first whose prefix
// it starts with (the routes match by prefix only).
func envoyRouteFor(t *testing.T, s *envoySetup, path string) *routev3.Route {
	t.Helper()
	for _, vh := range s.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			p, ok := r.GetMatch().GetPathSpecifier().(*routev3.RouteMatch_Prefix)
			if !ok || len(r.GetMatch().GetHeaders()) != 0 {
				t.Fatalf("route %s: match %v; this test follows prefix routes only", r.GetName(), r.GetMatch())
			}
			if strings.HasPrefix(path, p.Prefix) {
				return r
			}
		}
	}
	t.Fatalf("no route for %s", path)
	return nil
}

// envoyHTTP plays, without Envoy, what envoy-http-service.yaml makes
// Envoy do with one request, per the sources README.md cites: route by
// prefix; header_mutation; ext_authz's http_service request to the real
// server's forward-auth listener and the application of its answer;
// jwt_authn against the keys the server publishes; the router's header
// removal.
type envoyHTTP struct {
	s       *envoySetup
	forward string // the forward-auth listener, host:port
	jwt     jwtVerifier
	client  *http.Client
	// check is called with every answer of the server, for checks of
	// what the server sent that Envoy would drop.
	check func(t *testing.T, resp *http.Response)
}

// do sends method host+path with the client's headers h through Envoy.
func (e *envoyHTTP) do(t *testing.T, method, host, path string, h map[string]string) proxyOutcome {
	t.Helper()
	req := map[string]string{}
	for k, v := range h {
		req[strings.ToLower(k)] = v
	}
	// The connection manager (use_remote_address, a plaintext listener)
	// sets these before any filter.
	req["x-forwarded-proto"] = "http"
	req["x-request-id"] = "envoy-http-service-test"
	r := envoyRouteFor(t, e.s, path)
	out := proxyOutcome{route: r.GetName(), client: http.Header{}}
	for _, m := range headerMutationOf(t, e.s).GetMutations().GetRequestMutations() {
		delete(req, m.GetRemove())
	}
	if !perRouteExtAuthz(t, r).GetDisabled() {
		out.checked = true
		if !e.authorize(t, method, host, path, req, &out) {
			return out
		}
	}
	if !e.jwtAuthn(t, method, r, req) {
		out.status = http.StatusUnauthorized
		return out
	}
	for _, vh := range e.s.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, name := range vh.GetRequestHeadersToRemove() {
			delete(req, name)
		}
	}
	for _, name := range r.GetRequestHeadersToRemove() {
		delete(req, name)
	}
	out.upstream = req
	return out
}

// authorize is ext_authz's http_service: the authorization request of
// CheckRequestUtils::createHttpCheck and RawHttpClientImpl::check, the
// answer applied as Filter::onComplete does. It reports whether the
// request goes on.
func (e *envoyHTTP) authorize(t *testing.T, method, host, path string, req map[string]string, out *proxyOutcome) bool {
	t.Helper()
	hs := e.s.extAuthz.GetHttpService()
	ar := hs.GetAuthorizationResponse()
	areq, err := http.NewRequestWithContext(t.Context(), method, "http://"+e.forward+hs.GetPathPrefix()+path, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	// :authority is the original host; Authorization always goes; no
	// header of Go's own.
	areq.Host = host
	areq.Header.Set("User-Agent", "")
	for name, v := range req {
		if name == "authorization" || slices.ContainsFunc(e.s.extAuthz.GetAllowedHeaders().GetPatterns(), func(p *matcherv3.StringMatcher) bool { return matchString(t, p, name) }) {
			areq.Header.Set(name, v)
		}
	}
	resp, body := askForwardAuth(t, e.client, areq)
	e.check(t, resp)
	matches := func(l *matcherv3.ListStringMatcher, name string) bool {
		return slices.ContainsFunc(l.GetPatterns(), func(p *matcherv3.StringMatcher) bool { return matchString(t, p, name) })
	}
	switch {
	case resp.StatusCode >= 500:
		// An error: status_on_error, no body.
		out.status = int(e.s.extAuthz.GetStatusOnError().GetCode())
		return false
	case resp.StatusCode == http.StatusOK:
		var remove []string
		for name, vs := range resp.Header {
			name = strings.ToLower(name)
			if name == envoyAuthHeadersToRemove {
				for _, v := range vs {
					for _, n := range strings.Split(v, ",") {
						if n = strings.TrimSpace(n); n != "" {
							remove = append(remove, strings.ToLower(n))
						}
					}
				}
				continue
			}
			for _, v := range vs {
				if matches(ar.GetAllowedUpstreamHeaders(), name) {
					req[name] = v
				}
				if matches(ar.GetAllowedClientHeadersOnSuccess(), name) {
					out.client.Add(name, v)
				}
			}
		}
		for _, n := range remove {
			delete(req, n)
		}
		return true
	default:
		out.status, out.body = resp.StatusCode, string(body)
		for name, vs := range resp.Header {
			name = strings.ToLower(name)
			if slices.Contains(envoyDeniedHeaders, name) || matches(ar.GetAllowedClientHeaders(), name) {
				out.client[http.CanonicalHeaderKey(name)] = vs
			}
		}
		return false
	}
}

// jwtAuthn is jwt_authn for route r: the route's requirement, or the
// first rule that matches; a present JWT must verify against the keys the
// server publishes and carry the issuer.
func (e *envoyHTTP) jwtAuthn(t *testing.T, method string, r *routev3.Route, req map[string]string) bool {
	t.Helper()
	jp := perRouteJWT(t, r)
	preflight := method == http.MethodOptions && req["origin"] != "" && req["access-control-request-method"] != ""
	if jp.GetDisabled() || (preflight && e.s.jwt.GetBypassCorsPreflight()) {
		return true
	}
	var requirement *jwtv3.JwtRequirement
	if jp != nil {
		requirement = e.s.jwt.GetRequirementMap()[jp.GetRequirementName()]
	} else {
		for _, rule := range e.s.jwt.GetRules() {
			if isPreflightMatch(rule.GetMatch()) && !preflight {
				continue
			}
			requirement = rule.GetRequires()
			break
		}
	}
	tok, present := strings.CutPrefix(req["authorization"], "Bearer ")
	present = present && tok != ""
	valid := present && e.jwt.verifies(tok)
	if requirement.GetProviderName() != "" {
		return valid
	}
	checkAllowMissingRequirement(t, e.s, "requirement of route "+r.GetName(), requirement)
	return !present || valid
}

func (e *envoyHTTP) removesUnset() bool { return false }

// TestEnvoyHTTPServiceRoutesAgainstServer plays Envoy's part for
// envoy-http-service.yaml without Envoy (envoyHTTP, per the sources
// deploy/envoy/README.md cites): header_mutation, the HTTP authorization
// request Envoy builds to the real server's forward-auth listener, the
// answer applied as ext_authz applies it (and no answer header lost on the
// way), jwt_authn and the router, for every rule of the route table
// (checkForwardAuthRules).
func TestEnvoyHTTPServiceRoutesAgainstServer(t *testing.T) {
	s := loadEnvoy(t, envoyHTTPServiceConfig)
	fs := startForwardAuthStack(t)
	checkSameKeys(t, fetchRemoteJWKS(t, s, fs.checks.httpAddr), fs.jwt.pub)
	ar := s.extAuthz.GetHttpService().GetAuthorizationResponse()
	hmatch := func(l *matcherv3.ListStringMatcher, name string) bool {
		return slices.ContainsFunc(l.GetPatterns(), func(p *matcherv3.StringMatcher) bool { return matchString(t, p, name) })
	}
	e := &envoyHTTP{
		s: s, forward: fs.checks.forwardAddr, jwt: fs.jwt,
		client: &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		// Nothing the server answers is lost on the way: on 200 every
		// header is for the upstream or the client (or for no one: the
		// answer's own framing); on a denial every header reaches the
		// client.
		check: func(t *testing.T, resp *http.Response) {
			t.Helper()
			for name := range resp.Header {
				name = strings.ToLower(name)
				switch {
				case name == "date" || name == "content-length" || name == envoyAuthHeadersToRemove:
					// Consumed by ext_authz itself (ext_authz_http_impl.cc).
				case resp.StatusCode == http.StatusOK:
					if name != "cache-control" && !hmatch(ar.GetAllowedUpstreamHeaders(), name) && !hmatch(ar.GetAllowedClientHeadersOnSuccess(), name) {
						t.Errorf("the server's 200 sets %s, which Envoy passes to no one", name)
					}
				case resp.StatusCode < 500:
					if !slices.Contains(envoyDeniedHeaders, name) && !hmatch(ar.GetAllowedClientHeaders(), name) {
						t.Errorf("the server's %d sets %s, which Envoy does not pass to the client", resp.StatusCode, name)
					}
				}
			}
		},
	}
	t.Cleanup(e.client.CloseIdleConnections)
	// Envoy's listener is plaintext: x-forwarded-proto is http.
	checkForwardAuthRules(t, fs, e, "http")
}
