package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
)

// signingKey is a private JWKS, its public JWKS and the value of its
// private member d, which nothing serve prints may hold.
type signingKey struct {
	private, public []byte
	d               string
}

func newSigningKey(t *testing.T, kid string) signingKey {
	t.Helper()
	priv, pub := testpki.KeySet(t, jwks.ES256, kid)
	var raw struct {
		Keys []struct {
			D string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(priv, &raw); err != nil || raw.Keys[0].D == "" {
		t.Fatalf("private JWKS without d: %v", err)
	}
	return signingKey{private: priv, public: pub, d: raw.Keys[0].D}
}

func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	testpki.ReplaceFile(t, path, data)
}

// servedKids fetches the JWKS from serve's HTTP listener.
func servedKids(t *testing.T, httpAddr string) (*http.Response, []string) {
	t.Helper()
	resp, body := servertest.Do(t, http.MethodGet, "http://"+httpAddr+jwkspub.Path, nil)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("status %d, body %q: %v", resp.StatusCode, body, err)
	}
	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("served a private key %q", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	return resp, kids
}

// TestServeJWKSPublish: serve publishes the file given in
// ORY_EXT_AUTHZ_JWKS_PUBLISH on --http-addr, keeps the last good set when
// the file is replaced by a private JWKS (and counts that on /metrics), and
// serves a rotated file without a restart.
func TestServeJWKSPublish(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	one, two := newSigningKey(t, "one"), newSigningKey(t, "two")
	file := filepath.Join(t.TempDir(), "jwks.public.json")
	replaceFile(t, file, one.public)
	s := startServeWith(t, serveConfig{
		oryURL:  fake.URL,
		env:     map[string]string{"ORY_EXT_AUTHZ_JWKS_PUBLISH": file},
		secrets: func() []string { return append(fake.Secrets(), one.d, two.d) },
	})

	resp, kids := servedKids(t, s.httpAddr)
	if resp.StatusCode != http.StatusOK || !slices.Equal(kids, []string{"one"}) || resp.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("status %d, kids %v, Cache-Control %q; want 200, [one], max-age=300", resp.StatusCode, kids, resp.Header.Get("Cache-Control"))
	}

	replaceFile(t, file, two.private)
	if _, kids := servedKids(t, s.httpAddr); !slices.Equal(kids, []string{"one"}) {
		t.Fatalf("after a private JWKS replaced the file: kids %v, want the last good [one]", kids)
	}
	if v := servertest.Metrics(t, s.httpAddr).Value(t, "ory_ext_authz_jwks_loads_total", map[string]string{"result": jwkspub.ResultRefused}); v != 1 {
		t.Errorf("refused loads %v, want 1", v)
	}

	var both struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, pub := range [][]byte{one.public, two.public} {
		var s struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(pub, &s); err != nil {
			t.Fatal(err)
		}
		both.Keys = append(both.Keys, s.Keys...)
	}
	b, err := json.Marshal(both)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, file, b)
	testwait.For(t, "the rotated JWKS", func() bool {
		_, kids := servedKids(t, s.httpAddr)
		return slices.Equal(kids, []string{"one", "two"})
	})
	if !strings.Contains(s.logs.String(), "publishing the JWKS") || !strings.Contains(s.logs.String(), "is refused; still serving the previous keys") {
		t.Errorf("the log does not show the publication and the refusal:\n%s", s.logs.String())
	}
}

// TestServeJWKSRefused: serve does not start with a --jwks-publish file it
// would refuse to serve, from the flag or the environment; a private JWKS
// (Kratos' jwks_url file) gets the command that prints its public keys.
// Nothing printed holds the private key.
func TestServeJWKSRefused(t *testing.T) {
	dir := t.TempDir()
	key := newSigningKey(t, "signing")
	private := filepath.Join(dir, "jwks.json")
	replaceFile(t, private, key.private)
	symmetric := filepath.Join(dir, "hmac.json")
	replaceFile(t, symmetric, []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}`))
	listen := serveRefusedArgs(t)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
	}{
		{"private key", []string{"--jwks-publish", private}, nil, []string{"--jwks-publish: " + private, `key 0 (kid "signing") holds a private key`, "ory-ext-authz jwks public " + private + " > public.json"}},
		{"private key from the environment", nil, map[string]string{"ORY_EXT_AUTHZ_JWKS_PUBLISH": private}, []string{"holds a private key", "ory-ext-authz jwks public"}},
		{"symmetric key", []string{"--jwks-publish", symmetric}, nil, []string{"--jwks-publish: " + symmetric, "symmetric"}},
		{"missing file", []string{"--jwks-publish", filepath.Join(dir, "absent.json")}, nil, []string{"--jwks-publish: read JWKS", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut := serveRefused(t, append(slices.Clone(listen), tt.args...), tt.env, tt.wantErr...)
			if strings.Contains(out+errOut, key.d) {
				t.Errorf("the output holds the private key:\n%s", errOut)
			}
		})
	}
}
