package authz

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// extras is what a fetched JWT is decoded into, once, for the route table
// in force when it was fetched: the OK part of the answer of each identity
// header set, and the claims when some rule's `authorize` reads them. A
// cached answer holds it only when the table needs it; a hit under a
// newer table (a reload) builds its own until the entry is refreshed.
type extras struct {
	plan *plan
	// claims are the JWT's claims, nil unless plan.claims.
	claims map[string]any
	// session is the session the JWT was minted for.
	session routes.Session
	// jwtBytes is the JWT's length: with the request's headers, the size
	// of an expression's input (routes.Vars.InputBytes).
	jwtBytes int
	// verdicts keep, per plan.verdictSlot, the result of an `authorize`
	// expression that reads no request: the same for every request of
	// this JWT, evaluated on the first and kept.
	verdicts []atomic.Pointer[verdict]
	// ok holds, for each set of plan.sets, the OK part that sets the set's
	// headers whose claims the JWT has and removes every other name.
	ok []*authv3.CheckResponse_OkResponse
}

// maxHeaderValue bounds an identity header's value; a longer claim is not
// set (the header is removed), as is one that is not a valid header value.
const maxHeaderValue = 8 << 10

// buildExtras decodes jwt's claims for p. The JWT came from Ory (or from
// a sealed shared-tier record), so its claims are read without verifying
// its signature; a payload that does not decode is an error, never an
// answer without the headers.
func buildExtras(p *plan, jwt string, sess routes.Session) (*extras, error) {
	claims, err := decodeClaims(jwt)
	if err != nil {
		return nil, err
	}
	x := &extras{plan: p, session: sess, jwtBytes: len(jwt), ok: make([]*authv3.CheckResponse_OkResponse, len(p.sets))}
	if p.claims {
		x.claims = claims
		x.verdicts = make([]atomic.Pointer[verdict], p.verdicts)
	}
	for i, set := range p.sets {
		ok := &authv3.OkHttpResponse{}
		for _, h := range set {
			if v, ok2 := headerValue(claims[h.Claim]); ok2 {
				ok.Headers = append(ok.Headers, header(h.Header, v))
			}
		}
		for _, name := range p.names {
			if !setsHeader(ok.Headers, name) {
				ok.HeadersToRemove = append(ok.HeadersToRemove, name)
			}
		}
		x.ok[i] = &authv3.CheckResponse_OkResponse{OkResponse: ok}
	}
	return x, nil
}

// verdict is an `authorize` result kept for a JWT.
type verdict struct {
	ok  bool
	err error
}

func setsHeader(hs []*corev3.HeaderValueOption, name string) bool {
	for _, h := range hs {
		if h.GetHeader().GetKey() == name {
			return true
		}
	}
	return false
}

// decodeClaims decodes the payload of a compact JWS.
func decodeClaims(jwt string) (map[string]any, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("claims: not a compact JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("claims: payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("claims: payload: %w", err)
	}
	if claims == nil {
		return nil, errors.New("claims: payload is not a JSON object")
	}
	return claims, nil
}

// headerValue encodes a claim as an identity header's value, as Envoy's
// jwt_authn claim_to_headers does: a string as it is, a number in JSON
// form (integers without exponent), a boolean as true or false, and a list
// of those joined by ","; an object, null, an absent claim, an empty value
// or one that is not a valid header value (control characters, over maxHeaderValue
// bytes) is not set.
func headerValue(v any) (string, bool) {
	var s string
	switch c := v.(type) {
	case []any:
		parts := make([]string, 0, len(c))
		for _, e := range c {
			p, ok := scalarValue(e)
			if !ok {
				return "", false
			}
			parts = append(parts, p)
		}
		s = strings.Join(parts, ",")
	default:
		var ok bool
		if s, ok = scalarValue(v); !ok {
			return "", false
		}
	}
	// Envoy drops a header set to "" (keep_empty_value false), which would
	// leave the client's own in place: an empty value is not set either.
	if s == "" || len(s) > maxHeaderValue || !validHeaderValue(s) {
		return "", false
	}
	return s, true
}

func scalarValue(v any) (string, bool) {
	switch c := v.(type) {
	case string:
		return c, true
	case bool:
		return strconv.FormatBool(c), true
	case float64:
		if c == math.Trunc(c) && math.Abs(c) < 1<<53 {
			return strconv.FormatInt(int64(c), 10), true
		}
		return strconv.FormatFloat(c, 'g', -1, 64), true
	}
	return "", false
}

// validHeaderValue is RFC 9110's field-value without leading or trailing
// whitespace: visible characters, spaces and tabs, and obs-text.
func validHeaderValue(s string) bool {
	if s != strings.TrimSpace(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
