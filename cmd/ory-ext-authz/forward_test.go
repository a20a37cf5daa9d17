package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
)

// TestServeForwardAuth: serve --forward-auth-addr answers /auth on its own
// listener (a session: 200 with the JWT; none: 401) and not on
// --http-addr, whose probes stay where they were; --trusted-proxies that
// leave out loopback make the forwarded headers count for nothing.
func TestServeForwardAuth(t *testing.T) {
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	s := fake.NewSession()
	get := func(url string, h map[string]string) (int, http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	fwd := servertest.FreeAddr(t)
	srv := startServe(t, fake, "--forward-auth-addr", fwd)
	fh := map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/app", "X-Forwarded-Host": "app.example.org", "Cookie": s.CookiePair()}
	code, h := get("http://"+fwd+"/auth", fh)
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Authorization"), "Bearer ey") {
		t.Errorf("/auth with a session: %d, Authorization %t", code, h.Get("Authorization") != "")
	}
	if code, _ := get("http://"+fwd+"/auth", nil); code != http.StatusUnauthorized {
		t.Errorf("/auth without a session: %d, want 401", code)
	}
	if code, _ := get("http://"+srv.httpAddr+"/auth", fh); code != http.StatusNotFound {
		t.Errorf("/auth on --http-addr: %d, want 404", code)
	}
	if code, _ := get("http://"+fwd+"/readyz", nil); code != http.StatusNotFound {
		t.Errorf("/readyz on --forward-auth-addr: %d, want 404", code)
	}
	if !strings.Contains(srv.logs.String(), `"forward_auth_addr":"`+fwd+`"`) {
		t.Errorf("the listener is not logged:\n%s", srv.logs)
	}

	// Untrusted: an open route named by the headers is not taken.
	routes := t.TempDir() + "/routes.yaml"
	replaceFile(t, routes, []byte("rules:\n  - {name: open, match: {path: {prefix: /public/}}, on_missing: allow}\n"))
	fwd2 := servertest.FreeAddr(t)
	startServe(t, fake, "--forward-auth-addr", fwd2, "--routes", routes, "--trusted-proxies", "10.0.0.0/8")
	if code, _ := get("http://"+fwd2+"/auth", map[string]string{"X-Forwarded-Uri": "/public/x"}); code != http.StatusUnauthorized {
		t.Errorf("untrusted peer naming an open path: %d, want 401", code)
	}
}
