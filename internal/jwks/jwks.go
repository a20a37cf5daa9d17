// Package jwks creates the signing keys for Kratos' session tokenizer.
//
// Kratos signs the JWT of a tokenizer template with the first key of the
// template's jwks_url, and that key must be a private key. Upstream services
// verify the JWT with the matching public keys. This package generates such a
// private JSON Web Key Set and derives the public set from it, so a dev or test
// setup needs no openssl incantations and can never publish a private key by
// accident. Run wires both into the `ory-ext-authz jwks` command.
package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Supported signing algorithms. They are the ones Kratos v1.3.1 can sign with
// (golang-jwt) and Envoy's jwt_authn can verify.
const (
	ES256 = string(jose.ES256)
	RS256 = string(jose.RS256)
	EdDSA = string(jose.EdDSA)
)

// DefaultAlg is used when no algorithm is given: small keys and signatures, and
// supported by every JWT verifier that matters here.
const DefaultAlg = ES256

// rsaBits is the RS256 modulus size: the RFC 7518 minimum, fast to generate.
const rsaBits = 2048

// Algs lists the algorithms Generate accepts, for help texts and tests.
func Algs() []string { return []string{ES256, RS256, EdDSA} }

// Generate returns a private JWKS ({"keys":[...]}) holding one new signing key
// with the given kid, alg and use "sig". An empty alg means DefaultAlg; alg is
// matched case-insensitively. An empty kid becomes the key's RFC 7638
// thumbprint, which is unique per key and can be recomputed by anyone holding
// the public key.
func Generate(alg, kid string) ([]byte, error) {
	alg, err := canonicalAlg(alg)
	if err != nil {
		return nil, err
	}
	var key any
	switch alg {
	case ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		key, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case EdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"}
	if jwk.KeyID == "" {
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("key thumbprint: %w", err)
		}
		jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	return marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
}

// Public returns the public JWKS of a private one: every key reduced to its
// public part, kid, alg and use kept. Keys that are already public pass
// through unchanged. It fails on invalid JSON, on a set without keys and on
// keys without a public part (symmetric "oct" keys), so a verifier is never
// handed an empty or secret set.
func Public(privateJWKS []byte) ([]byte, error) {
	pub, err := PublicKeys(privateJWKS)
	if err != nil {
		return nil, err
	}
	return marshal(pub)
}

// PublicKeys is Public as a key set, for a verifier in the same process.
func PublicKeys(privateJWKS []byte) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(privateJWKS, &set); err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("parse JWKS: %w", err)
	}
	if len(set.Keys) == 0 {
		return jose.JSONWebKeySet{}, errors.New("parse JWKS: no keys")
	}
	pub := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(set.Keys))}
	for i, k := range set.Keys {
		p := k.Public()
		if !p.Valid() {
			return jose.JSONWebKeySet{}, fmt.Errorf("key %d (kid %q): no public key (symmetric or invalid key)", i, k.KeyID)
		}
		pub.Keys = append(pub.Keys, p)
	}
	return pub, nil
}

func canonicalAlg(alg string) (string, error) {
	if alg == "" {
		return DefaultAlg, nil
	}
	for _, a := range Algs() {
		if strings.EqualFold(alg, a) {
			return a, nil
		}
	}
	return "", fmt.Errorf("unsupported alg %q (want one of %s)", alg, strings.Join(Algs(), ", "))
}

func marshal(set jose.JSONWebKeySet) ([]byte, error) {
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return b, nil
}
