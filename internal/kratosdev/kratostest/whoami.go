package kratostest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
)

// whoamiTimeout bounds one direct whoami call: generous for -race on a busy
// machine, short enough that a hang fails the test instead of timing out
// the binary.
const whoamiTimeout = 10 * time.Second

// WhoamiAnswer is Kratos' answer to GET /sessions/whoami, as far as tests
// read it. The session fields are set on a 200 only.
type WhoamiAnswer struct {
	Status int
	Header http.Header

	ID        string `json:"id"`
	Tokenized string `json:"tokenized"`
	Identity  struct {
		ID string `json:"id"`
	} `json:"identity"`
}

// Whoami asks Kratos' whoami directly, bypassing ory-ext-authz, with
// ?tokenize_as=template unless template is "", and with one credential
// header unless header is "".
func Whoami(t testing.TB, k *kratosdev.Kratos, template, header, value string) WhoamiAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), whoamiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.WhoamiURL(template), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if header != "" {
		req.Header.Set(header, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var a WhoamiAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("whoami answer: %v", err)
		}
	}
	a.Status, a.Header = resp.StatusCode, resp.Header
	return a
}

// Claims are the claims of a JWT of the mesh template
// (deploy/kratos/mesh.claims.jsonnet; docs/ARCHITECTURE.md, facts about
// Kratos). The tags are needed: JSON decodes them case-sensitively here.
type Claims struct {
	Sub   string `json:"sub"`
	Sid   string `json:"sid"`
	Iss   string `json:"iss"`
	Jti   string `json:"jti"`
	Iat   int64  `json:"iat"`
	Nbf   int64  `json:"nbf"`
	Exp   int64  `json:"exp"`
	Email string `json:"email"`
	Aal   string `json:"aal"`
}

// PublicKeys is the public JWKS of a private one (a template's key,
// Kratos.JWKS), for VerifyJWT.
func PublicKeys(t testing.TB, privateJWKS []byte) jose.JSONWebKeySet {
	t.Helper()
	pub, err := jwks.PublicKeys(privateJWKS)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// VerifyJWT checks the signature of token, a JWT as Kratos' tokenizer signs
// it (ES256, RS256 or EdDSA), against keys, decodes its claims into claims
// (a *Claims, a *map[string]any) and returns its header.
func VerifyJWT(t testing.TB, token string, keys jose.JSONWebKeySet, claims any) jose.Header {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("not a signed JWT: %v", err)
	}
	payload, err := jws.Verify(&keys)
	if err != nil {
		t.Fatalf("JWT signature does not verify against the template's public JWKS: %v", err)
	}
	if err := json.Unmarshal(payload, claims); err != nil {
		t.Fatalf("JWT claims: %v", err)
	}
	return jws.Signatures[0].Header
}
