package deploy_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// gatewayHost is the host the requests of TestIstioRoutesAgainstServer are
// for: the rules of the routes file match every host.
const gatewayHost = "app.example.com"

// istioRouteSamples is, for each rule of the Istio routes file
// (deploy/kubernetes/configmap-routes.yaml), a request path it matches
// (with a query, which return_to must keep). The test fails on a rule
// without one, and on a path the table gives another rule.
var istioRouteSamples = map[string]string{
	"optional": "/optional/page?q=1",
	"admin":    "/admin/users?tab=all",
	"internal": "/internal/tools",
	"default":  "/anything/else?x=1&y=2",
}

// istioRouteAuthorizes is, for each rule with an `authorize` expression,
// whether it lets each test identity in ("staff": an @example.com address,
// "outsider": another domain). The test fails on a rule with an expression
// and no entry.
var istioRouteAuthorizes = map[string]map[string]bool{
	"admin":    {"staff": true, "outsider": false},
	"internal": {"staff": true, "outsider": false},
}

// identity is a logged-in Kratos identity of the test.
type identity struct {
	name, id, email string
	cookie, token   string // token empty: the identity has no API session
}

// TestIstioRoutesAgainstServer plays the Istio ingress gateway's part
// without Istio: for each rule of the routes file the Deployment mounts,
// it sends the CheckRequest the gateway's ext_authz (envoyExtAuthzGrpc)
// would send for a request the rule matches, every client header included
// and no context_extensions (a CUSTOM policy cannot send them), to the real
// server, configured by the Deployment's environment with --routes on the
// ConfigMap's file, in front of a real Kratos. Each request carries a forged
// Authorization and forged identity headers, and the answer must be the one
// the rule's settings imply: without a session its on_missing (401, 303 to
// the login for a browser, or OK removing Authorization and every identity
// header); with an aal1 session below its require_aal, a 303 to step up
// (aal=aal2, return_to) for a browser and 403 aal_required for an API
// client; its `authorize` false, 403 naming the rule; else OK with the JWT
// and the rule's identity headers from its claims, set with overwrite, and
// every other identity header removed. An aal2 session needs a second
// factor in Kratos, which the test Kratos does not have yet.
func TestIstioRoutesAgainstServer(t *testing.T) {
	kube := loadKubernetes(t)
	env, where, data := deploymentRoutes(t, kube)
	table, err := routes.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	base := serverConfig(t, "Deployment", env)
	if base.TokenizeAs != kratosdev.MeshTemplate {
		t.Fatalf("the Deployment's --tokenize-as is %q; this test's Kratos defines %s", base.TokenizeAs, kratosdev.MeshTemplate)
	}
	defaults := routes.Settings{TokenizeAs: base.TokenizeAs, OnMissing: routes.OnMissing(base.OnMissing), PassClientAuthorization: base.PassClientAuthorization}

	// Every rule has a sample path that the table gives it.
	rules := map[string]*routes.Rule{}
	for _, r := range table.Rules() {
		rules[r.Name()] = r
		path, ok := istioRouteSamples[r.Name()]
		if !ok {
			t.Fatalf("%s: %s has no sample request in istioRouteSamples", where, r)
		}
		if got, _ := table.Match(http.MethodGet, gatewayHost, path); got != r {
			t.Fatalf("%s: sample %s of %s matches %s", where, path, r, got)
		}
		if _, ok := istioRouteAuthorizes[r.Name()]; r.Expression() != "" && !ok {
			t.Fatalf("%s: %s has an authorize expression and no entry in istioRouteAuthorizes", where, r)
		}
	}
	for name := range istioRouteSamples {
		if rules[name] == nil {
			t.Errorf("istioRouteSamples names %q, which is no rule of %s", name, where)
		}
	}

	// Kratos with every template the table asks for, at the ttl the
	// examples' Kratos gives it (deploy/kratos/kratos.yml under
	// deploy/envoy/kratos.compose.yml): a template no shipped Kratos
	// defines fails here.
	kratosTpls := kratosTemplates(composeKratosConfig(t, loadCompose(t)))
	ttls := map[string]time.Duration{}
	for _, r := range table.Rules() {
		if tpl := r.Settings(defaults).TokenizeAs; tpl != kratosdev.MeshTemplate {
			ttls[tpl] = templateTTL(t, kratosTpls, tpl)
		}
	}
	st := startKratos(t, ttls)
	ttls[kratosdev.MeshTemplate] = st.meshTTL
	staff := identity{name: "staff", id: st.identity, email: stackEmail, cookie: st.cookie, token: st.sessionToken}
	outsider := identity{name: "outsider", email: "outsider@example.org"}
	if outsider.id, err = st.kratos.CreateIdentity(t.Context(), outsider.email, stackPassword); err != nil {
		t.Fatal(err)
	}
	if outsider.cookie, err = st.kratos.BrowserLogin(t.Context(), outsider.email, stackPassword); err != nil {
		t.Fatal(err)
	}

	// The server as the Deployment configures it; only Kratos and the
	// files are local.
	local := maps.Clone(env)
	local[config.EnvName("ory-url")] = st.kratos.PublicURL()
	local[config.EnvName("jwks-publish")] = st.jwksFile
	local[config.EnvName("routes")] = writeTemp(t, "routes.yaml", data)
	cfg := serverConfig(t, "Deployment (Kratos and files local)", local)
	if cfg.LoginURL == "" {
		t.Fatalf("the Deployment sets no %s: browsers would be sent to step up at the in-cluster --ory-url", config.EnvName("login-url"))
	}
	checks := startServer(t, cfg)
	conn, err := grpc.NewClient(checks.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)

	names := table.HeaderNames()
	forged := map[string]string{"Authorization": "Bearer " + forgeJWT(t, st.pub, st.kratos.PublicURL())}
	for _, n := range names {
		forged[n] = "forged-" + n
	}
	// check sends what the gateway sends for method and path: every
	// header lower-cased, the pseudo-headers, x-forwarded-proto and
	// x-request-id the gateway sets, and no context_extensions.
	check := func(t *testing.T, method, path string, h map[string]string) *authv3.CheckResponse {
		t.Helper()
		sent := map[string]string{
			":authority": gatewayHost, ":method": method, ":path": path, ":scheme": "https",
			"x-forwarded-proto": "https", "x-request-id": "istio-routes-test",
		}
		for name, v := range forged {
			sent[strings.ToLower(name)] = v
		}
		for name, v := range h {
			sent[strings.ToLower(name)] = v
		}
		resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: "istio-routes-test", Method: method, Path: path, Host: gatewayHost,
				Scheme: "https", Protocol: "HTTP/1.1", Headers: sent,
			}},
		}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	statusOf := func(t *testing.T, resp *authv3.CheckResponse) int {
		t.Helper()
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			return http.StatusOK
		}
		return int(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	wantStatus := func(t *testing.T, resp *authv3.CheckResponse, want int) {
		t.Helper()
		if got := statusOf(t, resp); got != want {
			b, _ := protojson.Marshal(resp.GetDeniedResponse())
			t.Fatalf("answer %d, want %d: %s", got, want, b)
		}
	}
	// okWithout: an OK answer that sets no header and removes every
	// identity header name, and the client's Authorization unless the
	// rule passes it.
	okWithout := func(t *testing.T, resp *authv3.CheckResponse, s routes.Settings) {
		t.Helper()
		wantStatus(t, resp, http.StatusOK)
		if hs := resp.GetOkResponse().GetHeaders(); len(hs) != 0 {
			t.Errorf("headers set %v, want none", hs)
		}
		want := slices.Clone(names)
		if !s.PassClientAuthorization {
			want = append(want, "authorization")
		}
		for _, n := range want {
			if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), n) {
				t.Errorf("headers_to_remove %q lacks %s: the client's would reach the upstream", resp.GetOkResponse().GetHeadersToRemove(), n)
			}
		}
	}
	// redirectTo: a 303 to the URL base with the query pairs of want
	// added, and nothing else; return_to is the URL the client asked for.
	redirectTo := func(t *testing.T, resp *authv3.CheckResponse, base string, want url.Values) {
		t.Helper()
		wantStatus(t, resp, http.StatusSeeOther)
		var loc []string
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "location" {
				loc = append(loc, h.GetHeader().GetValue())
			}
		}
		if len(loc) != 1 {
			t.Fatalf("%d location headers, want 1", len(loc))
		}
		checkLocation(t, loc[0], base, want)
	}
	// deniedJSON: a denial with status and a JSON body whose error is
	// errName; it returns the body.
	deniedJSON := func(t *testing.T, resp *authv3.CheckResponse, status int, errName string) map[string]any {
		t.Helper()
		wantStatus(t, resp, status)
		var body map[string]any
		if err := json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body); err != nil {
			t.Fatalf("denial body is not JSON: %v", err)
		}
		if body["error"] != errName {
			t.Errorf("denial error %v, want %s", body["error"], errName)
		}
		return body
	}
	// overwrites: h replaces a header of the request, never adds one next
	// to it (the client's forged one).
	overwrites := func(t *testing.T, h *corev3.HeaderValueOption) {
		t.Helper()
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend() == nil || h.GetAppend().GetValue() {
			t.Errorf("%s: append=%v append_action=%v: the client's header could survive", h.GetHeader().GetKey(), h.GetAppend(), h.GetAppendAction())
		}
	}
	// okWith: an OK answer with who's JWT of the rule's template and the
	// rule's identity headers from its claims, every other identity header
	// name removed and nothing else touched.
	okWith := func(t *testing.T, resp *authv3.CheckResponse, s routes.Settings, who identity) {
		t.Helper()
		wantStatus(t, resp, http.StatusOK)
		set := map[string]*corev3.HeaderValueOption{}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			k := h.GetHeader().GetKey()
			if _, dup := set[k]; dup {
				t.Errorf("header %s set twice", k)
			}
			set[k] = h
			overwrites(t, h)
		}
		a, ok := set["authorization"]
		if !ok {
			t.Fatal("no authorization set")
		}
		tok, ok := strings.CutPrefix(a.GetHeader().GetValue(), "Bearer ")
		if !ok {
			t.Fatal("authorization is not a Bearer token")
		}
		c := verifyJWT(t, tok, st.pub)
		if c["iss"] != st.kratos.PublicURL() || c["sub"] != who.id || c["email"] != who.email || c["aal"] != "aal1" {
			t.Errorf("JWT iss %v sub %v email %v aal %v, want %s, %s's %s, %s, aal1", c["iss"], c["sub"], c["email"], c["aal"], st.kratos.PublicURL(), who.name, who.id, who.email)
		}
		ttl := ttls[s.TokenizeAs]
		if d := time.Duration(c["exp"].(float64)-c["iat"].(float64)) * time.Second; d < ttl-time.Second || d > ttl+time.Second {
			t.Errorf("JWT lifetime %s, want the %s template's %s", d, s.TokenizeAs, ttl)
		}
		var setNames []string
		for _, hc := range s.Headers {
			setNames = append(setNames, hc.Header)
			h, ok := set[hc.Header]
			if !ok {
				t.Errorf("identity header %s (claim %s) not set", hc.Header, hc.Claim)
				continue
			}
			want, _ := c[hc.Claim].(string)
			switch hc.Claim {
			case "sub":
				want = who.id
			case "email":
				want = who.email
			}
			if got := h.GetHeader().GetValue(); got != want || want == "" {
				t.Errorf("%s = %q, want the claim %s: %q", hc.Header, got, hc.Claim, want)
			}
		}
		for k := range set {
			if k != "authorization" && !slices.Contains(setNames, k) {
				t.Errorf("header %s set, which the rule does not set", k)
			}
		}
		var wantRemoved []string
		for _, n := range names {
			if !slices.Contains(setNames, n) {
				wantRemoved = append(wantRemoved, n)
			}
		}
		if got := slices.Sorted(slices.Values(resp.GetOkResponse().GetHeadersToRemove())); !slices.Equal(got, wantRemoved) {
			t.Errorf("headers_to_remove %q, want %q (every identity header the rule does not set; never authorization, which would drop the JWT)", got, wantRemoved)
		}
	}

	stepUp := cfg.StepUpURL()
	api := map[string]string{"Accept": "application/json"}
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	with := func(a, b map[string]string) map[string]string {
		m := maps.Clone(a)
		maps.Copy(m, b)
		return m
	}
	for _, r := range table.Rules() {
		s := r.Settings(defaults)
		path := istioRouteSamples[r.Name()]
		original := "https://" + gatewayHost + path
		t.Run(r.Name(), func(t *testing.T) {
			t.Run("no session, API client", func(t *testing.T) {
				resp := check(t, http.MethodGet, path, api)
				if s.OnMissing == routes.OnMissingAllow {
					okWithout(t, resp, s)
					return
				}
				wantStatus(t, resp, http.StatusUnauthorized)
			})
			t.Run("no session, browser", func(t *testing.T) {
				resp := check(t, http.MethodGet, path, browser)
				switch s.OnMissing {
				case routes.OnMissingAllow:
					okWithout(t, resp, s)
				case routes.OnMissingRedirect:
					redirectTo(t, resp, cfg.LoginURL, url.Values{"return_to": {original}})
				default:
					wantStatus(t, resp, http.StatusUnauthorized)
				}
			})
			t.Run("CORS preflight", func(t *testing.T) {
				resp := check(t, http.MethodOptions, path, map[string]string{"Origin": "https://" + gatewayHost, "Access-Control-Request-Method": "POST"})
				okWithout(t, resp, routes.Settings{})
			})
			type session struct {
				name    string
				who     identity
				browser bool
				h       map[string]string
			}
			sessions := []session{
				{"browser cookie", staff, true, with(browser, map[string]string{"Cookie": "theme=dark; " + staff.cookie})},
				{"cookie, API client", staff, false, with(api, map[string]string{"Cookie": staff.cookie})},
				{"native session token", staff, false, with(api, map[string]string{cfg.SessionTokenHeader: staff.token})},
				{"session token as bearer", staff, false, with(api, map[string]string{"Authorization": "Bearer " + staff.token})},
				{"outsider, browser cookie", outsider, true, with(browser, map[string]string{"Cookie": outsider.cookie})},
				{"outsider, cookie, API client", outsider, false, with(api, map[string]string{"Cookie": outsider.cookie})},
			}
			for _, ss := range sessions {
				t.Run(ss.name, func(t *testing.T) {
					resp := check(t, http.MethodGet, path, ss.h)
					switch {
					case s.RequireAAL == routes.AAL2 && ss.browser:
						redirectTo(t, resp, stepUp, url.Values{"aal": {"aal2"}, "return_to": {original}})
					case s.RequireAAL == routes.AAL2:
						if body := deniedJSON(t, resp, http.StatusForbidden, "aal_required"); body["required_aal"] != "aal2" {
							t.Errorf("required_aal %v, want aal2", body["required_aal"])
						}
					case r.Expression() != "" && !istioRouteAuthorizes[r.Name()][ss.who.name]:
						body := deniedJSON(t, resp, http.StatusForbidden, "forbidden")
						if want := r.String() + " denies the request"; body["message"] != want {
							t.Errorf("message %q, want %q", body["message"], want)
						}
					default:
						okWith(t, resp, s, ss.who)
					}
				})
			}
		})
	}
}
