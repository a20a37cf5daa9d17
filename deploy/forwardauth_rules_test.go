package deploy_test

import (
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// The forward-auth proxies' tests (envoy-http-service.yaml, Traefik) share
// the server and the expectations here: each plays its proxy's part as a
// forwardProxy against the same server, the one the Deployment configures
// (its route table) with the forward-auth listener on, in front of a real
// Kratos.

// proxyOutcome is what the client and the upstream get from a proxy.
type proxyOutcome struct {
	checked bool // the proxy asked the server
	// status is the client's status when the proxy answers itself (a
	// denial, an error, a JWT check's 401); 0 when the request went
	// upstream.
	status   int
	body     string
	client   http.Header // headers the proxy gives the client
	upstream map[string]string
	route    string // the proxy's route or router
}

// forwardProxy plays a proxy's part for one request: method host+path
// with the client's headers h.
type forwardProxy interface {
	do(t *testing.T, method, host, path string, h map[string]string) proxyOutcome
	// removesUnset tells whether the proxy removes a header it copies from
	// the answer when the answer does not carry it.
	removesUnset() bool
}

// jwtVerifier verifies JWTs as a proxy's JWT check would: signed by a key
// the server publishes, for Kratos' issuer.
type jwtVerifier struct {
	pub    jose.JSONWebKeySet
	issuer string
}

func (v jwtVerifier) verifies(tok string) bool {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		return false
	}
	payload, err := jws.Verify(&v.pub)
	if err != nil {
		return false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	return json.Unmarshal(payload, &c) == nil && c.Iss == v.issuer
}

// forwardAuthStack is the server behind a forward-auth proxy.
type forwardAuthStack struct {
	cfg             config.Config
	checks          *countingAuthz
	table           *routes.Table
	where           string // the route table's file
	defaults        routes.Settings
	names           []string // the table's identity header names
	ttls            map[string]time.Duration
	staff, outsider identity
	jwt             jwtVerifier
}

// startForwardAuthStack starts Kratos with every template the Deployment's
// route table asks for, a staff identity and an outsider, and the server
// as the Deployment configures it, with --forward-auth-addr and loopback
// (the proxy) as its trusted proxies.
func startForwardAuthStack(t *testing.T) *forwardAuthStack {
	t.Helper()
	env, where, data := deploymentRoutes(t, loadKubernetes(t))
	table, err := routes.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	base := serverConfig(t, "Deployment", env)
	fs := &forwardAuthStack{table: table, where: where, names: table.HeaderNames()}
	fs.defaults = routes.Settings{TokenizeAs: base.TokenizeAs, OnMissing: routes.OnMissing(base.OnMissing), PassClientAuthorization: base.PassClientAuthorization}
	for _, r := range table.Rules() {
		if _, ok := istioRouteSamples[r.Name()]; !ok {
			t.Fatalf("%s: %s has no sample request in istioRouteSamples", where, r)
		}
		if _, ok := istioRouteAuthorizes[r.Name()]; r.Expression() != "" && !ok {
			t.Fatalf("%s: %s has an authorize expression and no entry in istioRouteAuthorizes", where, r)
		}
	}
	kratosTpls := kratosTemplates(composeKratosConfig(t, loadCompose(t)))
	fs.ttls = map[string]time.Duration{}
	for _, r := range table.Rules() {
		if tpl := r.Settings(fs.defaults).TokenizeAs; tpl != kratosdev.MeshTemplate {
			fs.ttls[tpl] = templateTTL(t, kratosTpls, tpl)
		}
	}
	st := startKratos(t, fs.ttls)
	fs.ttls[kratosdev.MeshTemplate] = st.meshTTL
	fs.staff = identity{name: "staff", id: st.identity, email: stackEmail, cookie: st.cookie, token: st.sessionToken}
	fs.outsider = identity{name: "outsider", email: "outsider@example.org"}
	if fs.outsider.id, err = st.kratos.CreateIdentity(t.Context(), fs.outsider.email, stackPassword); err != nil {
		t.Fatal(err)
	}
	if fs.outsider.cookie, err = st.kratos.BrowserLogin(t.Context(), fs.outsider.email, stackPassword); err != nil {
		t.Fatal(err)
	}
	local := maps.Clone(env)
	local[config.EnvName("ory-url")] = st.kratos.PublicURL()
	local[config.EnvName("jwks-publish")] = st.jwksFile
	local[config.EnvName("routes")] = writeTemp(t, "routes.yaml", data)
	local[config.EnvName("forward-auth-addr")] = net.JoinHostPort("127.0.0.1", strconv.Itoa(forwardAuthPort))
	local[config.EnvName("trusted-proxies")] = "127.0.0.0/8"
	fs.cfg = serverConfig(t, "Deployment with forward-auth (Kratos and files local)", local)
	if fs.cfg.LoginURL == "" {
		t.Fatalf("the Deployment sets no %s", config.EnvName("login-url"))
	}
	fs.checks = startServer(t, fs.cfg)
	// The keys a proxy's JWT check fetches from the server.
	resp, body := doGet(t, "http://"+fs.checks.httpAddr+jwkspub.Path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", jwkspub.Path, resp.StatusCode)
	}
	if err := json.Unmarshal(body, &fs.jwt.pub); err != nil {
		t.Fatal(err)
	}
	checkSameKeys(t, fs.jwt.pub, st.pub)
	fs.jwt.issuer = st.kratos.PublicURL()
	return fs
}

// doGet fetches url.
func doGet(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// checkForwardAuthRules sends, through the proxy p, for each rule of the
// route table at its sample path, the requests a client sends, with a forged
// Authorization and forged identity headers: without a session (API
// client, browser, CORS preflight) and with the sessions of a staff member
// and an outsider (cookie, session token, token as Bearer). The outcome must
// be the rule's: the upstream gets a JWT of the rule's template that
// verifies and exactly the rule's identity headers from its claims, or the
// client gets the server's 401, 403 (JSON) or 302 (to the login or to step
// up, with return_to the URL asked for, scheme://host+path). Whatever the
// answer, the upstream never sees a forged identity header, an
// Authorization that does not verify or the session token. A request for
// /public/x goes upstream without a check and without any of them.
func checkForwardAuthRules(t *testing.T, fs *forwardAuthStack, p forwardProxy, scheme string) {
	t.Helper()
	forgedJWT := forgeJWT(t, fs.jwt.pub, fs.jwt.issuer)
	forged := map[string]string{"Authorization": "Bearer " + forgedJWT}
	for _, n := range fs.names {
		forged[n] = "forged-" + n
	}
	with := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			maps.Copy(out, m)
		}
		return out
	}
	// safe: whatever went upstream carries no forged identity header and
	// no Authorization that does not verify.
	safe := func(t *testing.T, o proxyOutcome) {
		t.Helper()
		if o.status != 0 {
			return
		}
		for _, n := range fs.names {
			if strings.HasPrefix(o.upstream[n], "forged-") {
				t.Errorf("the upstream got the client's %s", n)
			}
		}
		if a, ok := o.upstream["authorization"]; ok {
			if tok, _ := strings.CutPrefix(a, "Bearer "); !fs.jwt.verifies(tok) {
				t.Error("the upstream got an Authorization that does not verify")
			}
		}
		if _, ok := o.upstream[strings.ToLower(fs.cfg.SessionTokenHeader)]; ok {
			t.Errorf("the upstream got %s", fs.cfg.SessionTokenHeader)
		}
	}
	wantStatus := func(t *testing.T, o proxyOutcome, want int) {
		t.Helper()
		safe(t, o)
		if !o.checked {
			t.Fatalf("route %s: no check ran", o.route)
		}
		got := o.status
		if got == 0 {
			got = http.StatusOK
		}
		if got != want {
			t.Fatalf("route %s: %d %s, want %d", o.route, got, o.body, want)
		}
	}
	// passedWithout: upstream, no Authorization and no identity header.
	passedWithout := func(t *testing.T, o proxyOutcome) {
		t.Helper()
		wantStatus(t, o, http.StatusOK)
		for _, n := range append([]string{"authorization"}, fs.names...) {
			if _, ok := o.upstream[n]; ok {
				t.Errorf("the upstream got %s", n)
			}
		}
	}
	redirectTo := func(t *testing.T, o proxyOutcome, base string, want url.Values) {
		t.Helper()
		// forward.go answers Check's 303 with a 302 for proxies that pass
		// the answer on.
		wantStatus(t, o, http.StatusFound)
		loc := o.client.Values("Location")
		if len(loc) != 1 {
			t.Fatalf("%d Location headers reach the client, want 1", len(loc))
		}
		checkLocation(t, loc[0], base, want)
	}
	deniedJSON := func(t *testing.T, o proxyOutcome, status int, errName string) map[string]any {
		t.Helper()
		wantStatus(t, o, status)
		if ct := o.client.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q reaches the client, want application/json", ct)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(o.body), &body); err != nil {
			t.Fatalf("denial body is not JSON: %v", err)
		}
		if body["error"] != errName {
			t.Errorf("denial error %v, want %s", body["error"], errName)
		}
		return body
	}
	// passedWith: upstream with who's JWT of the rule's template and
	// exactly the rule's identity headers, from its claims.
	passedWith := func(t *testing.T, o proxyOutcome, set routes.Settings, who identity) {
		t.Helper()
		wantStatus(t, o, http.StatusOK)
		tok, ok := strings.CutPrefix(o.upstream["authorization"], "Bearer ")
		if !ok {
			t.Fatal("no Bearer Authorization upstream")
		}
		c := verifyJWT(t, tok, fs.jwt.pub)
		if c["iss"] != fs.jwt.issuer || c["sub"] != who.id || c["email"] != who.email {
			t.Errorf("JWT iss %v sub %v email %v, want %s, %s's %s, %s", c["iss"], c["sub"], c["email"], fs.jwt.issuer, who.name, who.id, who.email)
		}
		ttl := fs.ttls[set.TokenizeAs]
		if d := time.Duration(c["exp"].(float64)-c["iat"].(float64)) * time.Second; d < ttl-time.Second || d > ttl+time.Second {
			t.Errorf("JWT lifetime %s, want the %s template's %s", d, set.TokenizeAs, ttl)
		}
		want := map[string]string{}
		for _, hc := range set.Headers {
			switch hc.Claim {
			case "sub":
				want[hc.Header] = who.id
			case "email":
				want[hc.Header] = who.email
			default:
				want[hc.Header], _ = c[hc.Claim].(string)
			}
		}
		for _, n := range fs.names {
			got, ok := o.upstream[n]
			switch w, set := want[n]; {
			case set && got != w:
				t.Errorf("upstream %s = %q, want %q", n, got, w)
			case !set && ok:
				t.Errorf("upstream %s set, which the rule does not set", n)
			}
		}
	}

	host := gatewayHost
	stepUp := fs.cfg.StepUpURL()
	api := map[string]string{"Accept": "application/json"}
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	t.Run("public route: no check, nothing forged upstream", func(t *testing.T) {
		o := p.do(t, http.MethodGet, host, "/public/x", with(forged, browser, map[string]string{fs.cfg.SessionTokenHeader: fs.staff.token}))
		if o.checked || o.status != 0 {
			t.Fatalf("checked %v, status %d: want no check", o.checked, o.status)
		}
		for _, n := range append([]string{"authorization"}, fs.names...) {
			if _, ok := o.upstream[n]; ok {
				t.Errorf("the upstream got %s", n)
			}
		}
	})
	for _, r := range fs.table.Rules() {
		set := r.Settings(fs.defaults)
		path := istioRouteSamples[r.Name()]
		original := scheme + "://" + host + path
		t.Run(r.Name(), func(t *testing.T) {
			t.Run("no session, API client", func(t *testing.T) {
				o := p.do(t, http.MethodGet, host, path, api)
				if set.OnMissing == routes.OnMissingAllow {
					passedWithout(t, o)
					return
				}
				wantStatus(t, o, http.StatusUnauthorized)
			})
			t.Run("no session, forged headers", func(t *testing.T) {
				o := p.do(t, http.MethodGet, host, path, with(forged, api))
				// On an allowed request without a session the server sets no
				// Authorization. A proxy that removes the client's (Traefik's
				// authResponseHeaders) lets the request on without it; one
				// that cannot must reject it (Envoy's jwt_authn).
				if set.OnMissing == routes.OnMissingAllow {
					if o.status != 0 && !p.removesUnset() {
						wantStatus(t, o, http.StatusUnauthorized)
						return
					}
					passedWithout(t, o)
					return
				}
				wantStatus(t, o, http.StatusUnauthorized)
			})
			t.Run("no session, browser", func(t *testing.T) {
				o := p.do(t, http.MethodGet, host, path, browser)
				switch set.OnMissing {
				case routes.OnMissingAllow:
					passedWithout(t, o)
				case routes.OnMissingRedirect:
					redirectTo(t, o, fs.cfg.LoginURL, url.Values{"return_to": {original}})
				default:
					wantStatus(t, o, http.StatusUnauthorized)
				}
			})
			t.Run("CORS preflight", func(t *testing.T) {
				pre := map[string]string{"Origin": "https://" + host, "Access-Control-Request-Method": "POST"}
				passedWithout(t, p.do(t, http.MethodOptions, host, path, pre))
				// With a forged Authorization: removed, or rejected (Envoy's
				// jwt_authn preflight rule).
				o := p.do(t, http.MethodOptions, host, path, with(forged, pre))
				if o.status != 0 && !p.removesUnset() {
					wantStatus(t, o, http.StatusUnauthorized)
					return
				}
				passedWithout(t, o)
			})
			type session struct {
				name    string
				who     identity
				browser bool
				h       map[string]string
			}
			sessions := []session{
				{"browser cookie", fs.staff, true, with(forged, browser, map[string]string{"Cookie": "theme=dark; " + fs.staff.cookie})},
				{"cookie, API client", fs.staff, false, with(forged, api, map[string]string{"Cookie": fs.staff.cookie})},
				{"native session token", fs.staff, false, with(forged, api, map[string]string{fs.cfg.SessionTokenHeader: fs.staff.token})},
				{"session token as bearer", fs.staff, false, with(forged, api, map[string]string{"Authorization": "Bearer " + fs.staff.token})},
				{"outsider, browser cookie", fs.outsider, true, with(forged, browser, map[string]string{"Cookie": fs.outsider.cookie})},
				{"outsider, cookie, API client", fs.outsider, false, with(forged, api, map[string]string{"Cookie": fs.outsider.cookie})},
			}
			for _, ss := range sessions {
				t.Run(ss.name, func(t *testing.T) {
					o := p.do(t, http.MethodGet, host, path, ss.h)
					switch {
					case set.RequireAAL == routes.AAL2 && ss.browser:
						redirectTo(t, o, stepUp, url.Values{"aal": {"aal2"}, "return_to": {original}})
					case set.RequireAAL == routes.AAL2:
						if body := deniedJSON(t, o, http.StatusForbidden, "aal_required"); body["required_aal"] != "aal2" {
							t.Errorf("required_aal %v, want aal2", body["required_aal"])
						}
					case r.Expression() != "" && !istioRouteAuthorizes[r.Name()][ss.who.name]:
						body := deniedJSON(t, o, http.StatusForbidden, "forbidden")
						if want := r.String() + " denies the request"; body["message"] != want {
							t.Errorf("message %q, want %q", body["message"], want)
						}
					default:
						passedWith(t, o, set, ss.who)
					}
				})
			}
			// A genuinely signed JWT without its session: the server does
			// not vouch for it. A proxy that removes what the answer does
			// not set drops it; Envoy's http_service removes what the
			// answer lists in x-envoy-auth-headers-to-remove.
			if set.OnMissing == routes.OnMissingAllow {
				t.Run("signed JWT, no session", func(t *testing.T) {
					withSession := p.do(t, http.MethodGet, host, path, with(api, map[string]string{"Cookie": fs.staff.cookie}))
					wantStatus(t, withSession, http.StatusOK)
					o := p.do(t, http.MethodGet, host, path, with(api, map[string]string{"Authorization": withSession.upstream["authorization"]}))
					wantStatus(t, o, http.StatusOK)
					if _, ok := o.upstream["authorization"]; ok {
						t.Error("the client's own signed JWT reached the upstream")
					}
				})
			}
		})
	}
}

// askForwardAuth sends a proxy's authorization request to the server's
// forward-auth listener and returns the answer with its body read; a 400
// or 404 (a request the proxy model got wrong) fails the test.
func askForwardAuth(t *testing.T, c *http.Client, areq *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(areq)
	if err != nil {
		t.Fatalf("authorization request: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusNotFound {
		t.Fatalf("the server refused the authorization request: %d %s", resp.StatusCode, body)
	}
	return resp, body
}

// checkLocation fails t unless location is base (scheme, host, path) with
// base's query plus want.
func checkLocation(t *testing.T, location, base string, want url.Values) {
	t.Helper()
	got, err := url.Parse(location)
	if err != nil {
		t.Fatal(err)
	}
	b, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := b.Query()
	for k, vs := range want {
		q[k] = vs
	}
	if got.Scheme != b.Scheme || got.Host != b.Host || got.Path != b.Path || !maps.EqualFunc(got.Query(), q, slices.Equal) {
		t.Errorf("location %s, want %s with the query %v", location, base, q)
	}
}
