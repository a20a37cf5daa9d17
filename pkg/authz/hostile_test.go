package authz_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/checktest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

func TestRequestLimits(t *testing.T) {
	e := newEnv(t, func(o *authz.Options) {
		o.Limits = authz.Limits{Headers: 20, HeaderBytes: 2048, Cookies: 10}
	})
	s := e.ory.NewSession()
	many := func(n int) map[string]string {
		h := map[string]string{"cookie": s.CookiePair()}
		for i := range n {
			h[fmt.Sprintf("x-h%d", i)] = "v"
		}
		return h
	}
	cookies := func(n int, sep string) map[string]string {
		parts := []string{s.CookiePair()}
		for i := 1; i < n; i++ {
			parts = append(parts, fmt.Sprintf("c%d=1", i))
		}
		return map[string]string{"cookie": strings.Join(parts, sep)}
	}
	tests := []struct {
		name    string
		headers map[string]string
		raw     bool
		allowed bool
	}{
		{"headers at the limit", many(20 - 4), false, true}, // req adds :method, :path, :authority
		{"too many headers", many(20), false, false},
		{"too many headers in header_map", many(20), true, false},
		{"header bytes over the limit", map[string]string{"cookie": s.CookiePair(), "x-big": strings.Repeat("b", 2048)}, false, false},
		{"header bytes over the limit in header_map", map[string]string{"cookie": s.CookiePair(), "x-big": strings.Repeat("b", 2048)}, true, false},
		{"cookies at the limit", cookies(10, "; "), false, true},
		{"too many cookies", cookies(11, "; "), false, false},
		{"too many comma-joined cookies", cookies(11, ","), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.ory.Calls()
			r := req(tt.headers, nil)
			if tt.raw {
				var kv [][2]string
				for k, v := range r.GetAttributes().GetRequest().GetHttp().GetHeaders() {
					kv = append(kv, [2]string{k, v})
				}
				r = rawReq(kv, nil)
			}
			resp := mustCheck(t, e, r)
			if tt.allowed {
				checktest.BearerJWT(t, resp)
				return
			}
			d := deniedStatus(t, resp, codes.InvalidArgument, http.StatusBadRequest)
			if !strings.Contains(d.GetBody(), "invalid_request") {
				t.Errorf("body = %q", d.GetBody())
			}
			if e.ory.Calls() != before {
				t.Error("a request over a limit reached Ory")
			}
			if !strings.Contains(e.logs.String(), "over the limit") {
				t.Error("no log line for the limit")
			}
		})
	}
	// The limit wins over on_missing=allow: an oversize request is never let through.
	resp := mustCheck(t, e, req(many(30), map[string]string{"on_missing": "allow"}))
	deniedStatus(t, resp, codes.InvalidArgument, http.StatusBadRequest)
}

// TestOnlyTheCredentialReachesOry sends requests full of client headers and
// asserts, on what the fake Ory received, that only the Ory credential (and
// the client's own protocol headers) left the server.
func TestOnlyTheCredentialReachesOry(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	hostile := map[string]string{
		"x-forwarded-for": "10.0.0.1", "x-real-ip": "10.0.0.1", "origin": "https://evil.example",
		"x-csrf-token": "abc", "x-user-id": "admin", "forwarded": "for=1.2.3.4", "x-kratos-authenticated-identity-id": "admin",
		"proxy-authorization": "Basic eA==", "user-agent": "evil/1.0", "accept": "text/html",
	}
	tests := []struct {
		name       string
		headers    map[string]string
		wantHeader string
		wantValue  string
	}{
		{"cookie among other cookies and a client Authorization", map[string]string{"cookie": "a=1; " + s.CookiePair() + "; b=2", "authorization": "Bearer client-jwt"}, "Cookie", s.CookiePair()},
		{"token header next to cookies", map[string]string{"x-session-token": s.Token, "cookie": "a=1; " + s.CookiePair()}, "X-Session-Token", s.Token},
		{"bearer session token", map[string]string{"authorization": "Bearer " + s.Token, "cookie": "a=1"}, "X-Session-Token", s.Token},
	}
	// What client-go and net/http add on their own; nothing else may appear.
	allowed := []string{"Accept", "Accept-Encoding", "User-Agent"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			for k, v := range hostile {
				h[k] = v
			}
			for k, v := range tt.headers {
				h[k] = v
			}
			n := len(e.ory.Received())
			// A fresh template each time, so that the check is a miss.
			tmpl := strings.ReplaceAll(tt.name, " ", "-")
			e.ory.AddTemplate(tmpl)
			checktest.BearerJWT(t, mustCheck(t, e, req(h, map[string]string{"tokenize_as": tmpl})))
			got := e.ory.Received()[n]
			for name, values := range got.Header {
				switch {
				case name == tt.wantHeader:
					if len(values) != 1 || values[0] != tt.wantValue {
						t.Errorf("%s = %q, want exactly the credential", name, values)
					}
				case slices.Contains(allowed, name):
					if name == "User-Agent" && strings.Contains(values[0], "evil") {
						t.Errorf("the client's User-Agent reached Ory")
					}
				default:
					t.Errorf("Ory received header %s: %q", name, values)
				}
			}
			if got.Header.Get(tt.wantHeader) == "" {
				t.Errorf("Ory did not receive %s", tt.wantHeader)
			}
		})
	}
}

// TestCookieSmuggling (issue 11): a cookie whose value holds
// ",ory_kratos_session=<attacker's>" must not win over the victim's own
// session cookie. net/http (Kratos) reads "," as a byte of the value, so
// Kratos itself would serve the victim's session; the victim must get the
// victim's JWT, in both of Envoy's encodings.
func TestCookieSmuggling(t *testing.T) {
	e := newEnv(t)
	victim, attacker := e.ory.NewSession(), e.ory.NewSession()
	smuggled := "pref=x," + attacker.CookiePair() + ",y"
	tests := []struct {
		name string
		r    *authv3.CheckRequest
	}{
		{"headers, browser's one line", req(map[string]string{"cookie": smuggled + "; " + victim.CookiePair()}, nil)},
		{"headers, after the session cookie", req(map[string]string{"cookie": victim.CookiePair() + "; " + smuggled}, nil)},
		{"header_map, browser's one line", rawReq([][2]string{{"cookie", smuggled + "; " + victim.CookiePair()}}, nil)},
		{"header_map, two lines", rawReq([][2]string{{"cookie", smuggled}, {"cookie", victim.CookiePair()}}, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(e.ory.Received())
			// A fresh template each time, so that the check asks Ory.
			tmpl := strings.ReplaceAll(tt.name, " ", "-")
			e.ory.AddTemplate(tmpl)
			tt.r.Attributes.ContextExtensions = map[string]string{"tokenize_as": tmpl}
			c := claimsOf(t, e.ory, checktest.BearerJWT(t, mustCheck(t, e, tt.r)))
			if c["sid"] != victim.ID {
				t.Errorf("JWT of session %v, want the victim's %s (attacker's: %s)", c["sid"], victim.ID, attacker.ID)
			}
			if got := e.ory.Received()[n].Header.Values("Cookie"); len(got) != 1 || got[0] != victim.CookiePair() {
				// Named, not shown: test output is a log too.
				named := strings.NewReplacer(victim.Cookie, "<victim>", attacker.Cookie, "<attacker>").Replace(strings.Join(got, " | "))
				t.Errorf("Ory got Cookie %q, want only the victim's session cookie", named)
			}
		})
	}
}
