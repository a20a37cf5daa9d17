package deploy_test

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// Every typed_config type that envoy.yaml uses must be registered, or
	// protojson cannot parse its Any. The ones imported by name above
	// register themselves; these are used only inside Anys.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// Names that envoy.yaml and the tests agree on.
const (
	envoyConfig      = "envoy/envoy.yaml"
	authzCluster     = "ory-ext-authz"
	extAuthzFilter   = "envoy.filters.http.ext_authz"
	jwtAuthnFilter   = "envoy.filters.http.jwt_authn"
	routerFilter     = "envoy.filters.http.router"
	hcmFilter        = "envoy.filters.network.http_connection_manager"
	httpProtocolOpts = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// tracingHeaders may pass to the server besides what it reads: they only
// correlate its logs and spans with the request's.
var tracingHeaders = []string{
	"traceparent", "tracestate",
	"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
}

// envoySetup is envoy.yaml, parsed and validated, with the parts the tests
// look at unpacked from their Anys.
type envoySetup struct {
	boot     *bootstrapv3.Bootstrap
	listener *listenerv3.Listener
	hcmAny   *anypb.Any // the listener filter's typed_config
	hcm      *hcmv3.HttpConnectionManager
	extAuthz *extauthzv3.ExtAuthz
	jwt      *jwtv3.JwtAuthentication
	jwtAny   *anypb.Any // jwt_authn's typed_config inside hcm
	clusters map[string]*clusterv3.Cluster
	anyTypes []string
	// authzCluster is the cluster ext_authz asks: envoy_grpc's, or
	// http_service's server_uri's.
	authzCluster string
}

// loadEnvoy parses an Envoy bootstrap YAML strictly, validates it with the
// generated PGV rules, then unpacks and validates every Any inside it.
func loadEnvoy(t *testing.T, path string) *envoySetup {
	t.Helper()
	s := &envoySetup{boot: &bootstrapv3.Bootstrap{}, clusters: map[string]*clusterv3.Cluster{}}
	loadProtoYAML(t, path, s.boot)
	if err := s.boot.ValidateAll(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	s.anyTypes = validateAnys(t, s.boot.ProtoReflect(), "bootstrap")

	for _, c := range s.boot.GetStaticResources().GetClusters() {
		s.clusters[c.GetName()] = c
	}
	listeners := s.boot.GetStaticResources().GetListeners()
	if len(listeners) != 1 {
		t.Fatalf("%s: want one listener (the front proxy), got %d", path, len(listeners))
	}
	s.listener = listeners[0]
	for _, fc := range s.listener.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if f.GetName() == hcmFilter {
				s.hcmAny = f.GetTypedConfig()
			}
		}
	}
	if s.hcmAny == nil {
		t.Fatalf("%s: no %s", path, hcmFilter)
	}
	s.hcm = unpack[*hcmv3.HttpConnectionManager](t, s.hcmAny)
	for _, f := range s.hcm.GetHttpFilters() {
		switch f.GetName() {
		case extAuthzFilter:
			s.extAuthz = unpack[*extauthzv3.ExtAuthz](t, f.GetTypedConfig())
		case jwtAuthnFilter:
			s.jwtAny = f.GetTypedConfig()
			s.jwt = unpack[*jwtv3.JwtAuthentication](t, s.jwtAny)
		}
	}
	if s.extAuthz == nil || s.jwt == nil {
		t.Fatalf("%s: want both %s and %s", path, extAuthzFilter, jwtAuthnFilter)
	}
	s.authzCluster = s.extAuthz.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if hs := s.extAuthz.GetHttpService(); hs != nil {
		s.authzCluster = hs.GetServerUri().GetCluster()
	}
	return s
}

// repack writes the (edited) jwt and hcm messages back into their Anys.
func (s *envoySetup) repack(t *testing.T) {
	t.Helper()
	for _, step := range []struct {
		dst *anypb.Any
		src proto.Message
	}{{s.jwtAny, s.jwt}, {s.hcmAny, s.hcm}} {
		if err := step.dst.MarshalFrom(step.src); err != nil {
			t.Fatal(err)
		}
	}
}

// unpack returns the message of an Any as type M.
func unpack[M proto.Message](t *testing.T, a *anypb.Any) M {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
	}
	out, ok := m.(M)
	if !ok {
		var want M
		t.Fatalf("typed_config is %s, want %T", a.GetTypeUrl(), want)
	}
	return out
}

// validator is what protoc-gen-validate generates.
type validator interface{ ValidateAll() error }

// validateAnys finds every google.protobuf.Any below m (typed_config,
// typed_per_filter_config, typed_extension_protocol_options, ...), unpacks
// it, runs its PGV rules, which never descend into an Any by themselves, and
// recurses into it. It returns the type URLs it saw.
func validateAnys(t *testing.T, m protoreflect.Message, path string) []string {
	t.Helper()
	var seen []string
	var visit func(m protoreflect.Message, path string)
	visitValue := func(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) {
		if fd.Message() != nil {
			visit(v.Message(), path)
		}
	}
	visit = func(m protoreflect.Message, path string) {
		if a, ok := m.Interface().(*anypb.Any); ok {
			inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
			if err != nil {
				t.Errorf("%s: unpack %s: %v (is its Go package imported?)", path, a.GetTypeUrl(), err)
				return
			}
			v, ok := inner.(validator)
			if !ok {
				t.Errorf("%s: %T has no ValidateAll", path, inner)
				return
			}
			if err := v.ValidateAll(); err != nil {
				t.Errorf("%s (%s): %v", path, a.GetTypeUrl(), err)
			}
			seen = append(seen, a.GetTypeUrl())
			visit(inner.ProtoReflect(), path+"{"+string(inner.ProtoReflect().Descriptor().FullName())+"}")
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			switch {
			case fd.IsList():
				l := v.List()
				for i := range l.Len() {
					visitValue(fd, l.Get(i), p)
				}
			case fd.IsMap():
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					visitValue(fd.MapValue(), mv, p+"["+k.String()+"]")
					return true
				})
			default:
				visitValue(fd, v, p)
			}
			return true
		})
	}
	visit(m, path)
	return seen
}

func TestEnvoyConfig(t *testing.T) {
	s := loadEnvoy(t, envoyConfig)
	t.Logf("validated %d typed configs: %s", len(s.anyTypes), strings.Join(s.anyTypes, ", "))

	t.Run("filter order", func(t *testing.T) {
		var names []string
		for _, f := range s.hcm.GetHttpFilters() {
			names = append(names, f.GetName())
		}
		// jwt_authn must see the JWT that ext_authz added.
		want := []string{extAuthzFilter, jwtAuthnFilter, routerFilter}
		if !slices.Equal(names, want) {
			t.Errorf("http_filters = %v, want %v", names, want)
		}
	})

	t.Run("authz cluster speaks HTTP/2", func(t *testing.T) {
		name := s.extAuthz.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		if name != authzCluster {
			t.Fatalf("ext_authz envoy_grpc cluster = %q, want %q", name, authzCluster)
		}
		c := s.clusters[name]
		if c == nil {
			t.Fatalf("no cluster %q", name)
		}
		opts, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOpts]
		if !ok {
			t.Fatalf("cluster %s: no typed_extension_protocol_options[%s]", name, httpProtocolOpts)
		}
		hpo := unpack[*httpv3.HttpProtocolOptions](t, opts)
		if hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Errorf("cluster %s: explicit_http_config is not http2_protocol_options: %v", name, hpo)
		}
		// Pings on a quiet connection must stay clear of the server's
		// keepalive policy (two strikes are forgiven, the third is a
		// GOAWAY): twice its MinTime leaves room for jitter and delay.
		if ka := hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive(); ka != nil {
			if iv := ka.GetInterval().AsDuration(); iv < 2*server.DefaultGRPCKeepaliveMinTime {
				t.Errorf("cluster %s: connection_keepalive interval %s, want at least twice the server's keepalive MinTime %s", name, iv, server.DefaultGRPCKeepaliveMinTime)
			}
		}
		if fd := c.ProtoReflect().Descriptor().Fields().ByName("http2_protocol_options"); c.ProtoReflect().Has(fd) {
			t.Errorf("cluster %s: uses the deprecated Cluster.http2_protocol_options", name)
		}
		for _, ep := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range ep.GetLbEndpoints() {
				if p := lb.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); p != addrPort(t, config.DefaultGRPCAddr) {
					t.Errorf("cluster %s: endpoint port %d, want the server's gRPC port %s", name, p, config.DefaultGRPCAddr)
				}
			}
		}
	})

	t.Run("ext_authz fails closed within the whoami timeout", func(t *testing.T) {
		ea := s.extAuthz
		if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("transport_api_version = %v, want V3", ea.GetTransportApiVersion())
		}
		if ea.GetFailureModeAllow() {
			t.Error("failure_mode_allow is true: an unreachable server would let every request through")
		}
		if code := ea.GetStatusOnError().GetCode(); code != 503 {
			t.Errorf("status_on_error = %d, want 503", code)
		}
		timeout := ea.GetGrpcService().GetTimeout().AsDuration()
		if timeout <= config.DefaultWhoamiTimeout {
			t.Errorf("ext_authz timeout %s must exceed the default --whoami-timeout %s", timeout, config.DefaultWhoamiTimeout)
		}
	})

	t.Run("allowed_headers are what the server reads", func(t *testing.T) {
		checkAllowedHeaders(t, s.extAuthz.GetAllowedHeaders().GetPatterns())
	})

	t.Run("jwt_authn verifies what Kratos issues", func(t *testing.T) {
		checkJWTProviders(t, s)
		// Routes without per-route config require the provider.
		rules := s.jwt.GetRules()
		if len(rules) == 0 || rules[len(rules)-1].GetMatch().GetPrefix() != "/" {
			t.Fatalf("jwt_authn rules must end with a catch-all prefix / rule, got %v", rules)
		}
		if _, ok := s.jwt.GetProviders()[rules[len(rules)-1].GetRequires().GetProviderName()]; !ok {
			t.Errorf("catch-all jwt_authn rule requires %v, want a provider", rules[len(rules)-1].GetRequires())
		}
		if !s.jwt.GetBypassCorsPreflight() {
			t.Error("bypass_cors_preflight is false: a preflight (no credentials, let through by ext_authz) would get 401")
		}
		// bypass_cors_preflight lets OPTIONS + Origin +
		// Access-Control-Request-Method on unverified, with whatever
		// Authorization the client wrote. The server removes it from
		// exactly those requests, which it can tell only if both headers
		// reach it (TestEnvoyRoutesAgainstServer checks the answers).
		for _, h := range []string{"origin", "access-control-request-method"} {
			if !slices.ContainsFunc(s.extAuthz.GetAllowedHeaders().GetPatterns(), func(p *matcherv3.StringMatcher) bool { return matchString(t, p, h) }) {
				t.Errorf("allowed_headers drops %q: the server cannot tell the preflights jwt_authn skips", h)
			}
		}
	})

	t.Run("jwt_authn fetches the JWKS the server publishes", func(t *testing.T) {
		for name, p := range s.jwt.GetProviders() {
			checkRemoteJWKS(t, s, name, p.GetRemoteJwks())
		}
	})

	t.Run("routes", func(t *testing.T) { checkRoutes(t, s) })

	t.Run("gRPC health check names a service the server serves", func(t *testing.T) {
		hcs := s.clusters[authzCluster].GetHealthChecks()
		if len(hcs) == 0 {
			t.Fatalf("cluster %s has no health check", authzCluster)
		}
		for _, hc := range hcs {
			g := hc.GetGrpcHealthCheck()
			if g == nil {
				t.Fatalf("cluster %s: health check is not grpc_health_check: %v", authzCluster, hc)
			}
			if got, want := g.GetServiceName(), authv3.Authorization_ServiceDesc.ServiceName; got != want {
				t.Errorf("grpc_health_check service_name = %q, want %q", got, want)
			}
			checkHealthServed(t, g.GetServiceName())
		}
	})
}

// checkAllowedHeaders: the allowed_headers patterns let through every
// header the server reads (authz.HeadersRead), and nothing else but the
// tracing headers.
func checkAllowedHeaders(t *testing.T, patterns []*matcherv3.StringMatcher) {
	t.Helper()
	if len(patterns) == 0 {
		t.Fatal("no allowed_headers: Envoy would send every request header to the server")
	}
	allowed := func(h string) bool {
		return slices.ContainsFunc(patterns, func(p *matcherv3.StringMatcher) bool { return matchString(t, p, h) })
	}
	read := authz.HeadersRead(config.DefaultSessionTokenHeader)
	for _, h := range read {
		if !allowed(h) {
			t.Errorf("the server reads %q, but allowed_headers drops it", h)
		}
	}
	known := append(slices.Clone(read), tracingHeaders...)
	for _, p := range patterns {
		if !slices.ContainsFunc(known, func(h string) bool { return matchString(t, p, h) }) {
			t.Errorf("allowed_headers pattern %v matches no header the server reads and no tracing header", p)
		}
	}
	for _, h := range []string{"x-api-key", "user-agent", "content-type", "x-forwarded-for", "proxy-authorization"} {
		if allowed(h) {
			t.Errorf("allowed_headers lets %q through, which the server does not read", h)
		}
	}
}

// checkJWTProviders: one jwt_authn provider, for Kratos' issuer, reading
// the JWT only from the Authorization header ext_authz sets, fetching the
// keys the server publishes, keeping the JWT for the upstream.
func checkJWTProviders(t *testing.T, s *envoySetup) {
	t.Helper()
	if len(s.jwt.GetProviders()) != 1 {
		t.Fatalf("want one jwt_authn provider, got %d", len(s.jwt.GetProviders()))
	}
	base := loadYAMLMap(t, kratosBaseConfig)
	want := lookupString(t, base, "serve", "public", "base_url")
	for name, p := range s.jwt.GetProviders() {
		if p.GetIssuer() != want {
			t.Errorf("provider %s: issuer %q, want %s's serve.public.base_url %q (Kratos' iss claim)", name, p.GetIssuer(), kratosBaseConfig, want)
		}
		if !p.GetForward() {
			t.Errorf("provider %s: forward is false: the upstream would not see the JWT", name)
		}
		if p.GetRemoteJwks() == nil {
			t.Errorf("provider %s: want remote_jwks (the JWKS the server publishes), not a copy of the keys", name)
		}
		hs := p.GetFromHeaders()
		if len(hs) != 1 || !strings.EqualFold(hs[0].GetName(), "authorization") || hs[0].GetValuePrefix() != "Bearer " {
			t.Errorf("provider %s: from_headers = %v, want only authorization with prefix %q (what ext_authz sets)", name, hs, "Bearer ")
		}
		if len(p.GetFromParams()) > 0 || len(p.GetFromCookies()) > 0 {
			t.Errorf("provider %s: JWTs from params or cookies would bypass ext_authz", name)
		}
	}
}

// jwksCluster is the cluster through which jwt_authn fetches the JWKS.
const jwksCluster = "ory-ext-authz-jwks"

// checkRemoteJWKS: the provider's remote_jwks asks the server's HTTP port
// (--http-addr) for the path its JWKS handler serves, through a cluster to
// the same hosts as ext_authz that speaks HTTP/1.1 (the HTTP listener serves
// no HTTP/2), in the background, with a cache no longer than the server's
// max-age, so the rotation wait operations.md documents covers Envoy too.
func checkRemoteJWKS(t *testing.T, s *envoySetup, provider string, r *jwtv3.RemoteJwks) {
	t.Helper()
	if r == nil {
		t.Fatalf("provider %s: no remote_jwks", provider)
	}
	hu := r.GetHttpUri()
	u, err := url.Parse(hu.GetUri())
	if err != nil {
		t.Fatalf("provider %s: http_uri %q: %v", provider, hu.GetUri(), err)
	}
	if u.Scheme != "http" || u.RawQuery != "" || u.Fragment != "" {
		t.Errorf("provider %s: http_uri %q, want plain http (the server's HTTP listener has no TLS) without query", provider, hu.GetUri())
	}
	if u.Path != jwkspub.Path {
		t.Errorf("provider %s: http_uri path %q, want the server's JWKS path %q", provider, u.Path, jwkspub.Path)
	}
	if hu.GetCluster() != jwksCluster {
		t.Fatalf("provider %s: http_uri cluster %q, want %q", provider, hu.GetCluster(), jwksCluster)
	}
	if d := hu.GetTimeout().AsDuration(); d <= 0 {
		t.Errorf("provider %s: http_uri timeout %s", provider, d)
	}
	c := s.clusters[jwksCluster]
	if c == nil {
		t.Fatalf("no cluster %s", jwksCluster)
	}
	if _, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOpts]; ok {
		t.Errorf("cluster %s sets HTTP protocol options: the server's HTTP listener speaks HTTP/1.1 only", jwksCluster)
	}
	authzHosts := map[string]bool{}
	for _, ep := range s.clusters[s.authzCluster].GetLoadAssignment().GetEndpoints() {
		for _, lb := range ep.GetLbEndpoints() {
			authzHosts[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = true
		}
	}
	var n int
	for _, ep := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range ep.GetLbEndpoints() {
			n++
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetPortValue() != addrPort(t, config.DefaultHTTPAddr) {
				t.Errorf("cluster %s: endpoint port %d, want the server's HTTP port %s", jwksCluster, sa.GetPortValue(), config.DefaultHTTPAddr)
			}
			if !authzHosts[sa.GetAddress()] {
				t.Errorf("cluster %s: endpoint %s is not a host of the ext_authz cluster %s", jwksCluster, sa.GetAddress(), s.authzCluster)
			}
			if u.Hostname() != sa.GetAddress() || u.Port() != strconv.Itoa(int(sa.GetPortValue())) {
				t.Errorf("provider %s: http_uri host %s, cluster endpoint %s:%d", provider, u.Host, sa.GetAddress(), sa.GetPortValue())
			}
		}
	}
	if n == 0 {
		t.Errorf("cluster %s has no endpoint", jwksCluster)
	}
	if d := r.GetCacheDuration().AsDuration(); d <= 0 || d > jwkspub.DefaultMaxAge {
		t.Errorf("provider %s: cache_duration %s, want set and at most the server's max-age %s", provider, d, jwkspub.DefaultMaxAge)
	}
	if r.GetAsyncFetch() == nil {
		t.Errorf("provider %s: no async_fetch: the first request after each cache_duration would wait for a fetch", provider)
	}
}

// checkRoutes checks the per-route controls: every per-filter config names a
// filter of the chain, a route without ext_authz has no JWT requirement and
// drops client Authorization headers, context extensions use only keys the
// server knows with values it accepts, and a route that lets requests
// without a session through still rejects invalid JWTs.
func checkRoutes(t *testing.T, s *envoySetup) {
	filters := map[string]bool{}
	for _, f := range s.hcm.GetHttpFilters() {
		filters[f.GetName()] = true
	}
	known := map[string]bool{authz.ContextTokenizeAs: true, authz.ContextOnMissing: true}
	var public, otherTemplate, allowMissing, protected int
	for _, vh := range s.hcm.GetRouteConfig().GetVirtualHosts() {
		routes := vh.GetRoutes()
		if len(routes) == 0 || routes[len(routes)-1].GetMatch().GetPrefix() != "/" {
			t.Errorf("virtual host %s: the last route must be the catch-all prefix /", vh.GetName())
		}
		for _, r := range routes {
			name := vh.GetName() + "/" + r.GetName()
			for key := range r.GetTypedPerFilterConfig() {
				if !filters[key] {
					t.Errorf("route %s: typed_per_filter_config[%s] names no filter of the chain", name, key)
				}
			}
			var ea *extauthzv3.ExtAuthzPerRoute
			if a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]; ok {
				ea = unpack[*extauthzv3.ExtAuthzPerRoute](t, a)
			}
			var jp *jwtv3.PerRouteConfig
			if a, ok := r.GetTypedPerFilterConfig()[jwtAuthnFilter]; ok {
				jp = unpack[*jwtv3.PerRouteConfig](t, a)
			}
			switch {
			case ea.GetDisabled():
				public++
				if !jp.GetDisabled() {
					t.Errorf("route %s: ext_authz is disabled but jwt_authn is not: nobody adds the JWT it wants", name)
				}
				if !slices.Contains(r.GetRequestHeadersToRemove(), "authorization") {
					t.Errorf("route %s: without ext_authz a client's Authorization header would reach the upstream unverified", name)
				}
			case ea.GetCheckSettings() != nil:
				ext := ea.GetCheckSettings().GetContextExtensions()
				for k := range ext {
					if !known[k] {
						t.Errorf("route %s: context extension %q is not one the server reads (%s, %s)", name, k, authz.ContextTokenizeAs, authz.ContextOnMissing)
					}
				}
				if tpl, ok := ext[authz.ContextTokenizeAs]; ok && tpl != "" {
					otherTemplate++
				}
				mode := config.DefaultOnMissing
				if m, ok := ext[authz.ContextOnMissing]; ok {
					var err error
					if mode, err = config.ParseOnMissing(m); err != nil {
						t.Errorf("route %s: context extension %s: %v", name, authz.ContextOnMissing, err)
					}
				}
				if mode == config.OnMissingAllow {
					allowMissing++
					checkAllowMissing(t, s, name, jp)
				} else {
					checkJWTRequired(t, s, name, jp)
				}
			default:
				protected++
				checkJWTRequired(t, s, name, jp)
			}
			if jp.GetDisabled() && !ea.GetDisabled() {
				t.Errorf("route %s: jwt_authn disabled while ext_authz runs: the JWT would not be verified", name)
			}
		}
	}
	if public == 0 || otherTemplate == 0 || allowMissing == 0 || protected == 0 {
		t.Errorf("want a public route, one choosing another template, one with on_missing allow and a protected one; got %d, %d, %d, %d",
			public, otherTemplate, allowMissing, protected)
	}
}

// checkJWTRequired: the route needs a verified JWT, from its per-route
// requirement or from the rules' catch-all.
func checkJWTRequired(t *testing.T, s *envoySetup, route string, jp *jwtv3.PerRouteConfig) {
	t.Helper()
	if jp == nil {
		return // the catch-all rule, checked in TestEnvoyConfig
	}
	req, ok := s.jwt.GetRequirementMap()[jp.GetRequirementName()]
	if !ok {
		t.Errorf("route %s: jwt_authn requirement_name %q is not in requirement_map", route, jp.GetRequirementName())
		return
	}
	if _, ok := s.jwt.GetProviders()[req.GetProviderName()]; !ok {
		t.Errorf("route %s: requirement %q does not require a provider: %v", route, jp.GetRequirementName(), req)
	}
}

// checkAllowMissing: a missing JWT passes, an invalid one does not.
func checkAllowMissing(t *testing.T, s *envoySetup, route string, jp *jwtv3.PerRouteConfig) {
	t.Helper()
	req, ok := s.jwt.GetRequirementMap()[jp.GetRequirementName()]
	if jp == nil || !ok {
		t.Errorf("route %s: on_missing allow needs a jwt_authn requirement that allows a missing JWT (else every anonymous request gets 401)", route)
		return
	}
	checkAllowMissingRequirement(t, s, fmt.Sprintf("route %s: requirement %q", route, jp.GetRequirementName()), req)
}

// checkHealthServed asks the real server's grpc.health.v1 for service.
func checkHealthServed(t *testing.T, service string) {
	t.Helper()
	addrs := servertest.Start(t, server.Options{Authz: &authv3.UnimplementedAuthorizationServer{}, ShutdownTimeout: time.Second})
	resp, err := healthpb.NewHealthClient(servertest.Dial(t, addrs.GRPC)).Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check of service %q: %v", service, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of service %q = %v, want SERVING", service, resp.GetStatus())
	}
}

// routeTemplates lists the tokenizer templates the routes ask for.
func routeTemplates(t *testing.T, s *envoySetup) []string {
	t.Helper()
	var out []string
	for _, vh := range s.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]; ok {
				ea := unpack[*extauthzv3.ExtAuthzPerRoute](t, a)
				if tpl, ok := ea.GetCheckSettings().GetContextExtensions()[authz.ContextTokenizeAs]; ok {
					out = append(out, tpl)
				}
			}
		}
	}
	return out
}

// findRoute returns the route named name.
func findRoute(t *testing.T, s *envoySetup, name string) *routev3.Route {
	t.Helper()
	for _, vh := range s.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == name {
				return r
			}
		}
	}
	t.Fatalf("no route %q in %s", name, envoyConfig)
	return nil
}
