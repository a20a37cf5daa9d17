package authz_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

// forwardEnv is a policy env with the forward-auth handler on loopback.
func forwardEnv(t *testing.T, fo authz.ForwardAuthOptions, edit ...func(*authz.Options)) (*env, string) {
	t.Helper()
	e, _ := newPolicyEnv(t, edit...)
	srv := httptest.NewServer(e.az.ForwardAuth(fo))
	t.Cleanup(srv.Close)
	return e, srv.URL
}

// forward sends one forward-auth request; redirects are not followed.
func forward(t *testing.T, base, path string, h map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Add(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// traefik is what Traefik's ForwardAuth (and Caddy's forward_auth) send
// for GET https://app.example.org<uri>.
func traefik(uri string, extra map[string]string) map[string]string {
	h := map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.org", "X-Forwarded-Uri": uri, "X-Forwarded-For": "203.0.113.7"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// TestForwardAuthAnswers: the decisions of Check, encoded for the proxies:
// 200 with Authorization and the identity headers to copy; 401 with
// Check's JSON body; 403 below the route's level; a redirect as 302, or
// for nginx (X-Original-*) a 401 with X-Auth-Redirect; Ory down, 503.
func TestForwardAuthAnswers(t *testing.T) {
	e, base := forwardEnv(t, authz.ForwardAuthOptions{})
	s := aal2Session(e)
	e.ory.SetCookie("ory_kratos_session=refreshed; Path=/; HttpOnly")
	resp, _ := forward(t, base, "/auth", traefik("/admin/users?x=1", map[string]string{"Cookie": s.CookiePair(), "Authorization": "Bearer forged", "X-User-Id": "forged"}))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid session: %d", resp.StatusCode)
	}
	jwt := strings.TrimPrefix(resp.Header.Get("Authorization"), "Bearer ")
	if claims := claimsOf(t, e.ory, jwt); claims["sub"] != s.IdentityID {
		t.Errorf("JWT sub %v", claims["sub"])
	}
	if resp.Header.Get("X-User-Id") != s.IdentityID || resp.Header.Get("X-User-Email") != s.IdentityID+"@example.org" {
		t.Errorf("identity headers %v", resp.Header)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 1 || !strings.HasPrefix(got[0], "ory_kratos_session=refreshed") {
		t.Errorf("Set-Cookie %q, want Kratos' refreshed cookie", got)
	}
	// The open route, without a session: 200 and no Authorization.
	if resp, _ := forward(t, base, "/auth", traefik("/public/x", map[string]string{"Authorization": "Bearer forged"})); resp.StatusCode != http.StatusOK || resp.Header.Get("Authorization") != "" {
		t.Errorf("open route: %d, Authorization %q", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	resp, body := forward(t, base, "/auth", traefik("/app", nil))
	if resp.StatusCode != http.StatusUnauthorized || body != `{"error":"unauthenticated","message":"no valid Ory session"}` {
		t.Errorf("no session: %d %s", resp.StatusCode, body)
	}
	aal1 := e.ory.NewSession()
	resp, body = forward(t, base, "/auth", traefik("/admin/x", map[string]string{"Cookie": aal1.CookiePair()}))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"required_aal":"aal2"`) {
		t.Errorf("aal1, API: %d %s", resp.StatusCode, body)
	}
	resp, _ = forward(t, base, "/auth", traefik("/admin/x", map[string]string{"Cookie": aal1.CookiePair(), "Accept": "text/html"}))
	want := stepUpURL + "&aal=aal2&return_to=" + url.QueryEscape("https://app.example.org/admin/x")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("aal1, browser: %d %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	nginx := map[string]string{"X-Original-Method": "GET", "X-Original-URL": "https://app.example.org/admin/x", "X-Original-URI": "/admin/x", "Cookie": aal1.CookiePair(), "Accept": "text/html"}
	resp, _ = forward(t, base, "/auth", nginx)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(authz.RedirectHeader) != want || resp.Header.Get("Location") != "" {
		t.Errorf("aal1, browser behind nginx: %d %s=%q", resp.StatusCode, authz.RedirectHeader, resp.Header.Get(authz.RedirectHeader))
	}
	// Envoy's http_service: the original path after the prefix.
	resp, _ = forward(t, base, "/envoy/admin/users", map[string]string{"Cookie": s.CookiePair()})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-User-Id") != s.IdentityID {
		t.Errorf("envoy http_service: %d %v", resp.StatusCode, resp.Header)
	}
	// Envoy takes the headers an answer removes in
	// x-envoy-auth-headers-to-remove: the identity headers the route does
	// not set, and without a session the client's Authorization too.
	if resp, _ := forward(t, base, "/envoy/reports/q3", map[string]string{"Cookie": s.CookiePair(), "X-Tenant": "acme"}); resp.StatusCode != http.StatusOK ||
		resp.Header.Get("X-Envoy-Auth-Headers-To-Remove") != "x-user-email" {
		t.Errorf("envoy, a rule with other headers: %d, to remove %q", resp.StatusCode, resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"))
	}
	if resp, _ := forward(t, base, "/envoy/public/x", map[string]string{"Authorization": "Bearer forged"}); resp.StatusCode != http.StatusOK ||
		resp.Header.Get("X-Envoy-Auth-Headers-To-Remove") != "authorization,x-dept,x-roles,x-user-email,x-user-id" || resp.Header.Get("Authorization") != "" {
		t.Errorf("envoy, open route without a session: %d, to remove %q", resp.StatusCode, resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"))
	}
	if resp, _ := forward(t, base, "/auth", traefik("/public/x", nil)); resp.Header.Get("X-Envoy-Auth-Headers-To-Remove") != "" {
		t.Errorf("/auth answers carry x-envoy-auth-headers-to-remove")
	}
	if resp, _ := forward(t, base, "/envoy/public/x", map[string]string{"X-Forwarded-Proto": "javascript"}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("envoy, a bad X-Forwarded-Proto: %d, want 400", resp.StatusCode)
	}
	if resp, _ := forward(t, base, "/other", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/other: %d", resp.StatusCode)
	}
	e.ory.Down()
	resp, body = forward(t, base, "/auth", traefik("/app", map[string]string{"Cookie": e.ory.NewSession().CookiePair()}))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"error":"unavailable"`) {
		t.Errorf("Ory down: %d %s, want 503", resp.StatusCode, body)
	}
}

// TestForwardAuthRedirectMode: on_missing: redirect sends a browser to the
// login URL with return_to: 302 for proxies that pass the answer on, 401
// with X-Auth-Redirect for nginx.
func TestForwardAuthRedirectMode(t *testing.T) {
	_, base := forwardEnv(t, authz.ForwardAuthOptions{}, func(o *authz.Options) { o.OnMissing = authz.OnMissingRedirect })
	want := "https://login.example.org/ui/login?return_to=" + url.QueryEscape("https://app.example.org/app?q=1")
	resp, _ := forward(t, base, "/auth", traefik("/app?q=1", map[string]string{"Accept": "text/html"}))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("browser: %d %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	resp, _ = forward(t, base, "/auth", map[string]string{"X-Original-URL": "https://app.example.org/app?q=1", "Accept": "text/html"})
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(authz.RedirectHeader) != want {
		t.Errorf("browser behind nginx: %d %q", resp.StatusCode, resp.Header.Get(authz.RedirectHeader))
	}
	if resp, _ := forward(t, base, "/auth", traefik("/app", nil)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API client: %d, want 401", resp.StatusCode)
	}
}

// TestForwardAuthTrust: forwarded headers from a peer outside
// --trusted-proxies change nothing (the defaults apply, whatever path
// they name); from a trusted peer, a header sent twice or two that
// disagree are a 400.
func TestForwardAuthTrust(t *testing.T) {
	_, base := forwardEnv(t, authz.ForwardAuthOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	// /public/ is open, the default is deny: a spoofed open path is denied.
	if resp, _ := forward(t, base, "/auth", traefik("/public/x", nil)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("untrusted peer naming an open path: %d, want 401 (the defaults)", resp.StatusCode)
	}
	if resp, _ := forward(t, base, "/envoy/public/x", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("untrusted peer, envoy prefix: %d, want 401", resp.StatusCode)
	}
	_, base = forwardEnv(t, authz.ForwardAuthOptions{})
	if resp, _ := forward(t, base, "/auth", traefik("/public/x", nil)); resp.StatusCode != http.StatusOK {
		t.Errorf("trusted peer naming an open path: %d, want 200", resp.StatusCode)
	}
	for name, h := range map[string]map[string]string{
		"URIs disagree":    traefik("/public/x", map[string]string{"X-Original-URI": "/admin/x"}),
		"hosts disagree":   traefik("/public/x", map[string]string{"X-Original-URL": "https://evil.example.org/public/x"}),
		"methods disagree": traefik("/public/x", map[string]string{"X-Original-Method": "POST"}),
		"relative URI":     traefik("public/x", nil),
		"bad scheme":       traefik("/public/x", map[string]string{"X-Forwarded-Proto": "gopher"}),
		"bad scheme alone": {"X-Forwarded-Proto": "gopher"},
	} {
		if resp, body := forward(t, base, "/auth", h); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid_request") {
			t.Errorf("%s: %d %s, want 400", name, resp.StatusCode, body)
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/auth", nil)
	for k, v := range traefik("/public/x", nil) {
		req.Header.Set(k, v)
	}
	req.Header.Add("X-Forwarded-Uri", "/admin/x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("X-Forwarded-Uri twice: %d, want 400", resp.StatusCode)
	}
}
