package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/checktest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testclock"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

func TestAllowedCookie(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	r := req(map[string]string{"cookie": "theme=dark; " + s.CookiePair() + "; _ga=GA1.2", "authorization": "Bearer forged"}, nil)

	first := mustCheck(t, e, r)
	c := claimsOf(t, e.ory, checktest.BearerJWT(t, first))
	if c["sub"] != s.IdentityID || c["sid"] != s.ID || c["iss"] != e.ory.URL {
		t.Errorf("claims = %v, want sub %s sid %s iss %s", c, s.IdentityID, s.ID, e.ory.URL)
	}
	md := first.GetDynamicMetadata().AsMap()
	want := map[string]any{"identity_id": s.IdentityID, "session_id": s.ID, "aal": "aal1", "cached": false}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("dynamic_metadata[%s] = %v, want %v", k, md[k], v)
		}
	}

	second := mustCheck(t, e, r)
	if checktest.BearerJWT(t, second) != checktest.BearerJWT(t, first) {
		t.Error("a cache hit returned another JWT")
	}
	if got := second.GetDynamicMetadata().AsMap()["cached"]; got != true {
		t.Errorf("cached = %v on the second check, want true", got)
	}
	if n := e.ory.Calls(); n != 1 {
		t.Errorf("Ory calls = %d, want 1", n)
	}

	// Only the session cookie reaches Ory: not the client's other cookies,
	// not its Authorization header, nothing else of the request.
	got := e.ory.Received()[0]
	if cookie := got.Header.Get("Cookie"); cookie != s.CookiePair() {
		t.Errorf("Ory got Cookie %q, want only the session cookie", cookie)
	}
	for _, h := range []string{"Authorization", "X-Session-Token", "Theme"} {
		if got.Header.Get(h) != "" {
			t.Errorf("Ory got header %s", h)
		}
	}
	if got.Template != "mesh" {
		t.Errorf("Ory got tokenize_as=%q, want mesh", got.Template)
	}
}

func TestAllowedSessionToken(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	for name, headers := range map[string]map[string]string{
		"token header":         {"x-session-token": s.Token, "authorization": "Bearer forged"},
		"authorization bearer": {"authorization": "Bearer " + s.Token},
		"lower-case bearer":    {"authorization": "bearer " + s.Token},
	} {
		t.Run(name, func(t *testing.T) {
			resp := mustCheck(t, e, req(headers, nil))
			if c := claimsOf(t, e.ory, checktest.BearerJWT(t, resp)); c["sub"] != s.IdentityID {
				t.Errorf("sub = %v, want %s", c["sub"], s.IdentityID)
			}
		})
	}
	// The bearer and header forms are one credential: one Ory call in all.
	if n := e.ory.Calls(); n != 1 {
		t.Errorf("Ory calls = %d, want 1", n)
	}
	rec := e.ory.Received()[0]
	if rec.Header.Get("X-Session-Token") != s.Token || rec.Header.Get("Authorization") != "" || rec.Header.Get("Cookie") != "" {
		t.Errorf("Ory got %v, want only X-Session-Token", rec.Header)
	}
}

func TestRawHeaderMap(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	// Two HTTP/1.1 Cookie lines, not merged in header_map.
	r := rawReq([][2]string{{"cookie", "a=1"}, {"cookie", s.CookiePair()}, {"accept", "*/*"}}, nil)
	resp := mustCheck(t, e, r)
	if c := claimsOf(t, e.ory, checktest.BearerJWT(t, resp)); c["sub"] != s.IdentityID {
		t.Errorf("sub = %v", c["sub"])
	}
	if got := e.ory.Received()[0].Header.Get("Cookie"); got != s.CookiePair() {
		t.Errorf("Ory got Cookie %q", got)
	}
}

func TestSetCookieGoesToClient(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	e.ory.SetCookie("ory_kratos_session=refreshed; Path=/; HttpOnly")
	resp := mustCheck(t, e, req(map[string]string{"cookie": s.CookiePair()}, nil))
	rh := resp.GetOkResponse().GetResponseHeadersToAdd()
	if len(rh) != 1 || rh[0].GetHeader().GetKey() != "set-cookie" || rh[0].GetHeader().GetValue() != "ory_kratos_session=refreshed; Path=/; HttpOnly" {
		t.Fatalf("response_headers_to_add = %v, want the Set-Cookie of whoami", rh)
	}
}

// deniedStatus asserts a denial: never status OK, with the HTTP status given.
func deniedStatus(t *testing.T, resp *authv3.CheckResponse, code codes.Code, httpStatus int) *authv3.DeniedHttpResponse {
	t.Helper()
	if got := codes.Code(resp.GetStatus().GetCode()); got != code {
		t.Fatalf("status = %v, want %v", got, code)
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("no denied_response in %v", resp)
	}
	if int(d.GetStatus().GetCode()) != httpStatus {
		t.Fatalf("HTTP status = %d, want %d", d.GetStatus().GetCode(), httpStatus)
	}
	return d
}

func TestMissingSession(t *testing.T) {
	browser := map[string]string{"accept": "text/html,application/xhtml+xml"}
	api := map[string]string{"accept": "application/json"}
	tests := []struct {
		name     string
		mode     config.OnMissing
		ext      map[string]string
		headers  map[string]string
		wantCode codes.Code
		wantHTTP int // 0: allowed, the client's Authorization removed
	}{
		{"deny", config.OnMissingDeny, nil, api, codes.Unauthenticated, 401},
		{"deny browser", config.OnMissingDeny, nil, browser, codes.Unauthenticated, 401},
		{"allow", config.OnMissingAllow, nil, api, codes.OK, 0},
		{"redirect browser", config.OnMissingRedirect, nil, browser, codes.Unauthenticated, 303},
		{"redirect api", config.OnMissingRedirect, nil, api, codes.Unauthenticated, 401},
		{"route allow over deny", config.OnMissingDeny, map[string]string{"on_missing": "allow"}, api, codes.OK, 0},
		{"route deny over allow", config.OnMissingAllow, map[string]string{"on_missing": "deny"}, api, codes.Unauthenticated, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *authz.Options) { o.OnMissing = tt.mode })
			for _, cookie := range []string{"", "ory_kratos_session=invalid"} {
				h := map[string]string{"cookie": cookie}
				for k, v := range tt.headers {
					h[k] = v
				}
				resp := mustCheck(t, e, req(h, tt.ext))
				if tt.wantHTTP == 0 {
					if resp.GetStatus().GetCode() != 0 || len(resp.GetOkResponse().GetHeaders()) != 0 ||
						!slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
						t.Fatalf("cookie %q: got %v, want OK removing authorization", cookie, resp)
					}
					continue
				}
				d := deniedStatus(t, resp, tt.wantCode, tt.wantHTTP)
				switch tt.wantHTTP {
				case 401:
					var body map[string]string
					if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body["error"] != "unauthenticated" {
						t.Errorf("body = %q, want JSON with error unauthenticated", d.GetBody())
					}
				case 303:
					loc := headerValue(d, "location")
					u, err := url.Parse(loc)
					if err != nil || u.Host != "login.example.org" || u.Query().Get("return_to") != "https://app.example.org/app?x=1" {
						t.Errorf("location = %q, want the login URL with return_to of the original URL", loc)
					}
				}
			}
			// One Ory call: the invalid cookie. The empty one never reaches Ory.
			if n := e.ory.Calls(); n != 1 {
				t.Errorf("Ory calls = %d, want 1", n)
			}
		})
	}
}

func headerValue(d *authv3.DeniedHttpResponse, key string) string {
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func TestNegativeCache(t *testing.T) {
	e := newEnv(t)
	r := req(map[string]string{"cookie": "ory_kratos_session=not-a-session"}, nil)
	for range 5 {
		deniedStatus(t, mustCheck(t, e, r), codes.Unauthenticated, 401)
	}
	if n := e.ory.Calls(); n != 1 {
		t.Errorf("Ory calls = %d for 5 checks of one invalid cookie, want 1 (negative cache)", n)
	}
}

func TestAALTooLow(t *testing.T) {
	for _, tt := range []struct {
		name     string
		mode     config.OnMissing
		accept   string
		wantHTTP int
	}{
		{"deny", config.OnMissingDeny, "text/html", 403},
		{"redirect browser", config.OnMissingRedirect, "text/html", 303},
		{"redirect api", config.OnMissingRedirect, "application/json", 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *authz.Options) { o.OnMissing = tt.mode })
			s := e.ory.NewSession()
			s.RequireAAL2 = true
			r := req(map[string]string{"cookie": s.CookiePair(), "accept": tt.accept}, nil)
			code := codes.PermissionDenied
			if tt.wantHTTP == 303 {
				code = codes.Unauthenticated
			}
			d := deniedStatus(t, mustCheck(t, e, r), code, tt.wantHTTP)
			if tt.wantHTTP == 303 && !strings.HasSuffix(headerValue(d, "location"), "/self-service/login/browser?aal=aal2") {
				t.Errorf("location = %q, want Kratos' redirect_browser_to", headerValue(d, "location"))
			}
			// A 403 is not remembered: the user may step up right now.
			mustCheck(t, e, r)
			if n := e.ory.Calls(); n != 2 {
				t.Errorf("Ory calls = %d, want 2", n)
			}
		})
	}
}

func status500(w http.ResponseWriter, _ *http.Request) bool {
	w.WriteHeader(http.StatusInternalServerError)
	return true
}

func TestOryUnreachable(t *testing.T) {
	fake := fakeory.New()
	fake.Close() // nothing listens on its address any more
	e := newEnvWithOry(t, fake)
	_, err := check(t, e, req(map[string]string{"cookie": "ory_kratos_session=abc"}, nil))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
}

func TestUnknownTemplate(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	cookie := map[string]string{"cookie": s.CookiePair()}
	_, err := check(t, e, req(cookie, map[string]string{"tokenize_as": "nope"}))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
	if !strings.Contains(e.logs.String(), "tokenizer template") {
		t.Error("no log line names the template problem")
	}
	// The default template keeps working.
	checktest.BearerJWT(t, mustCheck(t, e, req(cookie, nil)))
	// A second known template gets its own JWT and cache entry.
	e.ory.AddTemplate("other")
	resp := mustCheck(t, e, req(cookie, map[string]string{"tokenize_as": "other"}))
	if c := claimsOf(t, e.ory, checktest.BearerJWT(t, resp)); c["template"] != "other" {
		t.Errorf("template claim = %v, want other", c["template"])
	}
}

func TestBadRouteSettings(t *testing.T) {
	e := newEnv(t, func(o *authz.Options) { o.LoginURL = "" })
	for name, ext := range map[string]map[string]string{
		"unknown mode":           {"on_missing": "maybe"},
		"redirect without login": {"on_missing": "redirect"},
		"empty template":         {"tokenize_as": ""},
		"huge template":          {"tokenize_as": strings.Repeat("x", 300)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := check(t, e, req(nil, ext))
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("err = %v, want FailedPrecondition", err)
			}
		})
	}
}

func TestOversizeCredential(t *testing.T) {
	e := newEnv(t)
	big := strings.Repeat("a", config.MaxCredentialBytes+1)
	for name, h := range map[string]map[string]string{
		"cookie": {"cookie": "ory_kratos_session=" + big},
		"token":  {"x-session-token": "ory_st_" + big},
	} {
		t.Run(name, func(t *testing.T) {
			deniedStatus(t, mustCheck(t, e, req(h, nil)), codes.Unauthenticated, 401)
		})
	}
	if e.ory.Calls() != 0 {
		t.Error("an oversize credential reached Ory")
	}
}

func TestConcurrentColdMissOneCall(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	// Slow Ory, so that all checks are in flight together.
	e.ory.SetHook(func(http.ResponseWriter, *http.Request) bool { time.Sleep(100 * time.Millisecond); return false })
	r := req(map[string]string{"cookie": s.CookiePair()}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 1000 {
		wg.Go(func() {
			resp, err := e.client.Check(t.Context(), r)
			if err == nil && resp.GetStatus().GetCode() != 0 {
				err = fmt.Errorf("status %v", resp.GetStatus())
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := e.ory.Calls(); n != 1 {
		t.Errorf("1000 concurrent checks of one cookie made %d Ory calls, want 1", n)
	}
}

func TestConcurrentSessionsIsolated(t *testing.T) {
	e := newEnv(t)
	sessions := make([]*fakeory.Session, 100)
	for i := range sessions {
		sessions[i] = e.ory.NewSession()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range 1000 {
		s := sessions[i%len(sessions)]
		wg.Go(func() {
			h := map[string]string{"cookie": s.CookiePair()}
			if (i/len(sessions))%2 == 1 {
				h = map[string]string{"x-session-token": s.Token}
			}
			resp, err := e.client.Check(t.Context(), req(h, nil))
			var sub any
			if err == nil {
				raw, _ := strings.CutPrefix(resp.GetOkResponse().GetHeaders()[0].GetHeader().GetValue(), "Bearer ")
				sub = claimsOf(t, e.ory, raw)["sub"]
			}
			if err != nil || sub != s.IdentityID {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("session %s: err %v sub %v", s.ID, err, sub))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of 1000 checks did not get their own session's JWT, e.g. %s", len(failures), failures[0])
	}
	// 100 sessions, two credential kinds each.
	if n := e.ory.Calls(); n != 200 {
		t.Errorf("Ory calls = %d, want 200", n)
	}
}

func TestOryDownWarmAndCold(t *testing.T) {
	clk := testclock.New(time.Now())
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	fake.Now = clk.Now
	e := newEnvWithOry(t, fake, func(o *authz.Options) { o.Now = clk.Now })
	warm, cold := fake.NewSession(), fake.NewSession()
	warmReq := req(map[string]string{"cookie": warm.CookiePair()}, nil)
	first := checktest.BearerJWT(t, mustCheck(t, e, warmReq))

	fake.SetHook(status500)
	clk.Advance(40 * time.Second) // before the refresh-ahead point (45s of 60s)
	if got := checktest.BearerJWT(t, mustCheck(t, e, warmReq)); got != first {
		t.Error("warm entry not served while Ory is down")
	}
	if _, err := check(t, e, req(map[string]string{"cookie": cold.CookiePair()}, nil)); status.Code(err) != codes.Unavailable {
		t.Fatalf("cold session with Ory down: err = %v, want Unavailable", err)
	}
	clk.Advance(14 * time.Second) // 54s: past soft expiry, refresh fails, still served
	if got := checktest.BearerJWT(t, mustCheck(t, e, warmReq)); got != first {
		t.Error("warm entry not served before its hard expiry")
	}
	clk.Advance(time.Second) // 55s = exp - leeway: never served past it
	if _, err := check(t, e, warmReq); status.Code(err) != codes.Unavailable {
		t.Fatalf("past hard expiry with Ory down: err = %v, want Unavailable", err)
	}
	fake.SetHook(nil)
	if got := checktest.BearerJWT(t, mustCheck(t, e, warmReq)); got == first {
		t.Error("after recovery the expired JWT came back")
	}
}

// TestLoginRedirectLocation: the 303 keeps the login URL exactly as the
// operator wrote it (query order and escapes, fragment at the end) and
// only appends return_to, the original URL query-escaped.
func TestLoginRedirectLocation(t *testing.T) {
	const rt = "return_to=https%3A%2F%2Fapp.example.org%2Fapp%3Fx%3D1"
	tests := []struct {
		name, login, want string
	}{
		{"plain", "https://login.example/ui/login", "https://login.example/ui/login?" + rt},
		{"query and fragment", "https://login.example/ui/login?flow=x&a=%2F#frag", "https://login.example/ui/login?flow=x&a=%2F&" + rt + "#frag"},
		{"empty query as written", "https://login.example/ui/login?", "https://login.example/ui/login?" + rt},
		{"order, plus and bare keys kept", "https://login.example/login?z=1&a=b+c&k", "https://login.example/login?z=1&a=b+c&k&" + rt},
		{"question mark inside the query", "https://login.example/login?next=a?b", "https://login.example/login?next=a?b&" + rt},
		{"escaped path kept", "https://login.example/ui%2Flogin", "https://login.example/ui%2Flogin?" + rt},
		{"single-page app fragment", "https://login.example/#/login?mode=x", "https://login.example/?" + rt + "#/login?mode=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *authz.Options) { o.OnMissing, o.LoginURL = config.OnMissingRedirect, tt.login })
			d := deniedStatus(t, mustCheck(t, e, req(map[string]string{"accept": "text/html"}, nil)), codes.Unauthenticated, http.StatusSeeOther)
			if got := headerValue(d, "location"); got != tt.want {
				t.Errorf("location = %s\nwant       %s", got, tt.want)
			}
		})
	}
}

// TestNewRefusesLoginURL: library users bypass internal/config, so New applies
// the same rule as --login-url's validation. The valid cases show that
// nothing else in the Options makes New fail.
func TestNewRefusesLoginURL(t *testing.T) {
	tests := []struct {
		name, login string
		valid       bool
	}{
		{"none", "", true},
		{"query and fragment", "https://login.example/ui/login?flow=x#frag", true},
		{"relative", "/ui/login", false},
		{"semicolon", "https://login.example/ui/login?a=1;b=2", false},
		{"bad escape", "https://login.example/ui/login?a=%zz", false},
		{"return_to", "https://login.example/ui/login?return_to=https://evil.example", false},
		{"userinfo and query", "https://alice:hunter2@login.example/?a=1;b=2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.TokenizeAs, cfg.LoginURL = "mesh", tt.login
			s, err := authz.New(cfg.AuthzOptions(nopTokenizer{}))
			if err == nil {
				s.Close()
			}
			switch {
			case tt.valid && err != nil:
				t.Fatalf("New: %v", err)
			case !tt.valid && err == nil:
				t.Fatalf("New accepted login URL %q", tt.login)
			case err != nil && (!strings.Contains(err.Error(), "login URL") || strings.Contains(err.Error(), "hunter2")):
				t.Errorf("err = %q, want one naming the login URL without its userinfo", err)
			}
		})
	}
}

// nopTokenizer is never called: New fails before any check.
type nopTokenizer struct{}

func (nopTokenizer) Tokenize(context.Context, credential.Credential, string) (ory.Token, error) {
	return ory.Token{}, errors.New("not called")
}
