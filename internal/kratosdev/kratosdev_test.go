package kratosdev_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
)

const (
	email    = "alice@example.com"
	password = "kratosdev-test-password-1"
)

func mustGenerate(t *testing.T, alg string) []byte {
	t.Helper()
	b, err := jwks.Generate(alg, "")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKratos(t *testing.T) {
	rsKey, edKey := mustGenerate(t, jwks.RS256), mustGenerate(t, jwks.EdDSA)
	k := kratostest.Start(t, kratosdev.Options{
		Templates: map[string]kratosdev.TokenizerTemplate{
			"mesh-rs256": {TTL: 30 * time.Second, JWKS: rsKey},
			"mesh-eddsa": {TTL: 90 * time.Second, JWKS: edKey},
			"no-ttl":     {},
		},
	})
	ctx := t.Context()
	for _, u := range []string{k.PublicURL(), k.AdminURL()} {
		if !strings.HasPrefix(u, "http://127.0.0.1:") || !strings.HasSuffix(u, "/") {
			t.Errorf("URL %q is not a loopback base URL", u)
		}
	}

	id, err := k.CreateIdentity(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}
	again, err := k.CreateIdentity(ctx, email, password)
	if err != nil || again != id {
		t.Fatalf("second CreateIdentity = %q, %v; want %q, nil", again, err, id)
	}

	cookie, err := k.BrowserLogin(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cookie, kratosdev.SessionCookie+"=") || len(cookie) <= len(kratosdev.SessionCookie)+1 {
		t.Fatalf("BrowserLogin returned no %s cookie pair", kratosdev.SessionCookie)
	}
	token, tokenSID, err := k.APILogin(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "ory_st_") || tokenSID == "" {
		t.Fatalf("APILogin returned token with prefix %q and session id %q", token[:min(len(token), 7)], tokenSID)
	}

	// The browser session's id comes from whoami itself.
	plain := kratostest.Whoami(t, k, "", "Cookie", cookie)
	if plain.Status != http.StatusOK || plain.ID == "" || plain.Tokenized != "" {
		t.Fatalf("plain whoami with cookie: status %d, id %q, tokenized %v", plain.Status, plain.ID, plain.Tokenized != "")
	}
	cookieSID := plain.ID

	tests := []struct {
		name, template string
		header, value  string
		sid            string
		key            []byte
		alg            string
		ttl            int64
	}{
		{"cookie/mesh", "mesh", "Cookie", cookie, cookieSID, k.JWKS(), "ES256", 60},
		{"token/mesh", "mesh", "X-Session-Token", token, tokenSID, k.JWKS(), "ES256", 60},
		{"bearer/mesh", "mesh", "Authorization", "Bearer " + token, tokenSID, k.JWKS(), "ES256", 60},
		{"token/rs256", "mesh-rs256", "X-Session-Token", token, tokenSID, rsKey, "RS256", 30},
		{"cookie/eddsa", "mesh-eddsa", "Cookie", cookie, cookieSID, edKey, "EdDSA", 90},
		// A template without ttl yields a JWT that is expired when issued
		// (the schema default of 1m is not applied to template entries).
		{"token/no-ttl", "no-ttl", "X-Session-Token", token, tokenSID, k.JWKS(), "ES256", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := kratostest.Whoami(t, k, tt.template, tt.header, tt.value)
			if a.Status != http.StatusOK {
				t.Fatalf("whoami status %d, want 200", a.Status)
			}
			if a.ID != tt.sid || a.Identity.ID != id {
				t.Errorf("session %q of identity %q, want %q of %q", a.ID, a.Identity.ID, tt.sid, id)
			}
			if a.Tokenized == "" {
				t.Fatal("no tokenized JWT in the answer")
			}
			var c kratostest.Claims
			h := kratostest.VerifyJWT(t, a.Tokenized, kratostest.PublicKeys(t, tt.key), &c)
			if h.Algorithm != tt.alg || h.KeyID == "" {
				t.Errorf("JWT header alg %q kid %q, want alg %s and a kid", h.Algorithm, h.KeyID, tt.alg)
			}
			if c.Sub != id || c.Sid != tt.sid || c.Iss != k.PublicURL() || c.Jti == "" {
				t.Errorf("claims sub=%q sid=%q iss=%q jti=%q; want sub=%q sid=%q iss=%q", c.Sub, c.Sid, c.Iss, c.Jti, id, tt.sid, k.PublicURL())
			}
			if c.Exp-c.Iat != tt.ttl || c.Nbf != c.Iat {
				t.Errorf("exp-iat = %d, nbf-iat = %d; want %d, 0", c.Exp-c.Iat, c.Nbf-c.Iat, tt.ttl)
			}
			if c.Email != email || c.Aal != "aal1" {
				t.Errorf("mapper claims email=%q aal=%q; want %q, aal1", c.Email, c.Aal, email)
			}
		})
	}

	garbageToken := "ory_st_" + base64.RawURLEncoding.EncodeToString([]byte("not-a-session-token"))
	denials := []struct {
		name, template string
		header, value  string
		want           int
	}{
		{"no credential", "mesh", "", "", http.StatusUnauthorized},
		{"garbage cookie", "mesh", "Cookie", kratosdev.SessionCookie + "=garbage", http.StatusUnauthorized},
		{"other cookie only", "mesh", "Cookie", "theme=dark", http.StatusUnauthorized},
		{"garbage token", "mesh", "X-Session-Token", garbageToken, http.StatusUnauthorized},
		{"unknown template/token", "nope", "X-Session-Token", token, http.StatusBadRequest},
		{"unknown template/cookie", "nope", "Cookie", cookie, http.StatusBadRequest},
	}
	for _, tt := range denials {
		t.Run(tt.name, func(t *testing.T) {
			if status := kratostest.Whoami(t, k, tt.template, tt.header, tt.value).Status; status != tt.want {
				t.Errorf("whoami status %d, want %d", status, tt.want)
			}
		})
	}

	revoked := []struct {
		name, sid, header, value string
	}{
		{"token", tokenSID, "X-Session-Token", token},
		{"cookie", cookieSID, "Cookie", cookie},
	}
	for _, tt := range revoked {
		t.Run("revoked/"+tt.name, func(t *testing.T) {
			if err := k.RevokeSession(t.Context(), tt.sid); err != nil {
				t.Fatal(err)
			}
			if status := kratostest.Whoami(t, k, "mesh", tt.header, tt.value).Status; status != http.StatusUnauthorized {
				t.Errorf("whoami after revocation: status %d, want 401", status)
			}
		})
	}
}

func TestLoginErrors(t *testing.T) {
	k := kratostest.Start(t, kratosdev.Options{})
	ctx := t.Context()
	if _, err := k.CreateIdentity(ctx, email, password); err != nil {
		t.Fatal(err)
	}
	if _, err := k.BrowserLogin(ctx, email, "wrong-password-123"); err == nil {
		t.Error("BrowserLogin with a wrong password succeeded")
	} else if strings.Contains(err.Error(), "wrong-password-123") {
		t.Errorf("error leaks the password: %v", err)
	}
	if _, _, err := k.APILogin(ctx, "nobody@example.com", password); err == nil {
		t.Error("APILogin of an unknown identity succeeded")
	}
	if _, err := k.CreateIdentity(ctx, "not-an-email", password); err == nil {
		t.Error("CreateIdentity with an invalid email succeeded")
	}
	if err := k.RevokeSession(ctx, "00000000-0000-0000-0000-000000000000"); err == nil {
		t.Error("RevokeSession of an unknown session succeeded")
	}
}

func TestStopLeavesNothingRunning(t *testing.T) {
	k := kratostest.Start(t, kratosdev.Options{})
	addrs := []string{strings.TrimSuffix(strings.TrimPrefix(k.PublicURL(), "http://"), "/"),
		strings.TrimSuffix(strings.TrimPrefix(k.AdminURL(), "http://"), "/")}
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := k.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Stop", a)
		}
	}
}

func TestStartErrors(t *testing.T) {
	root, err := kratosdev.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	// Start must reject these before it runs anything, so the binary is a
	// plain file that could not run anyway.
	fake := filepath.Join(t.TempDir(), "kratos")
	if err := os.WriteFile(fake, []byte("not a binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]kratosdev.Options{
		"no binary":           {},
		"missing binary":      {Binary: filepath.Join(t.TempDir(), "kratos")},
		"symmetric JWKS":      {Binary: fake, RootDir: root, JWKS: []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)},
		"bad template name":   {Binary: fake, RootDir: root, Templates: map[string]kratosdev.TokenizerTemplate{"a.b": {}}},
		"bad template JWKS":   {Binary: fake, RootDir: root, Templates: map[string]kratosdev.TokenizerTemplate{"x": {JWKS: []byte("{}")}}},
		"root without config": {Binary: fake, RootDir: t.TempDir()},
	}
	for name, opts := range tests {
		t.Run(name, func(t *testing.T) {
			if opts.WorkDir == "" {
				opts.WorkDir = t.TempDir()
			}
			if k, err := kratosdev.Start(t.Context(), opts); err == nil {
				_ = k.Stop()
				t.Fatal("Start succeeded")
			}
		})
	}
}

// TestFixedPortsMatchBaseConfig keeps FixedPublicPort and FixedAdminPort in
// step with kratos.yml, whose ports `make run` prints and the docs name. (No
// test starts Kratos on them: a developer's `make run` may hold them.)
func TestFixedPortsMatchBaseConfig(t *testing.T) {
	root, err := kratosdev.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, kratosdev.BaseConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{kratosdev.FixedPublicPort, kratosdev.FixedAdminPort} {
		for _, want := range []string{fmt.Sprintf("port: %d\n", p), fmt.Sprintf("base_url: http://127.0.0.1:%d/\n", p)} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s has no line %q", kratosdev.BaseConfig, strings.TrimSpace(want))
			}
		}
	}
}

// TestBrowserLoginSessionAndExtend: the session id BrowserLoginSession
// returns is the cookie's session, and after ExtendSession whoami refreshes
// the cookie with a Set-Cookie (internal/integration relies on both).
//
// Its WorkDir has a comma, which Kratos' -c flag would split at.
func TestBrowserLoginSessionAndExtend(t *testing.T) {
	k := kratostest.Start(t, kratosdev.Options{WorkDir: filepath.Join(t.TempDir(), "a, b")})
	ctx := t.Context()
	id, err := k.CreateIdentity(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}
	cookie, sid, err := k.BrowserLoginSession(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}
	setCookie := func() []string {
		t.Helper()
		a := kratostest.Whoami(t, k, "", "Cookie", cookie)
		if a.Status != http.StatusOK || a.ID != sid || a.Identity.ID != id {
			t.Fatalf("whoami: %d, session %q of %q, want %q of %q", a.Status, a.ID, a.Identity.ID, sid, id)
		}
		return a.Header.Values("Set-Cookie")
	}
	if sc := setCookie(); len(sc) != 0 {
		t.Fatalf("whoami of a fresh session set %d cookies, want none", len(sc))
	}
	if err := k.ExtendSession(ctx, sid); err != nil {
		t.Fatal(err)
	}
	sc := setCookie()
	if len(sc) != 1 || !strings.HasPrefix(sc[0], kratosdev.SessionCookie+"=") {
		t.Fatalf("whoami after ExtendSession: %d Set-Cookie headers, want one %s", len(sc), kratosdev.SessionCookie)
	}
	if err := k.ExtendSession(ctx, "00000000-0000-0000-0000-000000000000"); err == nil {
		t.Error("ExtendSession of an unknown session succeeded")
	}
}
