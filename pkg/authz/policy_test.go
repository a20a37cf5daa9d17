package authz_test

import (
	"crypto/rand"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// policyTable: an /admin/ area that needs aal2, the admin role and sets two
// identity headers; a /reports/ area with a rule over claims and the
// request and headers of its own; an open /public/ area; a /broken/ area
// whose expression fails on every session (the claim is missing).
const policyTable = `rules:
  - name: admin
    match: {path: {prefix: /admin/}}
    require_aal: aal2
    authorize: '"admin" in claims.roles && claims.sub == session.identity_id'
    headers: {x-user-id: sub, x-user-email: email}
  - name: reports
    match: {path: {prefix: /reports/}}
    authorize: 'claims.dept == "finance" && request.method == "GET" && request.path.startsWith("/reports/") && request.headers["x-tenant"] == "acme"'
    headers: {x-user-id: sub, x-dept: dept, x-roles: roles}
  - name: public
    match: {path: {prefix: /public/}}
    on_missing: allow
  - name: broken
    match: {path: {prefix: /broken/}}
    authorize: 'claims.level > 3'
`

// identityNames are the header names policyTable can set.
var identityNames = []string{"x-dept", "x-roles", "x-user-email", "x-user-id"}

const stepUpURL = "https://login.example.org/ui/login?theme=dark"

// swapTable is a RouteTable a test can change, as a reload does.
type swapTable struct{ p atomic.Pointer[routes.Table] }

func (s *swapTable) Table() *routes.Table { return s.p.Load() }

func newPolicyEnv(t *testing.T, edit ...func(*authz.Options)) (*env, *swapTable) {
	t.Helper()
	tab := &swapTable{}
	tab.p.Store(mustTable(t, policyTable))
	e := newEnv(t, append([]func(*authz.Options){func(o *authz.Options) {
		o.Routes = tab
		o.StepUpURL = stepUpURL
	}}, edit...)...)
	e.ory.SetClaims(func(c map[string]any) {
		c["roles"] = []any{"admin", "dev"}
		c["dept"] = "finance"
	})
	return e, tab
}

// sessionReq is a request for path with s's cookie and the headers given.
func sessionReq(s *fakeory.Session, method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, "cookie": s.CookiePair(), "x-tenant": "acme"}
	for k, v := range headers {
		h[k] = v
	}
	return pathReq("app.example.org", path, h, nil)
}

// okHeaders returns what an OK answer sets and removes.
func okHeaders(t *testing.T, resp *authv3.CheckResponse) (set map[string]string, removed []string) {
	t.Helper()
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("answer %v, want OK", resp)
	}
	set = map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if _, dup := set[h.GetHeader().GetKey()]; dup {
			t.Errorf("header %s set twice", h.GetHeader().GetKey())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	removed = resp.GetOkResponse().GetHeadersToRemove()
	for _, r := range removed {
		if _, ok := set[r]; ok {
			// Envoy removes after it sets: the header would be lost.
			t.Errorf("%s both set and removed", r)
		}
	}
	return set, removed
}

// TestRoutesRequireAAL: below the rule's aal2, an API client gets 403 naming
// the level and a browser a 303 to the step-up URL with aal=aal2 and
// return_to; at aal2 the request goes through. Ory is asked once per
// session either way: the level is checked on the cached answer.
func TestRoutesRequireAAL(t *testing.T) {
	e, _ := newPolicyEnv(t)
	s := e.ory.NewSession()
	resp := mustCheck(t, e, sessionReq(s, "GET", "/admin/users", map[string]string{"accept": "application/json"}))
	if httpStatusOf(resp) != http.StatusForbidden || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied ||
		!strings.Contains(resp.GetDeniedResponse().GetBody(), `"required_aal":"aal2"`) {
		t.Errorf("aal1 API client: %v, want 403 naming aal2", resp)
	}
	resp = mustCheck(t, e, sessionReq(s, "GET", "/admin/users?page=2", map[string]string{"accept": "text/html", "x-forwarded-proto": "https"}))
	if httpStatusOf(resp) != http.StatusSeeOther {
		t.Fatalf("aal1 browser: %v, want 303", resp)
	}
	loc := ""
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "location" {
			loc = h.GetHeader().GetValue()
		}
	}
	want := stepUpURL + "&aal=aal2&return_to=" + url.QueryEscape("https://app.example.org/admin/users?page=2")
	if loc != want {
		t.Errorf("step-up location %q, want %q", loc, want)
	}
	// The miss, then the hit checked again with Ory (it may have stepped
	// up since); the same second's next check is not.
	if n := e.ory.Calls(); n != 2 {
		t.Errorf("Ory saw %d calls, want 2", n)
	}
	if !strings.Contains(e.logs.String(), `"require_aal":"aal2"`) {
		t.Errorf("no log line names the required level:\n%s", e.logs)
	}

	s2 := aal2Session(e)
	set, _ := okHeaders(t, mustCheck(t, e, sessionReq(s2, "GET", "/admin/users", nil)))
	if claims := claimsOf(t, e.ory, strings.TrimPrefix(set["authorization"], "Bearer ")); claims["aal"] != "aal2" {
		t.Errorf("aal2 session's JWT claims aal %v", claims["aal"])
	}

	// Without a step-up URL a browser gets the API client's 403.
	e2, _ := newPolicyEnv(t, func(o *authz.Options) { o.StepUpURL = "" })
	s3 := e2.ory.NewSession()
	if resp := mustCheck(t, e2, sessionReq(s3, "GET", "/admin/users", map[string]string{"accept": "text/html"})); httpStatusOf(resp) != http.StatusForbidden {
		t.Errorf("aal1 browser without a step-up URL: %v, want 403", resp)
	}
}

// TestRoutesStepUpInPlace: Kratos upgrades a session to aal2 in place (the
// same token or cookie). A cached aal1 answer below a route's require_aal
// is asked of Ory again, at most once a second per session, so the
// stepped-up session is let in without waiting for its JWT to expire, and
// an aal1 session hammering the route costs Ory one call a second.
func TestRoutesStepUpInPlace(t *testing.T) {
	e, _ := newPolicyEnv(t)
	s := e.ory.NewSession()
	api := map[string]string{"accept": "application/json"}
	for range 5 {
		if resp := mustCheck(t, e, sessionReq(s, "GET", "/admin/x", api)); httpStatusOf(resp) != http.StatusForbidden {
			t.Fatalf("aal1: %v, want 403", resp)
		}
	}
	if n := e.ory.Calls(); n != 2 {
		t.Errorf("5 checks within a second: Ory saw %d calls, want 2 (the miss and one check again)", n)
	}
	// The same session, cookie and token, now at aal2.
	e.ory.AddSession(fakeory.Session{ID: s.ID, IdentityID: s.IdentityID, Cookie: s.Cookie, Token: s.Token, AAL: "aal2"})
	e.ory.Revoke(s)
	if resp := mustCheck(t, e, sessionReq(s, "GET", "/admin/x", api)); httpStatusOf(resp) != http.StatusForbidden {
		t.Errorf("within the second: %v, want the cached 403", resp)
	}
	e.clock.Advance(time.Second)
	for i := range 2 {
		set, _ := okHeaders(t, mustCheck(t, e, sessionReq(s, "GET", "/admin/x", api)))
		if claims := claimsOf(t, e.ory, strings.TrimPrefix(set["authorization"], "Bearer ")); claims["aal"] != "aal2" {
			t.Errorf("check %d after the step-up: aal %v", i, claims["aal"])
		}
	}
	if n := e.ory.Calls(); n != 3 {
		t.Errorf("Ory saw %d calls, want 3 (one more after the second, then hits)", n)
	}
}

// TestNewRefusesStepUpURL: the step-up URL is checked as the login URL is,
// and may not bring an aal of its own.
func TestNewRefusesStepUpURL(t *testing.T) {
	for _, u := range []string{"/relative", "https://login.example.org/?return_to=x", "https://login.example.org/?aal=aal1"} {
		cfg := config.Default()
		cfg.TokenizeAs = "mesh"
		o := cfg.AuthzOptions(nopTokenizer{})
		o.StepUpURL = u
		s, err := authz.New(o)
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "step-up URL") {
			t.Errorf("StepUpURL %q: %v, want refused", u, err)
		}
	}
}

// TestRoutesAuthorize: a false expression is a 403 naming the rule; one
// that fails is a 403 and an error line, never an allow. The expression
// sees the claims, the session and the request.
func TestRoutesAuthorize(t *testing.T) {
	e, _ := newPolicyEnv(t)
	s := aal2Session(e)
	okHeaders(t, mustCheck(t, e, sessionReq(s, "GET", "/reports/q3", nil)))
	for _, tt := range []struct {
		name, method, path string
		headers            map[string]string
		rule               string
	}{
		{"method", "POST", "/reports/q3", nil, "rule 1 (reports)"},
		{"request header", "GET", "/reports/q3", map[string]string{"x-tenant": "evil"}, "rule 1 (reports)"},
		{"claims", "GET", "/broken/x", nil, "rule 3 (broken)"},
	} {
		resp := mustCheck(t, e, sessionReq(s, tt.method, tt.path, tt.headers))
		if httpStatusOf(resp) != http.StatusForbidden || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied ||
			!strings.Contains(resp.GetDeniedResponse().GetBody(), tt.rule+" denies the request") {
			t.Errorf("%s: %v, want 403 naming %s", tt.name, resp, tt.rule)
		}
	}
	if l := e.logs.String(); !strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, "authorize expression failed") || !strings.Contains(l, `"rule":"rule 3 (broken)"`) {
		t.Errorf("no error line for the failing expression:\n%s", e.logs)
	}
	// A session without the admin role is refused by the admin rule.
	e.ory.SetClaims(func(c map[string]any) { c["roles"] = []any{"dev"} })
	s2 := aal2Session(e)
	if resp := mustCheck(t, e, sessionReq(s2, "GET", "/admin/x", nil)); !strings.Contains(resp.GetDeniedResponse().GetBody(), "rule 0 (admin) denies") {
		t.Errorf("no admin role: %v", resp)
	}
	if n := e.ory.Calls(); n != 2 {
		t.Errorf("Ory saw %d calls for 2 sessions", n)
	}
}

// TestRoutesIdentityHeaders: a rule's headers are set from the claims, with
// overwrite, on a miss and on a hit; every other name any rule can set is
// removed from every OK answer, with or without a session.
func TestRoutesIdentityHeaders(t *testing.T) {
	e, _ := newPolicyEnv(t)
	s := aal2Session(e)
	forged := map[string]string{"x-user-id": "forged", "x-dept": "forged", "x-user-email": "forged"}
	for i, src := range []string{"fresh", "cached"} {
		resp := mustCheck(t, e, sessionReq(s, "GET", "/admin/users", forged))
		set, removed := okHeaders(t, resp)
		if set["x-user-id"] != s.IdentityID || set["x-user-email"] != s.IdentityID+"@example.org" || !strings.HasPrefix(set["authorization"], "Bearer ") {
			t.Errorf("%s: sets %v", src, set)
		}
		if !slices.Equal(removed, []string{"x-dept", "x-roles"}) {
			t.Errorf("%s: removes %v, want the names of the other rule", src, removed)
		}
		if got := resp.GetDynamicMetadata().GetFields()["cached"].GetBoolValue(); got != (i == 1) {
			t.Errorf("%s: cached %v", src, got)
		}
	}
	set, removed := okHeaders(t, mustCheck(t, e, sessionReq(s, "GET", "/reports/q3", forged)))
	if set["x-dept"] != "finance" || set["x-roles"] != "admin,dev" || set["x-user-id"] != s.IdentityID {
		t.Errorf("reports sets %v", set)
	}
	if !slices.Equal(removed, []string{"x-user-email"}) {
		t.Errorf("reports removes %v", removed)
	}
	// No rule's headers: every name removed, with a session and without.
	set, removed = okHeaders(t, mustCheck(t, e, sessionReq(s, "GET", "/public/x", forged)))
	if len(set) != 1 || !slices.Equal(removed, identityNames) {
		t.Errorf("public with a session: sets %v, removes %v", set, removed)
	}
	resp := mustCheck(t, e, pathReq("app.example.org", "/public/x", forged, nil))
	if _, removed := okHeaders(t, resp); !slices.Equal(removed, append([]string{"authorization"}, identityNames...)) {
		t.Errorf("public without a session removes %v", removed)
	}
	preflight := map[string]string{":method": "OPTIONS", "origin": "https://app.example.org", "access-control-request-method": "GET", "x-user-id": "forged"}
	if _, removed := okHeaders(t, mustCheck(t, e, pathReq("app.example.org", "/admin/x", preflight, nil))); !slices.Equal(removed, append([]string{"authorization"}, identityNames...)) {
		t.Errorf("preflight removes %v", removed)
	}
	if n := e.ory.Calls(); n != 1 {
		t.Errorf("Ory saw %d calls, want 1", n)
	}
}

// TestIdentityHeaderValues: how claims of each JSON type become header
// values; a claim that cannot be one (absent, object, null, empty, control
// characters) is not set, and the client's header of that name is removed.
func TestIdentityHeaderValues(t *testing.T) {
	for _, tt := range []struct {
		name  string
		claim any
		want  string // "": removed
	}{
		{"string", "finance", "finance"},
		{"integer", float64(1700000000), "1700000000"},
		{"fraction", 2.5, "2.5"},
		{"bool", true, "true"},
		{"list", []any{"a", float64(2), false}, "a,2,false"},
		{"empty list", []any{}, ""},
		{"nested list", []any{[]any{"a"}}, ""},
		{"object", map[string]any{"a": "b"}, ""},
		{"null", nil, ""},
		{"empty", "", ""},
		{"newline", "a\r\nx-admin: true", ""},
		{"padded", " a", ""},
		{"absent", absent{}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newPolicyEnv(t)
			e.ory.SetClaims(func(c map[string]any) {
				c["roles"], c["dept"] = []any{"admin"}, "finance"
				if _, ok := tt.claim.(absent); ok {
					delete(c, "email")
				} else {
					c["email"] = tt.claim
				}
			})
			s := aal2Session(e)
			set, removed := okHeaders(t, mustCheck(t, e, sessionReq(s, "GET", "/admin/x", map[string]string{"x-user-email": "forged"})))
			got, ok := set["x-user-email"]
			if tt.want == "" {
				if ok || !slices.Contains(removed, "x-user-email") {
					t.Errorf("sets %q, removes %v; want x-user-email removed", got, removed)
				}
			} else if got != tt.want {
				t.Errorf("x-user-email %q, want %q", got, tt.want)
			}
		})
	}
}

type absent struct{}

// aal2Session adds a session at aal2 with a fresh cookie.
func aal2Session(e *env) *fakeory.Session {
	return e.ory.AddSession(fakeory.Session{AAL: "aal2", Cookie: "MTc" + rand.Text()})
}

// TestRoutesReloadHeaders: entries cached under one table answer under the
// next with the next table's headers and rules, before any refresh.
func TestRoutesReloadHeaders(t *testing.T) {
	e, tab := newPolicyEnv(t)
	s := aal2Session(e)
	okHeaders(t, mustCheck(t, e, sessionReq(s, "GET", "/other", nil)))
	tab.p.Store(mustTable(t, `rules:
  - match: {path: {prefix: /other}}
    headers: {x-team: dept}
    authorize: 'claims.dept == "finance"'
`))
	set, removed := okHeaders(t, mustCheck(t, e, sessionReq(s, "GET", "/other", map[string]string{"x-team": "forged"})))
	if set["x-team"] != "finance" || len(removed) != 0 {
		t.Errorf("after the reload: sets %v, removes %v", set, removed)
	}
	tab.p.Store(mustTable(t, "rules:\n  - {match: {path: {prefix: /other}}, authorize: 'claims.dept == \"sales\"'}\n"))
	if resp := mustCheck(t, e, sessionReq(s, "GET", "/other", nil)); httpStatusOf(resp) != http.StatusForbidden {
		t.Errorf("after the second reload: %v, want 403", resp)
	}
	if n := e.ory.Calls(); n != 1 {
		t.Errorf("Ory saw %d calls, want 1", n)
	}
}
