package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
)

// TestCheckAgainstServeWithKratos is the operator's path end to end, in
// process: `serve` against a real Kratos, and `check` with a cookie Kratos
// issued through the browser login flow.
func TestCheckAgainstServeWithKratos(t *testing.T) {
	k := kratostest.Start(t, kratosdev.Options{})
	const email, password = "ops@example.org", "cmd-kratos-test-password-3"
	id, err := k.CreateIdentity(t.Context(), email, password)
	if err != nil {
		t.Fatal(err)
	}
	cookie, sid, err := k.BrowserLoginSession(t.Context(), email, password)
	if err != nil {
		t.Fatal(err)
	}
	_, cookieValue, _ := strings.Cut(cookie, "=")
	garbage := kratosdev.SessionCookie + "=MTc5NjEwOTc0NXxub3QtYS1yZWFsLXNlc3Npb24tY29va2ll"

	srv := startServeWith(t, serveConfig{oryURL: k.PublicURL()})
	grpcAddr := srv.grpcAddr

	tests := []struct {
		name     string
		cookie   string
		wantCode int
		wantOut  []string
	}{
		{"kratos cookie", "theme=dark; " + cookie, 0, []string{
			"decision: ALLOWED", `"sub": "` + id + `"`, `"sid": "` + sid + `"`, `"email": "` + email + `"`,
			`"iss": "` + k.PublicURL() + `"`, "lifetime (exp - iat): 1m0s"}},
		{"invalid cookie", garbage, 1, []string{"decision: DENIED", "HTTP status: 401"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), []string{"check", "--addr", grpcAddr, "--cookie", tt.cookie},
				func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("check exited %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out.String(), errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("check output lacks %q:\n%s", w, out.String())
				}
			}
			// The report is meant for tickets: no credential in it.
			logcapture.AssertNoSecrets(t, out.String()+errOut.String(), []string{cookieValue, garbage})
		})
	}

	// The JWT the server forwards, to make sure its log does not hold it
	// either: --print-jwt shows it (a cache hit, so the same JWT).
	var out bytes.Buffer
	if code := run(t.Context(), []string{"check", "--addr", grpcAddr, "--cookie", cookie, "--print-jwt"},
		func(string) string { return "" }, strings.NewReader(""), &out, &out); code != 0 {
		t.Fatalf("check --print-jwt exited %d:\n%s", code, out.String())
	}
	jwt := regexp.MustCompile(`Bearer (eyJ[\w-]+\.[\w-]+\.[\w-]+)`).FindStringSubmatch(out.String())
	if jwt == nil {
		t.Fatalf("check --print-jwt printed no JWT:\n%s", out.String())
	}

	if code := srv.stop(t); code != 0 {
		t.Fatalf("serve exited %d, want 0; log:\n%s", code, srv.logs.String())
	}
	logcapture.AssertNoSecrets(t, srv.logs.String(), []string{cookieValue, garbage, jwt[1]})
}
