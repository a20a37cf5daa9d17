package ory

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 31 Dec 2025 00:00:30 GMT": 0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestStatusClasses(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		header map[string]string
		class  error
		check  func(t *testing.T, e *Error)
	}{
		{"401", 401, `{"error":{"code":401,"status":"Unauthorized"}}`, nil, ErrUnauthenticated, nil},
		{"401 not JSON", 401, `nope`, nil, ErrUnauthenticated, nil},
		{"403 aal", 403, `{"error":{"id":"session_aal2_required"},"redirect_browser_to":"https://ory/login?aal=aal2"}`, nil, ErrForbidden, func(t *testing.T, e *Error) {
			if e.ErrorID != "session_aal2_required" || e.RedirectBrowserTo != "https://ory/login?aal=aal2" {
				t.Errorf("%+v", e)
			}
		}},
		{"400 template", 400, `{"error":{"code":400,"reason":"Unable to find tokenizer template"}}`, nil, ErrBadTemplate, func(t *testing.T, e *Error) {
			if !strings.Contains(e.Error(), "Unable to find tokenizer template") {
				t.Errorf("error %q does not carry Ory's reason", e.Error())
			}
		}},
		{"429", 429, ``, map[string]string{"Retry-After": "2"}, ErrUnavailable, func(t *testing.T, e *Error) {
			if e.RetryAfter != 2*time.Second {
				t.Errorf("RetryAfter = %v", e.RetryAfter)
			}
		}},
		{"503", 503, ``, nil, ErrUnavailable, nil},
		{"302 not followed", 302, ``, map[string]string{"Location": "https://elsewhere.invalid/"}, ErrUnavailable, nil},
		{"404", 404, ``, nil, ErrUnavailable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := New(Options{BaseURL: srv.URL, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Tokenize(t.Context(), credential.Credential{Kind: credential.KindCookie, Value: "ory_kratos_session=x"}, "mesh")
			var e *Error
			if !errors.Is(err, tt.class) || !errors.As(err, &e) || e.Status != tt.status {
				t.Fatalf("err = %v, want class %v with status %d", err, tt.class, tt.status)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

func TestBodyLimitAndTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("tokenize_as") == "slow" {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"x","pad":"` + strings.Repeat("p", 4096) + `"}`))
	}))
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL, Timeout: 100 * time.Millisecond, MaxBodyBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	cred := credential.Credential{Kind: credential.KindSessionToken, Value: "ory_st_x"}
	if _, err := c.Tokenize(t.Context(), cred, "mesh"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("oversize body: err = %v, want ErrUnavailable", err)
	}
	_, err = c.Tokenize(t.Context(), cred, "slow")
	var e *Error
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &e) || e.Reason != "timeout" {
		t.Errorf("slow Ory: err = %v, want ErrUnavailable timeout", err)
	}
}

func TestOryCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cred := credential.Credential{Kind: credential.KindSessionToken, Value: "ory_st_x"}
	for _, tt := range []struct {
		name   string
		caFile string
		want   error
	}{
		{"system roots only: untrusted", "", ErrUnavailable},
		{"with --ory-ca-file: trusted, Ory's 401 arrives", caFile, ErrUnauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := NewTransport(tt.caFile)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			c, err := New(Options{BaseURL: srv.URL, Timeout: 2 * time.Second, HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Tokenize(t.Context(), cred, "mesh"); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewTransport(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("a missing CA file was accepted")
	}
}

func TestBackoffAfter429(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls++
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	now := time.Unix(1_800_000_000, 0)
	c, err := New(Options{BaseURL: srv.URL, Timeout: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cred := credential.Credential{Kind: credential.KindSessionToken, Value: "ory_st_x"}
	for range 3 {
		if _, err := c.Tokenize(t.Context(), cred, "mesh"); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("calls during Retry-After = %d, want 1", calls)
	}
	now = now.Add(2 * time.Second)
	_, _ = c.Tokenize(t.Context(), cred, "mesh")
	if calls != 2 {
		t.Fatalf("calls after Retry-After = %d, want 2", calls)
	}
}

// TestBaseURLUserinfo: New refuses a base URL with user info. net/http turns
// a URL's user info into "Authorization: Basic ..." on every request, which
// whoami has no use for (it reads X-Session-Token, the session cookie or a
// Bearer session token), and errors and logs that quote the URL would carry
// it. The error names no part of the user info.
func TestBaseURLUserinfo(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	var gotAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	for _, userinfo := range []string{"admin:" + secret, secret, secret + ":"} {
		t.Run(userinfo, func(t *testing.T) {
			base := strings.Replace(srv.URL, "http://", "http://"+userinfo+"@", 1)
			c, err := New(Options{BaseURL: base, Timeout: time.Second})
			if err == nil {
				defer c.Close()
				_, terr := c.Tokenize(t.Context(), credential.Credential{Kind: credential.KindSessionToken, Value: "ory_st_x"}, "mesh")
				t.Fatalf("New accepted a base URL with user info; the whoami call sent Authorization %q (%v)", gotAuth.Load(), terr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error repeats the user info: %v", err)
			}
		})
	}
}
