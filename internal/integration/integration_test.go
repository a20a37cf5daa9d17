package integration_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/checktest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

// meshTTL is the ttl of the mesh template in deploy/kratos/kratos.yml.
const meshTTL = 60

// TestAllowed: every way a client presents a real Kratos session is allowed,
// with the JWT Kratos minted for it in an overwriting authorization mutation,
// and Kratos sees the Ory credential only.
func TestAllowed(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	s := newStack(t, k, stackOptions{})
	alice := newUser(t, k, "alice")
	cookie, cookieSID := s.browserLogin(t, alice)
	token, tokenSID := s.apiLogin(t, alice)
	if !strings.HasPrefix(token, "ory_st_") {
		t.Fatalf("Kratos session token does not start with ory_st_")
	}

	tests := []struct {
		name    string
		headers map[string]string
		sid     string
	}{
		{"browser cookie among other cookies", map[string]string{"cookie": "theme=dark; " + cookie + "; _ga=GA1.2.3"}, cookieSID},
		{"browser cookie next to a forged authorization", map[string]string{"cookie": cookie, "authorization": "Bearer forged"}, cookieSID},
		{"session token header", map[string]string{"x-session-token": token}, tokenSID},
		{"session token header next to a forged authorization", map[string]string{"x-session-token": token, "authorization": "Bearer forged"}, tokenSID},
		{"session token as authorization bearer", map[string]string{"authorization": "Bearer " + token}, tokenSID},
	}
	jwtOf := map[string]string{} // session id -> first JWT forwarded for it
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, resp := s.allow(t, tt.headers, nil)
			// bearerJWT has checked the overwrite; the value must be Kratos'
			// JWT, not what the client sent in authorization.
			if raw == "forged" || strings.Contains(raw, token) {
				t.Fatal("the client's authorization value was forwarded")
			}
			c := s.verify(t, raw)
			if c.Sub != alice.id || c.Sid != tt.sid || c.Iss != k.PublicURL() || c.Jti == "" {
				t.Errorf("claims sub=%q sid=%q iss=%q jti=%q, want sub=%q sid=%q iss=%q and a jti", c.Sub, c.Sid, c.Iss, c.Jti, alice.id, tt.sid, k.PublicURL())
			}
			if c.Exp-c.Iat != meshTTL || c.Nbf != c.Iat {
				t.Errorf("exp-iat = %ds, nbf-iat = %ds; want the template's ttl %ds, 0", c.Exp-c.Iat, c.Nbf-c.Iat, meshTTL)
			}
			if c.Email != alice.email || c.Aal != "aal1" {
				t.Errorf("mapper claims email=%q aal=%q, want %q, aal1", c.Email, c.Aal, alice.email)
			}
			md := metadata(resp)
			if md["identity_id"] != alice.id || md["session_id"] != tt.sid || md["aal"] != "aal1" {
				t.Errorf("dynamic_metadata = %v", md)
			}
			if rh := resp.GetOkResponse().GetResponseHeadersToAdd(); len(rh) != 0 {
				t.Errorf("response_headers_to_add = %v, want none (Kratos set no cookie)", rh)
			}
			if first, seen := jwtOf[tt.sid]; seen {
				if raw != first || md["cached"] != true {
					t.Errorf("second check of session %s: same JWT %v, cached %v; want the cached JWT", tt.sid, raw == first, md["cached"])
				}
			} else {
				jwtOf[tt.sid] = raw
			}
		})
	}

	// One whoami per credential: the cookie, and the token (the token header
	// and the bearer form are one credential).
	calls := s.proxy.Calls()
	if len(calls) != 2 {
		t.Fatalf("Kratos got %d whoami calls, want 2: %v", len(calls), calls)
	}
	for _, c := range calls {
		if c.template != kratosdev.MeshTemplate {
			t.Errorf("whoami tokenize_as=%q, want %s", c.template, kratosdev.MeshTemplate)
		}
		if c.header.Get("Authorization") != "" {
			t.Error("the client's Authorization header reached Kratos")
		}
		cookieSent, tokenSent := c.header.Get("Cookie"), c.header.Get("X-Session-Token")
		if (cookieSent == cookie) == (tokenSent == token) || (cookieSent != "" && cookieSent != cookie) || (tokenSent != "" && tokenSent != token) {
			t.Errorf("whoami got cookie %v, token %v: want exactly the session cookie or the session token",
				cookieSent != "", tokenSent != "")
		}
	}
}

// TestDenied: what Kratos refuses is denied or is an error, as Envoy needs
// it, and a bad route does not disturb the good ones.
func TestDenied(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	s := newStack(t, k, stackOptions{})
	cookie, _ := s.browserLogin(t, newUser(t, k, "bob"))
	garbage := kratosdev.SessionCookie + "=MTc5NjEwOTc0NXxnYXJiYWdlLWNvb2tpZS12YWx1ZQ=="
	s.secrets.addCookie(garbage)

	type want int
	const (
		allowed want = iota
		denied401
		failedPrecondition
	)
	tests := []struct {
		name    string
		headers map[string]string
		ext     map[string]string
		want    want
		// whoami is how many whoami calls the check makes.
		whoami int
	}{
		{"invalid cookie", map[string]string{"cookie": garbage}, nil, denied401, 1},
		{"invalid cookie again is remembered", map[string]string{"cookie": garbage}, nil, denied401, 0},
		{"invalid session token", map[string]string{"x-session-token": "ory_st_notavalidsessiontoken0123456789"}, nil, denied401, 1},
		{"no Ory credential", map[string]string{"cookie": "theme=dark", "authorization": "Bearer forged"}, nil, denied401, 0},
		{"unknown template", map[string]string{"cookie": cookie}, map[string]string{authz.ContextTokenizeAs: "no-such-template"}, failedPrecondition, 1},
		{"default template keeps working", map[string]string{"cookie": cookie}, nil, allowed, 1},
		{"route naming the default template shares its entry", map[string]string{"cookie": cookie}, map[string]string{authz.ContextTokenizeAs: kratosdev.MeshTemplate}, allowed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.proxy.Calls())
			switch tt.want {
			case allowed:
				s.verify(t, first(s.allow(t, tt.headers, tt.ext)))
			case denied401:
				resp, err := s.check(t, tt.headers, tt.ext)
				denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
				if body := resp.GetDeniedResponse().GetBody(); !strings.Contains(body, `"error":"unauthenticated"`) {
					t.Errorf("body = %s", body)
				}
			case failedPrecondition:
				resp, err := s.check(t, tt.headers, tt.ext)
				if status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("Check: status %v, error %v; want gRPC FailedPrecondition", resp.GetStatus(), err)
				}
			}
			if n := len(s.proxy.Calls()) - before; n != tt.whoami {
				t.Errorf("%d whoami calls, want %d", n, tt.whoami)
			}
		})
	}
	// The log explains, without secrets (checked when the test ends).
	log := s.logs.String()
	for _, want := range []string{"no valid session", "Ory rejected the tokenizer template", `"key":"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func first[A, B any](a A, _ B) A { return a }

// TestConcurrentColdCache: 200 concurrent checks of one cookie on a cold
// cache cost Kratos one whoami call, and all get the same JWT.
func TestConcurrentColdCache(t *testing.T) {
	t.Parallel()
	const n = 200
	k := kratostest.Start(t, kratosdev.Options{})
	s := newStack(t, k, stackOptions{})
	cookie, _ := s.browserLogin(t, newUser(t, k, "carol"))

	start := make(chan struct{})
	jwts := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := s.check(t, map[string]string{"cookie": cookie}, nil)
			if err != nil {
				errs[i] = err
				return
			}
			if hs := resp.GetOkResponse().GetHeaders(); resp.GetStatus().GetCode() == 0 && len(hs) == 1 {
				jwts[i] = hs[0].GetHeader().GetValue()
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || jwts[i] == "" || jwts[i] != jwts[0] {
			t.Fatalf("check %d: err %v, allowed %v, same JWT as check 0: %v", i, errs[i], jwts[i] != "", jwts[i] == jwts[0])
		}
	}
	s.secrets.add(strings.TrimPrefix(jwts[0], "Bearer "))
	s.verify(t, strings.TrimPrefix(jwts[0], "Bearer "))
	if calls := s.proxy.CallsWith("Cookie", cookie); calls != 1 {
		t.Errorf("%d concurrent checks made %d whoami calls, want 1", n, calls)
	}
}

// TestRevokedSession: a session revoked in Kratos stays allowed from the
// cache, never past the JWT's exp minus the leeway, and is denied after it.
//
// The template's ttl is short so that this takes seconds: exp = iat + 8s,
// leeway 2s, hence the hard expiry is iat + 6s. The real clock is used,
// because Kratos mints exp from it too.
func TestRevokedSession(t *testing.T) {
	t.Parallel()
	const (
		template = "short"
		ttl      = 8 * time.Second
		leeway   = 2 * time.Second
	)
	k := kratostest.Start(t, kratosdev.Options{Templates: map[string]kratosdev.TokenizerTemplate{template: {TTL: ttl}}})
	s := newStack(t, k, stackOptions{template: template, leeway: leeway})
	dave := newUser(t, k, "dave")

	// warmAndRevoke fills the cache for headers, revokes the session in
	// Kratos, and shows that the next check is still a cache hit.
	warmAndRevoke := func(t *testing.T, headers map[string]string, sid string) (raw string, hard time.Time) {
		t.Helper()
		raw, _ = s.allow(t, headers, nil)
		if c := s.verify(t, raw); c.Exp-c.Iat != int64(ttl/time.Second) {
			t.Fatalf("exp-iat = %ds, want the template's %s", c.Exp-c.Iat, ttl)
		}
		hard = s.hardExpiry(t, raw)
		if err := k.RevokeSession(t.Context(), sid); err != nil {
			t.Fatal(err)
		}
		again, resp := s.allow(t, headers, nil)
		if again != raw || metadata(resp)["cached"] != true {
			t.Fatal("right after the revocation the check was not served from the cache")
		}
		return raw, hard
	}

	t.Run("checked until denied", func(t *testing.T) {
		t.Parallel()
		cookie, sid := s.browserLogin(t, dave)
		headers := map[string]string{"cookie": cookie}
		raw, hard := warmAndRevoke(t, headers, sid)

		// Up to a second before the hard expiry the cache still answers.
		// This hit is past the refresh-ahead point, so it also starts a
		// background refresh, which gets Kratos' 401 and drops the entry.
		waitUntil(t, hard.Add(-time.Second))
		if again, _ := s.allow(t, headers, nil); again != raw {
			t.Fatal("before the hard expiry the revoked session got another JWT")
		}
		deadline := hard.Add(5 * time.Second)
		for {
			sent := time.Now()
			resp, err := s.check(t, headers, nil)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if resp.GetStatus().GetCode() != 0 {
				denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
				break
			}
			// Nothing may be served at or past exp - leeway.
			if !sent.Before(hard) {
				t.Fatalf("allowed %s after the hard expiry (exp - leeway)", sent.Sub(hard))
			}
			if sent.After(deadline) {
				t.Fatal("the revoked session was never denied")
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
		resp, err := s.check(t, headers, nil)
		denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
		// The fill and the refresh that saw the 401; the denials after it
		// are remembered (negative TTL).
		if n := s.proxy.CallsWith("Cookie", cookie); n != 2 {
			t.Errorf("%d whoami calls, want 2", n)
		}
	})

	t.Run("idle past the hard expiry", func(t *testing.T) {
		t.Parallel()
		token, sid := s.apiLogin(t, dave)
		headers := map[string]string{"x-session-token": token}
		_, hard := warmAndRevoke(t, headers, sid)
		// No check between the revocation and the hard expiry, so no
		// refresh-ahead either: the entry itself must stop serving.
		waitUntil(t, hard.Add(100*time.Millisecond))
		resp, err := s.check(t, headers, nil)
		denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
		if n := s.proxy.CallsWith("X-Session-Token", token); n != 2 {
			t.Errorf("%d whoami calls, want 2 (the fill, the miss after the hard expiry)", n)
		}
	})
}

// TestKratosStopped: with Kratos gone, cached sessions keep passing and an
// uncached one is a gRPC Unavailable error, for Envoy's failure_mode_allow.
func TestKratosStopped(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	s := newStack(t, k, stackOptions{direct: true})
	erin := newUser(t, k, "erin")
	warmCookie, _ := s.browserLogin(t, erin)
	warmToken, _ := s.apiLogin(t, erin)
	coldCookie, _ := s.browserLogin(t, erin)
	warm := []map[string]string{{"cookie": warmCookie}, {"x-session-token": warmToken}}
	jwts := make([]string, len(warm))
	for i, h := range warm {
		jwts[i], _ = s.allow(t, h, nil)
	}

	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, h := range warm {
		raw, resp := s.allow(t, h, nil)
		if raw != jwts[i] || metadata(resp)["cached"] != true {
			t.Errorf("warm session %d with Kratos stopped: not the cached JWT", i)
		}
	}
	for range 2 { // a failure is not remembered: each check asks again
		resp, err := s.check(t, map[string]string{"cookie": coldCookie}, nil)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("cold session with Kratos stopped: status %v, error %v; want gRPC Unavailable", resp.GetStatus(), err)
		}
	}
	if !strings.Contains(s.logs.String(), "Ory unavailable") {
		t.Error("log does not say that Ory is unavailable")
	}
}

// TestSetCookieRefresh: when whoami refreshes the session cookie (Kratos
// does after the session was extended), the Set-Cookie goes to the client in
// response_headers_to_add, and the new cookie is a valid credential.
func TestSetCookieRefresh(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	s := newStack(t, k, stackOptions{})
	cookie, sid := s.browserLogin(t, newUser(t, k, "frank"))
	if err := k.ExtendSession(t.Context(), sid); err != nil {
		t.Fatal(err)
	}

	raw, resp := s.allow(t, map[string]string{"cookie": cookie}, nil)
	rh := resp.GetOkResponse().GetResponseHeadersToAdd()
	if len(rh) != 1 {
		t.Fatalf("response_headers_to_add has %d headers, want Kratos' Set-Cookie", len(rh))
	}
	setCookie := rh[0].GetHeader().GetValue()
	s.secrets.addCookie(setCookie)
	if rh[0].GetHeader().GetKey() != "set-cookie" || !strings.HasPrefix(setCookie, kratosdev.SessionCookie+"=") {
		t.Fatalf("response header %q is not a %s Set-Cookie", rh[0].GetHeader().GetKey(), kratosdev.SessionCookie)
	}
	for _, attr := range []string{"path=/", "httponly"} {
		if !strings.Contains(strings.ToLower(setCookie), attr) {
			t.Errorf("Set-Cookie lacks %s", attr)
		}
	}
	// Appended, so that a response's own cookies survive.
	if rh[0].GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
		t.Errorf("append_action = %v, want APPEND_IF_EXISTS_OR_ADD", rh[0].GetAppendAction())
	}
	// A cache hit answers as the fill did, Set-Cookie included.
	_, hit := s.allow(t, map[string]string{"cookie": cookie}, nil)
	if got := hit.GetOkResponse().GetResponseHeadersToAdd(); len(got) != 1 || got[0].GetHeader().GetValue() != setCookie {
		t.Error("the cache hit lost the Set-Cookie")
	}

	refreshed, _, _ := strings.Cut(setCookie, ";")
	if refreshed == cookie {
		t.Fatal("the refreshed cookie is the old one")
	}
	raw2, resp2 := s.allow(t, map[string]string{"cookie": refreshed}, nil)
	if c := s.verify(t, raw2); c.Sid != sid || raw2 == raw {
		t.Errorf("refreshed cookie: sid %q (want %q), new JWT %v", c.Sid, sid, raw2 != raw)
	}
	if got := resp2.GetOkResponse().GetResponseHeadersToAdd(); len(got) != 0 {
		t.Errorf("the refreshed cookie got another %d Set-Cookie", len(got))
	}
}

// TestCookieSmuggling (issue 11): with a browser's Cookie line in which
// another cookie's value holds ",ory_kratos_session=<attacker's>", Kratos
// itself reads the victim's session (net/http takes "," as a byte of that
// value); ory-ext-authz must mint the victim's JWT too, in both of Envoy's
// encodings, never the attacker's.
func TestCookieSmuggling(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	s := newStack(t, k, stackOptions{})
	victim, victimSID := s.browserLogin(t, newUser(t, k, "victim"))
	attacker, attackerSID := s.browserLogin(t, newUser(t, k, "attacker"))
	smuggled := "pref=x," + attacker + ",y"
	line := smuggled + "; " + victim

	if sid := kratosWhoamiSID(t, k, line); sid != victimSID {
		t.Fatalf("Kratos itself read session %q, want the victim's %q (attacker's %q): the premise of this test is wrong", sid, victimSID, attackerSID)
	}
	raw := func(lines ...string) *authv3.CheckRequest {
		r := checkRequest(nil, nil)
		var hm []*corev3.HeaderValue
		for k, v := range r.GetAttributes().GetRequest().GetHttp().GetHeaders() {
			hm = append(hm, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
		for _, l := range lines {
			hm = append(hm, &corev3.HeaderValue{Key: "cookie", RawValue: []byte(l)})
		}
		r.Attributes.Request.Http.Headers = nil
		r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: hm}
		return r
	}
	tests := []struct {
		name string
		r    *authv3.CheckRequest
	}{
		{"headers", checkRequest(map[string]string{"cookie": line}, nil)},
		{"header_map, one line", raw(line)},
		{"header_map, two lines", raw(smuggled, victim)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
			defer cancel()
			resp, err := s.client.Check(ctx, tt.r)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			jwt := checktest.BearerJWT(t, resp)
			s.secrets.add(jwt)
			if c := s.verify(t, jwt); c.Sid != victimSID {
				t.Errorf("JWT of session %q, want the victim's %q (attacker's %q)", c.Sid, victimSID, attackerSID)
			}
		})
	}
}

// kratosWhoamiSID asks Kratos' whoami directly with this Cookie header and
// returns the id of the session it read.
func kratosWhoamiSID(t *testing.T, k *kratosdev.Kratos, cookie string) string {
	t.Helper()
	a := kratostest.Whoami(t, k, "", "Cookie", cookie)
	if a.Status != http.StatusOK {
		t.Fatalf("Kratos whoami: %d", a.Status)
	}
	return a.ID
}
