// The JWT Ory minted: reading it out of the whoami answer.

package ory

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	client "github.com/ory/client-go"
)

// Token is a JWT minted by Ory for a session, with what the cache needs.
type Token struct {
	JWT        string
	Expiry     time.Time
	IssuedAt   time.Time
	SessionID  string
	IdentityID string
	AAL        string
	// SetCookies are the Set-Cookie values of Ory's answer (cookie refresh).
	SetCookies []string
}

func (c *Client) token(sess *client.Session, resp *http.Response) (Token, error) {
	if sess.Active != nil && !*sess.Active {
		return Token{}, &Error{Class: ErrUnauthenticated, Status: resp.StatusCode, Reason: "session is not active"}
	}
	raw := sess.GetTokenized()
	if raw == "" {
		return Token{}, &Error{Class: ErrUnavailable, Status: resp.StatusCode, Reason: "answer has no tokenized JWT"}
	}
	if c.maxJWT > 0 && len(raw) > c.maxJWT {
		return Token{}, &Error{Class: ErrUnavailable, Status: resp.StatusCode, Reason: fmt.Sprintf("tokenized JWT of %d bytes exceeds %d", len(raw), c.maxJWT)}
	}
	claims, err := parseClaims(raw)
	if err != nil {
		return Token{}, &Error{Class: ErrUnavailable, Status: resp.StatusCode, Reason: "tokenized value is not a JWT", Err: err}
	}
	if claims.Expiry == nil {
		return Token{}, &Error{Class: ErrNoExpiry, Status: resp.StatusCode}
	}
	t := Token{
		JWT:        raw,
		Expiry:     claims.Expiry.Time(),
		SessionID:  sess.Id,
		IdentityID: claims.Subject,
		AAL:        string(sess.GetAuthenticatorAssuranceLevel()),
		SetCookies: resp.Header.Values("Set-Cookie"),
	}
	if claims.IssuedAt != nil {
		t.IssuedAt = claims.IssuedAt.Time()
	}
	if id := sess.GetIdentity().Id; id != "" {
		t.IdentityID = id
	}
	if t.SessionID == "" {
		t.SessionID = claims.SessionID
	}
	if now := c.now(); !t.Expiry.After(now) {
		return Token{}, &Error{Class: ErrExpired, Status: resp.StatusCode,
			Reason: fmt.Sprintf("exp %s is %s in the past; set a ttl on the template", t.Expiry.UTC().Format(time.RFC3339), now.Sub(t.Expiry).Round(time.Second))}
	}
	return t, nil
}

type claims struct {
	jwt.Claims
	SessionID string `json:"sid"`
}

// signatureAlgorithms are the algorithms a tokenizer JWKS may hold. The
// signature is not verified here (the JWT comes straight from Ory over the
// connection we opened), the list only lets go-jose parse the header.
var signatureAlgorithms = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.HS256, jose.HS384, jose.HS512, jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512,
}

func parseClaims(raw string) (claims, error) {
	var cl claims
	tok, err := jwt.ParseSigned(raw, signatureAlgorithms)
	if err != nil {
		return cl, err
	}
	err = tok.UnsafeClaimsWithoutVerification(&cl)
	return cl, err
}
