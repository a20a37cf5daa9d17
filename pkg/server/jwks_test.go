package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// TestJWKSOnHTTPOnly: the JWKS is served at jwkspub.Path on the HTTP
// listener, and neither the ext_authz nor the admin gRPC listener answers
// that path, over HTTP/1.1 or HTTP/2 without TLS.
func TestJWKSOnHTTPOnly(t *testing.T) {
	_, pub := testpki.KeySet(t, jwks.ES256, "served")
	file := filepath.Join(t.TempDir(), "jwks.public.json")
	if err := os.WriteFile(file, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := jwkspub.New(jwkspub.Options{File: file})
	if err != nil {
		t.Fatal(err)
	}
	a := servertest.Start(t, server.Options{Authz: noopAuthz{}, JWKS: p, ShutdownTimeout: time.Second, RegisterAdmin: func(*grpc.Server) {}})

	h1 := &http.Transport{Proxy: nil}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Transport{Proxy: nil, Protocols: &protocols}
	t.Cleanup(h1.CloseIdleConnections)
	t.Cleanup(h2c.CloseIdleConnections)
	get := func(rt http.RoundTripper, addr string) (int, []byte) {
		t.Helper()
		c := &http.Client{Transport: rt, Timeout: 5 * time.Second}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+jwkspub.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", addr, jwkspub.Path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}

	status, body := get(h1, a.HTTP)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); status != http.StatusOK || err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "served" || !set.Keys[0].IsPublic() {
		t.Fatalf("HTTP listener: status %d, %s (%v); want 200 and the public key", status, body, err)
	}

	for name, addr := range map[string]string{"ext_authz": a.GRPC, "admin": a.Admin} {
		// A gRPC server answers HTTP/2 only: a plain HTTP/1.1 request gets
		// its SETTINGS frame, never an HTTP/1.1 answer.
		t.Run(name+" HTTP/1.1", func(t *testing.T) {
			var d net.Dialer
			conn, err := d.DialContext(t.Context(), "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(conn, "GET "+jwkspub.Path+" HTTP/1.1\r\nHost: ory-ext-authz\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(conn) // until the server closes or the deadline
			if bytes.HasPrefix(got, []byte("HTTP/")) || bytes.Contains(got, []byte(`"keys"`)) {
				t.Fatalf("the %s listener answered HTTP/1.1: %q", name, got)
			}
		})
		// Over HTTP/2 a request that is not gRPC gets 415.
		t.Run(name+" h2c", func(t *testing.T) {
			status, body := get(h2c, addr)
			if status != http.StatusUnsupportedMediaType || bytes.Contains(body, []byte(`"keys"`)) {
				t.Fatalf("the %s listener answered %d %q, want 415 without the JWKS", name, status, body)
			}
		})
	}
}

// TestJWKSOff: without Options.JWKS nothing is served at the path.
func TestJWKSOff(t *testing.T) {
	a := servertest.Start(t, server.Options{Authz: noopAuthz{}, ShutdownTimeout: time.Second})
	resp, err := http.Get("http://" + a.HTTP + jwkspub.Path)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}
