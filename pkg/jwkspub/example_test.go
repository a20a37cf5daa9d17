package jwkspub_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
)

// publicJWKS is what `ory-ext-authz jwks public jwks.json` prints for the
// tokenizer's key.
const publicJWKS = `{"keys":[{"use":"sig","kty":"EC","kid":"example-2026","crv":"P-256","alg":"ES256",
  "x":"LwoahdmObSufysAKzpfcmYJB_b1SBUu9QKaIw7CwT5I","y":"G7GgK_cvIso8wNsBl5bFYSTDJdguGv5HRf0C6e6Y0I4"}]}`

// A Publisher serves a file of public keys at Path, where Envoy's
// remote_jwks or Istio's jwksUri fetch them; a verifier that sends the ETag
// back gets 304 until the file changes.
func ExamplePublisher() {
	dir, err := os.MkdirTemp("", "jwkspub")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	file := filepath.Join(dir, "jwks.public.json")
	if err := os.WriteFile(file, []byte(publicJWKS), 0o600); err != nil {
		panic(err)
	}
	p, err := jwkspub.New(jwkspub.Options{File: file})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+jwkspub.Path, p)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + jwkspub.Path)
	if err != nil {
		panic(err)
	}
	_ = resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))

	req, _ := http.NewRequest(http.MethodGet, srv.URL+jwkspub.Path, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	_ = again.Body.Close()
	fmt.Println(again.StatusCode)
	// Output:
	// 200 application/json public, max-age=300
	// 304
}

// ParsePublic is the rule New and every reload apply: a private key (here
// an EC key with its "d") is refused, so it is never published.
func ExampleParsePublic() {
	private := `{"keys":[{"kty":"EC","kid":"signing","crv":"P-256",
	  "x":"LwoahdmObSufysAKzpfcmYJB_b1SBUu9QKaIw7CwT5I","y":"G7GgK_cvIso8wNsBl5bFYSTDJdguGv5HRf0C6e6Y0I4",
	  "d":"not-shown-in-errors"}]}`
	_, err := jwkspub.ParsePublic([]byte(private))
	fmt.Println(errors.Is(err, jwkspub.ErrPrivateKey))
	fmt.Println(err)

	set, err := jwkspub.ParsePublic([]byte(publicJWKS))
	fmt.Println(len(set.Keys), set.Keys[0].KeyID, err)
	// Output:
	// true
	// key 0 (kid "signing") holds a private key: only public keys are published
	// 1 example-2026 <nil>
}
