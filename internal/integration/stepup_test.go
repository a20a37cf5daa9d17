package integration_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// stepUpTable: /admin/ needs aal2 and says so twice (require_aal, and an
// authorize rule over the JWT's aal claim and the session's level), and
// sets two identity headers.
const stepUpTable = `rules:
  - name: admin
    match: {path: {prefix: /admin/}}
    require_aal: aal2
    authorize: 'claims.aal == "aal2" && session.aal == "aal2" && claims.sub == session.identity_id'
    headers: {x-user-id: sub, x-user-email: email}
`

// TestStepUpRealKratos: against the real Kratos, an identity with TOTP and
// an aal1 session gets 403 aal_required as an API client and, as a
// browser, a 303 to Kratos' own browser login flow, which Kratos answers
// with an aal2 login flow whose return_to is the original URL. The same
// sessions after the second factor (a TOTP code computed here) are let in,
// with aal2 in the JWT and the identity headers set; the token Kratos
// upgrades in place is asked of Ory again rather than refused from the
// cache until its JWT expires.
func TestStepUpRealKratos(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	tab, err := routes.Parse([]byte(stepUpTable))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, k, stackOptions{routes: tab})
	u := newUser(t, k, "step-up")
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	// Adding TOTP makes the session that adds it aal2; the sessions below
	// are new password logins, aal1.
	setup, _ := s.apiLogin(t, u)
	secret, err := k.EnableTOTP(ctx, setup)
	if err != nil {
		t.Fatal(err)
	}
	s.secrets.add(secret)
	token, _ := s.apiLogin(t, u)
	cookie, _ := s.browserLogin(t, u)

	// The app is served at an origin Kratos' allowed_return_urls lists.
	const app = "http://127.0.0.1:4455"
	adminReq := func(h map[string]string) map[string]string {
		out := map[string]string{":path": "/admin/users?tab=keys", ":authority": "127.0.0.1:4455", "x-forwarded-proto": "http", "x-user-id": "forged"}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	resp, err := s.check(t, adminReq(map[string]string{"x-session-token": token}), nil)
	denied(t, resp, err, codes.PermissionDenied, http.StatusForbidden)
	if body := resp.GetDeniedResponse().GetBody(); !strings.Contains(body, `"required_aal":"aal2"`) {
		t.Errorf("aal1 API client: body %s, want required_aal", body)
	}

	resp, err = s.check(t, adminReq(map[string]string{"cookie": cookie, "accept": "text/html"}), nil)
	denied(t, resp, err, codes.Unauthenticated, http.StatusSeeOther)
	loc := ""
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "location" {
			loc = h.GetHeader().GetValue()
		}
	}
	want := k.PublicURL() + "self-service/login/browser?aal=aal2&return_to=" + url.QueryEscape(app+"/admin/users?tab=keys")
	if loc != want {
		t.Fatalf("step-up location %q, want %q", loc, want)
	}
	flow := followStepUp(t, loc, cookie)
	if flow.RequestedAAL != "aal2" || flow.ReturnTo != app+"/admin/users?tab=keys" {
		t.Errorf("Kratos' flow for the step-up URL: requested_aal %q, return_to %q", flow.RequestedAAL, flow.ReturnTo)
	}

	// The second factor. The token is upgraded in place: its cached aal1
	// answer is asked of Ory again once a second has passed since the last
	// time.
	if err := k.APILoginAAL2(ctx, token, secret); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Now().Add(time.Second))
	stepped := func(name string, h map[string]string) {
		t.Helper()
		resp, err := s.check(t, adminReq(h), nil)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("%s at aal2: %v %v", name, resp, err)
		}
		set := okSet(resp)
		raw := strings.TrimPrefix(set["authorization"], "Bearer ")
		s.secrets.add(raw)
		claims := s.verify(t, raw)
		if claims.Aal != "aal2" || claims.Sub != u.id {
			t.Errorf("%s: JWT aal %q sub %q, want aal2 %s", name, claims.Aal, claims.Sub, u.id)
		}
		if set["x-user-id"] != u.id || set["x-user-email"] != u.email {
			t.Errorf("%s: identity headers %v", name, set)
		}
	}
	stepped("token", map[string]string{"x-session-token": token})
	upgraded, err := k.BrowserLoginAAL2(ctx, cookie, secret)
	if err != nil {
		t.Fatal(err)
	}
	s.secrets.addCookie(upgraded)
	stepped("browser", map[string]string{"cookie": upgraded, "accept": "text/html"})
}

// okSet is what an OK answer sets, by header name.
func okSet(resp *authv3.CheckResponse) map[string]string {
	set := map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return set
}

// stepUpFlow is the part of a Kratos login flow the step-up test reads.
type stepUpFlow struct {
	RequestedAAL string `json:"requested_aal"`
	ReturnTo     string `json:"return_to"`
}

// followStepUp does what the browser does with the step-up redirect: it
// GETs the location with its session cookie and, from Kratos' redirect to
// the login UI, the flow id; then it reads the flow.
func followStepUp(t *testing.T, location, cookie string) stepUpFlow {
	t.Helper()
	client := &http.Client{Timeout: callTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, location, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Cookie", cookie)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ui, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || ui.Query().Get("flow") == "" {
		t.Fatalf("Kratos answered the step-up URL with %d, location %q; want a 303 to the login UI with a flow", resp.StatusCode, resp.Header.Get("Location"))
	}
	u, _ := url.Parse(location)
	flowURL := u.Scheme + "://" + u.Host + "/self-service/login/flows?id=" + url.QueryEscape(ui.Query().Get("flow"))
	req, err = http.NewRequestWithContext(t.Context(), http.MethodGet, flowURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", strings.Join(append([]string{cookie}, cookiePairs(resp.Cookies())...), "; "))
	fr, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Body.Close()
	var f stepUpFlow
	if fr.StatusCode != http.StatusOK {
		t.Fatalf("login flow: %d", fr.StatusCode)
	}
	if err := json.NewDecoder(fr.Body).Decode(&f); err != nil {
		t.Fatal(err)
	}
	return f
}

func cookiePairs(cs []*http.Cookie) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+"="+c.Value)
	}
	return out
}
