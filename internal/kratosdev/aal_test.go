package kratosdev_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
)

// TestTOTPCode checks TOTPCode against the SHA1 test vectors of RFC 6238
// (appendix B; Kratos' codes have 6 digits, the last 6 of the RFC's 8).
func TestTOTPCode(t *testing.T) {
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // base32 of "12345678901234567890"
	for unix, want := range map[int64]string{59: "287082", 1111111109: "081804", 1234567890: "005924", 20000000000: "353130"} {
		got, err := kratosdev.TOTPCode(secret, time.Unix(unix, 0))
		if err != nil || got != want {
			t.Errorf("TOTPCode at %d = %q, %v; want %q", unix, got, err, want)
		}
	}
	if _, err := kratosdev.TOTPCode("not base32!", time.Unix(59, 0)); err == nil {
		t.Error("TOTPCode of a secret that is not base32 succeeded")
	}
}

// session is what whoami with one credential says about its session.
type session struct{ id, aal string }

// sessionOf asks whoami (mesh template) with the credential header and
// returns the session's id and the tokenized JWT's aal claim; any answer but
// 200 fails the test (an aal1 session of an identity with a second factor
// must not get 403: kratos.yml's session.whoami.required_aal: aal1).
func sessionOf(t *testing.T, k *kratosdev.Kratos, header, value string) session {
	t.Helper()
	a := kratostest.Whoami(t, k, kratosdev.MeshTemplate, header, value)
	if a.Status != http.StatusOK || a.Tokenized == "" {
		t.Fatalf("whoami with %s: status %d, tokenized %v; want 200 with a JWT", header, a.Status, a.Tokenized != "")
	}
	var c kratostest.Claims
	kratostest.VerifyJWT(t, a.Tokenized, kratostest.PublicKeys(t, k.JWKS()), &c)
	if c.Sid != a.ID {
		t.Fatalf("JWT sid %q, whoami session %q", c.Sid, a.ID)
	}
	return session{a.ID, c.Aal}
}

func wantSession(t *testing.T, what string, got session, id, aal string) {
	t.Helper()
	if got.id != id || got.aal != aal {
		t.Errorf("%s: session %q at %q, want %q at %q", what, got.id, got.aal, id, aal)
	}
}

// wrongCode is a 6-digit code that is none of the secret's codes from 90s
// before to 90s after now, so Kratos (one period of skew) refuses it.
func wrongCode(t *testing.T, secret string) string {
	t.Helper()
	now := time.Now()
	valid := map[string]bool{}
	for i := -3; i <= 3; i++ {
		c, err := kratosdev.TOTPCode(secret, now.Add(time.Duration(i)*30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		valid[c] = true
	}
	for n := 0; ; n++ {
		if c := fmt.Sprintf("%06d", n); !valid[c] {
			return c
		}
	}
}

// noLeak fails the test if err holds one of the secrets.
func noLeak(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error leaks a credential or secret: %v", err)
		}
	}
}

// TestAAL2 gets aal1 and aal2 sessions of identities with a second factor
// from the real Kratos, through the native (token) and the browser (cookie)
// flows.
func TestAAL2(t *testing.T) {
	k := kratostest.Start(t, kratosdev.Options{})

	// identity creates an identity and returns its email.
	identity := func(t *testing.T, name string) string {
		t.Helper()
		e := name + "@example.com"
		if _, err := k.CreateIdentity(t.Context(), e, password); err != nil {
			t.Fatal(err)
		}
		return e
	}
	apiLogin := func(t *testing.T, email string) (token, sid string) {
		t.Helper()
		token, sid, err := k.APILogin(t.Context(), email, password)
		if err != nil {
			t.Fatal(err)
		}
		return token, sid
	}
	// enableTOTP logs in via API, enables TOTP and returns the secret.
	enableTOTP := func(t *testing.T, email string) string {
		t.Helper()
		token, sid := apiLogin(t, email)
		secret, err := k.EnableTOTP(t.Context(), token)
		if err != nil {
			t.Fatal(err)
		}
		// Adding TOTP counts as using it (Kratos' settings strategy).
		wantSession(t, "session that enabled TOTP", sessionOf(t, k, "X-Session-Token", token), sid, "aal2")
		return secret
	}

	t.Run("token", func(t *testing.T) {
		ctx := t.Context()
		e := identity(t, "aal-token")
		before, beforeSID := apiLogin(t, e)
		wantSession(t, "login without TOTP", sessionOf(t, k, "X-Session-Token", before), beforeSID, "aal1")

		secret := enableTOTP(t, e)
		if secret == "" || strings.ToUpper(secret) != secret {
			t.Fatalf("EnableTOTP returned a secret of %d characters, want base32", len(secret))
		}
		// A session from before and a new password login are aal1, and whoami
		// answers for them.
		wantSession(t, "session from before TOTP", sessionOf(t, k, "X-Session-Token", before), beforeSID, "aal1")
		token, sid := apiLogin(t, e)
		wantSession(t, "password login with TOTP", sessionOf(t, k, "Authorization", "Bearer "+token), sid, "aal1")

		// settings.required_aal: highest_available: with TOTP, an aal1
		// session may no longer change credentials.
		if _, err := k.EnableLookupSecrets(ctx, token); err == nil {
			t.Error("EnableLookupSecrets with an aal1 session of an identity with TOTP succeeded")
		}

		if err := k.APILoginAAL2(ctx, token, secret); err != nil {
			t.Fatal(err)
		}
		wantSession(t, "after APILoginAAL2", sessionOf(t, k, "X-Session-Token", token), sid, "aal2")
		wantSession(t, "other session after APILoginAAL2", sessionOf(t, k, "X-Session-Token", before), beforeSID, "aal1")

		// The code just used works again (Kratos records no used codes).
		if err := k.APILoginAAL2(ctx, before, secret); err != nil {
			t.Fatalf("second APILoginAAL2 within the period: %v", err)
		}
		wantSession(t, "second session after APILoginAAL2", sessionOf(t, k, "X-Session-Token", before), beforeSID, "aal2")

		if _, err := k.EnableTOTP(ctx, token); err == nil {
			t.Error("EnableTOTP for an identity that has TOTP succeeded")
		}
	})

	t.Run("cookie", func(t *testing.T) {
		ctx := t.Context()
		e := identity(t, "aal-cookie")
		secret := enableTOTP(t, e)

		cookie, sid, err := k.BrowserLoginSession(ctx, e, password)
		if err != nil {
			t.Fatalf("aal1 browser login of an identity with TOTP: %v", err)
		}
		wantSession(t, "browser login with TOTP", sessionOf(t, k, "Cookie", cookie), sid, "aal1")

		upgraded, err := k.BrowserLoginAAL2(ctx, cookie, secret)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(upgraded, kratosdev.SessionCookie+"=") || upgraded == cookie {
			t.Fatalf("BrowserLoginAAL2 returned no new %s cookie", kratosdev.SessionCookie)
		}
		wantSession(t, "new cookie after BrowserLoginAAL2", sessionOf(t, k, "Cookie", upgraded), sid, "aal2")
		// Both cookie values name the same, now aal2, session.
		wantSession(t, "old cookie after BrowserLoginAAL2", sessionOf(t, k, "Cookie", cookie), sid, "aal2")

		if _, err := k.BrowserLoginAAL2(ctx, upgraded, secret); err == nil {
			t.Error("BrowserLoginAAL2 of an aal2 session succeeded")
		}
	})

	t.Run("wrong code", func(t *testing.T) {
		ctx := t.Context()
		e := identity(t, "aal-wrong")
		secret := enableTOTP(t, e)
		wrong := wrongCode(t, secret)

		token, sid := apiLogin(t, e)
		err := k.APILoginTOTPCode(ctx, token, wrong)
		if err == nil {
			t.Fatal("APILoginAAL2 with a wrong code succeeded")
		}
		noLeak(t, err, token, secret)
		if err := k.APILoginTOTPCode(ctx, token, ""); err == nil {
			t.Error("APILoginAAL2 without a code succeeded")
		}
		wantSession(t, "token after wrong codes", sessionOf(t, k, "X-Session-Token", token), sid, "aal1")

		cookie, cookieSID, err := k.BrowserLoginSession(ctx, e, password)
		if err != nil {
			t.Fatal(err)
		}
		_, err = k.BrowserLoginTOTPCode(ctx, cookie, wrong)
		if err == nil {
			t.Fatal("BrowserLoginAAL2 with a wrong code succeeded")
		}
		noLeak(t, err, strings.TrimPrefix(cookie, kratosdev.SessionCookie+"="), secret)
		wantSession(t, "cookie after a wrong code", sessionOf(t, k, "Cookie", cookie), cookieSID, "aal1")

		// A secret of another identity gives codes that are wrong here, too.
		other := enableTOTP(t, identity(t, "aal-other"))
		if err := k.APILoginAAL2(ctx, token, other); err == nil {
			t.Error("APILoginAAL2 with another identity's secret succeeded")
		}
		wantSession(t, "token after another identity's secret", sessionOf(t, k, "X-Session-Token", token), sid, "aal1")
	})

	t.Run("no second factor", func(t *testing.T) {
		token, sid := apiLogin(t, identity(t, "aal-none"))
		if err := k.APILoginAAL2(t.Context(), token, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"); err == nil {
			t.Error("APILoginAAL2 of an identity without TOTP succeeded")
		}
		wantSession(t, "token without a second factor", sessionOf(t, k, "X-Session-Token", token), sid, "aal1")
	})

	t.Run("lookup secrets", func(t *testing.T) {
		ctx := t.Context()
		e := identity(t, "aal-lookup")
		first, firstSID := apiLogin(t, e)
		codes, err := k.EnableLookupSecrets(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		if len(codes) == 0 || codes[0] == "" {
			t.Fatalf("EnableLookupSecrets returned %d codes", len(codes))
		}
		wantSession(t, "session that enabled lookup secrets", sessionOf(t, k, "X-Session-Token", first), firstSID, "aal2")

		token, sid := apiLogin(t, e)
		wantSession(t, "password login with lookup secrets", sessionOf(t, k, "X-Session-Token", token), sid, "aal1")
		if err := k.APILoginLookupSecret(ctx, token, codes[0]); err != nil {
			t.Fatal(err)
		}
		wantSession(t, "after APILoginLookupSecret", sessionOf(t, k, "X-Session-Token", token), sid, "aal2")

		again, againSID := apiLogin(t, e)
		err = k.APILoginLookupSecret(ctx, again, codes[0])
		if err == nil {
			t.Fatal("APILoginLookupSecret with a used code succeeded")
		}
		noLeak(t, err, again, codes[0])
		wantSession(t, "after a used code", sessionOf(t, k, "X-Session-Token", again), againSID, "aal1")
		if err := k.APILoginLookupSecret(ctx, again, codes[len(codes)-1]); err != nil {
			t.Fatal(err)
		}
		wantSession(t, "after another code", sessionOf(t, k, "X-Session-Token", again), againSID, "aal2")
	})
}
