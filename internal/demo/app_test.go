package demo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// newKey is a template key as internal/jwks makes them for Kratos.
func newKey(t *testing.T, kid string) (jose.JSONWebKey, jose.JSONWebKeySet) {
	t.Helper()
	private, err := jwks.Generate(jwks.DefaultAlg, kid)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(private, &set); err != nil {
		t.Fatal(err)
	}
	public, err := jwks.PublicKeys(private)
	if err != nil {
		t.Fatal(err)
	}
	return set.Keys[0], public
}

func sign(t *testing.T, key jose.JSONWebKey, c map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerify(t *testing.T) {
	key, public := newKey(t, "demo-1")
	other, _ := newKey(t, "demo-1") // same kid, another key
	now := time.Unix(1_800_000_000, 0)
	claims := func(exp time.Time) map[string]any {
		return map[string]any{"sub": "id-1", "sid": "sid-1", "email": "a@example.org", "aal": "aal1",
			"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": exp.Unix()}
	}
	app := &App{Keys: public, Now: func() time.Time { return now }}
	tests := []struct {
		name, authorization, wantErr string
	}{
		{"valid", "Bearer " + sign(t, key, claims(now.Add(time.Minute))), ""},
		{"no header", "", "no Authorization"},
		{"basic", "Basic dXNlcjpwYXNz", "no Authorization"},
		{"not a JWT", "Bearer abc.def", "not a signed JWT"},
		{"another key", "Bearer " + sign(t, other, claims(now.Add(time.Minute))), "signature"},
		{"expired", "Bearer " + sign(t, key, claims(now.Add(-time.Second))), "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/protected", nil)
			if tt.authorization != "" {
				r.Header.Set("Authorization", tt.authorization)
			}
			c, how, err := app.verify(r)
			if tt.wantErr == "" {
				if err != nil || c.Email != "a@example.org" || c.SessionID != "sid-1" || c.AAL != "aal1" || !strings.Contains(how, "ES256") {
					t.Fatalf("verify = %+v, %q, %v", c, how, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("verify error %v, want one with %q", err, tt.wantErr)
			}
		})
	}
}

// TestPagesShowNoCredentials: the protected page shows the claims and the
// headers, but not the JWT nor a cookie's value.
func TestPagesShowNoCredentials(t *testing.T) {
	key, public := newKey(t, "demo-1")
	now := time.Now()
	tok := sign(t, key, map[string]any{"sub": "id-1", "sid": "sid-1", "email": "a@example.org", "aal": "aal1",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	app := &App{Keys: public}
	r := httptest.NewRequest(http.MethodGet, "/protected", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Cookie", "ory_kratos_session=secret-cookie-value; csrf_token_x=csrf-value")
	r.Header.Set("X-User-Email", "a@example.org")
	w := httptest.NewRecorder()
	app.Handler().ServeHTTP(w, r)
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, body)
	}
	for _, want := range []string{"a@example.org", "aal1", "id-1", "ory_kratos_session=&lt;not shown&gt;", "X-User-Email", "Bearer &lt;a JWT of"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, secret := range []string{tok, strings.Split(tok, ".")[2], "secret-cookie-value", "csrf-value"} {
		if strings.Contains(body, secret) {
			t.Errorf("the page shows a credential: %.20s...", secret)
		}
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
}

// TestLogoutNeedsSameOrigin: a logout posted from another site, or without
// a JWT, changes nothing (the app has no Kratos or admin client here: a
// call would panic).
func TestLogoutNeedsSameOrigin(t *testing.T) {
	_, public := newKey(t, "demo-1")
	app := &App{Keys: public}
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"other origin", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"neither", nil, http.StatusForbidden},
		{"same origin without a JWT", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusUnauthorized},
		{"own origin without a JWT", map[string]string{"Origin": "http://127.0.0.1:8080"}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/logout", nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			app.Handler().ServeHTTP(w, r)
			if w.Code != tt.want || w.Header().Get("Set-Cookie") != "" {
				t.Fatalf("status %d, Set-Cookie %q; want %d and none", w.Code, w.Header().Get("Set-Cookie"), tt.want)
			}
		})
	}
}

// TestRoutesFile: the demo's table loads as the server loads it and sends
// each page where the demo needs it.
func TestRoutesFile(t *testing.T) {
	table, err := routes.ParseFile(filepath.Join("..", "..", RoutesFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, rule string
		onMissing          routes.OnMissing
	}{
		{"GET", "/protected", "protected", routes.OnMissingRedirect},
		{"GET", "/protected/more", "protected", routes.OnMissingRedirect},
		{"POST", "/logout", "logout", routes.OnMissingDeny},
		{"GET", "/logout", "public", routes.OnMissingAllow},
		{"GET", "/", "public", routes.OnMissingAllow},
	}
	for _, tt := range tests {
		r, ok := table.Match(tt.method, "127.0.0.1:8080", tt.path)
		if !ok || r.Name() != tt.rule {
			t.Errorf("%s %s: rule %v, want %s", tt.method, tt.path, r, tt.rule)
			continue
		}
		if got := r.Settings(routes.Settings{}).OnMissing; got != tt.onMissing {
			t.Errorf("%s %s: on_missing %v, want %v", tt.method, tt.path, got, tt.onMissing)
		}
	}
}
