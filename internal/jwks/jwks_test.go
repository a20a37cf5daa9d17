package jwks_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
)

// privateParams are the JWK members that carry private key material (RFC 7518).
var privateParams = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func parseSet(t *testing.T, b []byte) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("parse JWKS: %v", err)
	}
	return set
}

func TestGeneratePublicRoundTrip(t *testing.T) {
	tests := []struct {
		alg, kid string
		wantAlg  string
		wantKty  string
	}{
		{alg: "", kid: "k1", wantAlg: "ES256", wantKty: "EC"},
		{alg: "ES256", kid: "k2", wantAlg: "ES256", wantKty: "EC"},
		{alg: "RS256", kid: "k3", wantAlg: "RS256", wantKty: "RSA"},
		{alg: "EdDSA", kid: "k4", wantAlg: "EdDSA", wantKty: "OKP"},
		{alg: "eddsa", kid: "", wantAlg: "EdDSA", wantKty: "OKP"},
		{alg: "es256", kid: "", wantAlg: "ES256", wantKty: "EC"},
	}
	for _, tt := range tests {
		t.Run(tt.alg+"/"+tt.kid, func(t *testing.T) {
			priv, err := jwks.Generate(tt.alg, tt.kid)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			privSet := parseSet(t, priv)
			if len(privSet.Keys) != 1 {
				t.Fatalf("got %d keys, want 1", len(privSet.Keys))
			}
			key := privSet.Keys[0]
			if key.IsPublic() || !key.Valid() {
				t.Fatalf("generated key is not a valid private key")
			}
			if key.Algorithm != tt.wantAlg || key.Use != "sig" {
				t.Errorf("alg, use = %q, %q; want %q, sig", key.Algorithm, key.Use, tt.wantAlg)
			}
			if tt.kid != "" && key.KeyID != tt.kid {
				t.Errorf("kid = %q, want %q", key.KeyID, tt.kid)
			}
			if tt.kid == "" && key.KeyID == "" {
				t.Errorf("empty kid was not filled in")
			}
			var raw struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(priv, &raw); err != nil {
				t.Fatal(err)
			}
			if raw.Keys[0]["kty"] != tt.wantKty {
				t.Errorf("kty = %v, want %s", raw.Keys[0]["kty"], tt.wantKty)
			}

			pub, err := jwks.Public(priv)
			if err != nil {
				t.Fatalf("Public: %v", err)
			}
			pubSet := parseSet(t, pub)
			if len(pubSet.Keys) != 1 || !pubSet.Keys[0].IsPublic() {
				t.Fatalf("Public did not return exactly one public key")
			}
			if p := pubSet.Keys[0]; p.KeyID != key.KeyID || p.Algorithm != key.Algorithm || p.Use != "sig" {
				t.Errorf("public key lost kid/alg/use: %q %q %q", p.KeyID, p.Algorithm, p.Use)
			}
			var rawPub struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(pub, &rawPub); err != nil {
				t.Fatal(err)
			}
			for _, param := range privateParams {
				if _, ok := rawPub.Keys[0][param]; ok {
					t.Errorf("public JWKS still holds private parameter %q", param)
				}
			}

			// Sign with the private key as Kratos would and verify with the public set.
			alg := jose.SignatureAlgorithm(key.Algorithm)
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, nil)
			if err != nil {
				t.Fatalf("NewSigner: %v", err)
			}
			jws, err := signer.Sign([]byte("payload"))
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			compact, err := jws.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{alg})
			if err != nil {
				t.Fatalf("ParseSigned: %v", err)
			}
			got, err := parsed.Verify(&pubSet)
			if err != nil {
				t.Fatalf("Verify with public JWKS: %v", err)
			}
			if string(got) != "payload" {
				t.Errorf("payload = %q", got)
			}

			// Public is idempotent: a public set stays the same public set.
			again, err := jwks.Public(pub)
			if err != nil || !bytes.Equal(again, pub) {
				t.Errorf("Public(public) = %s, %v; want unchanged", again, err)
			}
		})
	}
}

func TestGenerateFreshKeys(t *testing.T) {
	a, err := jwks.Generate("", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := jwks.Generate("", "")
	if err != nil {
		t.Fatal(err)
	}
	ka, kb := parseSet(t, a).Keys[0], parseSet(t, b).Keys[0]
	if ka.KeyID == kb.KeyID {
		t.Errorf("two generated keys share kid %q", ka.KeyID)
	}
}

func TestGenerateBadAlg(t *testing.T) {
	for _, alg := range []string{"HS256", "none", "ES384", "RS", " ES256"} {
		if _, err := jwks.Generate(alg, ""); err == nil || !strings.Contains(err.Error(), "unsupported alg") {
			t.Errorf("Generate(%q) error = %v, want unsupported alg", alg, err)
		}
	}
}

func TestPublicBadInput(t *testing.T) {
	tests := map[string]string{
		"empty":         ``,
		"not json":      `not json`,
		"array":         `[]`,
		"no keys field": `{}`,
		"no keys":       `{"keys":[]}`,
		"null keys":     `{"keys":null}`,
		"symmetric":     `{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}`,
		"unknown kty":   `{"keys":[{"kty":"XYZ"}]}`,
		"broken EC":     `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := jwks.Public([]byte(in))
			if err == nil {
				t.Fatalf("Public(%q) = %s, want error", in, out)
			}
		})
	}
}

func TestRun(t *testing.T) {
	priv, err := jwks.Generate("EdDSA", "file-key")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	wantPub, err := jwks.Public(priv)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		stdin   string
		wantErr string // substring of stderr, exit 2; "" means success
		help    bool   // want the usage on stdout, exit 0
		check   func(t *testing.T, stdout []byte)
	}{
		{name: "generate default", args: []string{"generate"}, check: wantKey("ES256", "", false)},
		{name: "generate RS256 kid", args: []string{"generate", "--alg", "RS256", "--kid", "r1"}, check: wantKey("RS256", "r1", false)},
		{name: "generate EdDSA", args: []string{"generate", "-alg=EdDSA"}, check: wantKey("EdDSA", "", false)},
		{name: "generate bad alg", args: []string{"generate", "--alg", "HS256"}, wantErr: "unsupported alg"},
		{name: "generate extra arg", args: []string{"generate", "x"}, wantErr: "unexpected arguments"},
		{name: "generate help", args: []string{"generate", "-h"}, help: true},
		{name: "public file", args: []string{"public", file}, check: wantBytes(wantPub)},
		{name: "public stdin", args: []string{"public"}, stdin: string(priv), check: wantBytes(wantPub)},
		{name: "public dash", args: []string{"public", "-"}, stdin: string(priv), check: wantBytes(wantPub)},
		{name: "public bad stdin", args: []string{"public"}, stdin: "{", wantErr: "parse JWKS"},
		{name: "public missing file", args: []string{"public", filepath.Join(t.TempDir(), "nope.json")}, wantErr: "no such file"},
		{name: "public two files", args: []string{"public", file, file}, wantErr: "at most one FILE"},
		{name: "public help", args: []string{"public", "--help"}, help: true},
		{name: "help", args: []string{"-h"}, help: true},
		{name: "no command", args: nil, wantErr: "missing command"},
		{name: "unknown command", args: []string{"rotate"}, wantErr: `unknown command "rotate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := jwks.Run(t.Context(), tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			switch {
			case tt.help:
				if code != 0 {
					t.Fatalf("exit %d, want 0 for help (stderr %q)", code, stderr.String())
				}
				if !strings.Contains(stdout.String(), "Usage:") {
					t.Errorf("help text missing from stdout: %q", stdout.String())
				}
				return
			case tt.wantErr != "":
				if code != 2 || !strings.Contains(stderr.String(), tt.wantErr) {
					t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tt.wantErr)
				}
				if stdout.Len() != 0 {
					t.Errorf("stdout not empty on error: %q", stdout.String())
				}
				return
			case code != 0:
				t.Fatalf("exit %d (stderr %q)", code, stderr.String())
			}
			tt.check(t, stdout.Bytes())
		})
	}
}

func wantKey(alg, kid string, public bool) func(*testing.T, []byte) {
	return func(t *testing.T, out []byte) {
		t.Helper()
		set := parseSet(t, out)
		if len(set.Keys) != 1 {
			t.Fatalf("got %d keys", len(set.Keys))
		}
		k := set.Keys[0]
		if k.Algorithm != alg || (kid != "" && k.KeyID != kid) || k.KeyID == "" || k.IsPublic() != public {
			t.Errorf("key alg=%q kid=%q public=%v; want alg=%q kid=%q public=%v", k.Algorithm, k.KeyID, k.IsPublic(), alg, kid, public)
		}
	}
}

func wantBytes(want []byte) func(*testing.T, []byte) {
	return func(t *testing.T, out []byte) {
		t.Helper()
		if !bytes.Equal(bytes.TrimSpace(out), want) {
			t.Errorf("stdout = %s, want %s", out, want)
		}
	}
}
