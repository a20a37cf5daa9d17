package checkcli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// jwtAlgorithms is every JWS algorithm an Ory JWKS (or any common issuer) may
// use. The list only gates parsing here: nothing is verified, so accepting
// them all costs nothing and lets the tool show tokens of any issuer.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.EdDSA,
	jose.HS256, jose.HS384, jose.HS512,
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
}

// decodedJWT is a compact JWS taken apart without verifying its signature.
type decodedJWT struct {
	header []byte // indented JSON, as it was in the token
	claims []byte // indented JSON, as it was in the token
	// Times of the registered claims; nil when absent.
	iat, nbf, exp *time.Time
	// timeErrs lists registered time claims present but not NumericDates.
	timeErrs []string
}

// decodeJWT parses compact without verifying it. The error says why the value
// is not a JWT and never contains the value itself.
func decodeJWT(compact string) (*decodedJWT, error) {
	switch n := strings.Count(compact, ".") + 1; n {
	case 3:
	case 5:
		return nil, errors.New("it has 5 parts, like an encrypted JWT (JWE), whose claims cannot be read without the key")
	default:
		return nil, fmt.Errorf("a compact JWT has 3 dot-separated parts, this value has %d", n)
	}
	tok, err := jwt.ParseSigned(compact, jwtAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("not a signed JWT: %w", err)
	}
	var payload json.RawMessage
	if err := tok.UnsafeClaimsWithoutVerification(&payload); err != nil {
		return nil, fmt.Errorf("claims are not JSON: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return nil, errors.New("claims are not a JSON object")
	}

	// go-jose keeps the protected header only parsed into fields it knows;
	// decode the first segment again to show every member as the issuer wrote it.
	rawHeader, err := base64.RawURLEncoding.DecodeString(compact[:strings.IndexByte(compact, '.')])
	if err != nil {
		return nil, fmt.Errorf("header is not base64url: %w", err)
	}

	d := &decodedJWT{}
	if d.header, err = indentJSON(rawHeader); err != nil {
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	if d.claims, err = indentJSON(payload); err != nil {
		return nil, fmt.Errorf("claims are not JSON: %w", err)
	}
	for _, c := range []struct {
		name string
		dst  **time.Time
	}{{"iat", &d.iat}, {"nbf", &d.nbf}, {"exp", &d.exp}} {
		raw, ok := fields[c.name]
		if !ok {
			continue
		}
		t, ok := numericDate(raw)
		if !ok {
			d.timeErrs = append(d.timeErrs, c.name)
			continue
		}
		*c.dst = &t
	}
	return d, nil
}

// numericDate reads an RFC 7519 NumericDate: seconds since the epoch, possibly
// with a fraction.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

func indentJSON(b []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// bearerToken returns the credential of an "Authorization: Bearer x" value.
// The scheme is case-insensitive (RFC 9110).
func bearerToken(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
