// Package credential finds the Ory credential in the headers Envoy sends with
// a CheckRequest: the session token header, the session cookies, or an
// `Authorization: Bearer ory_st_...` session token, in Kratos' own order.
//
// Envoy sends headers in one of two encodings: the `headers` map (lower-case
// keys, duplicate headers joined with ",") or, with `encode_raw_headers`, the
// `header_map` list (duplicates not merged). Both give the same credential.
package credential

import (
	"errors"
	"net/textproto"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http/httpguts"
)

// Kind tells how the credential is presented to Ory. It is part of the cache
// key, so a cookie and a token never share an entry.
type Kind uint8

// The credential kinds.
const (
	KindNone Kind = iota
	// KindSessionToken is a native session token, from the token header or
	// from `Authorization: Bearer ory_st_...`; it goes to Ory as X-Session-Token.
	KindSessionToken
	// KindCookie is one or more session cookies, forwarded to Ory as a Cookie
	// header holding only those cookies.
	KindCookie
)

func (k Kind) String() string {
	switch k {
	case KindSessionToken:
		return "session_token"
	case KindCookie:
		return "cookie"
	}
	return "none"
}

// Credential is what is forwarded to Ory. Value is secret: never log it.
type Credential struct {
	Kind Kind
	// Value is the session token, or the Cookie header value made of the
	// matching cookies only ("name=value; name2=value2").
	Value string
}

// ErrTooLarge is returned for a credential over the size limit; it is not
// sent to Ory and counts as an invalid session.
var ErrTooLarge = errors.New("credential too large")

// ErrInvalid is returned for a credential that is not a valid HTTP header
// value (a control byte other than tab): Go's HTTP client would refuse to
// send it, so no Ory session can have it. It is not sent to Ory and counts as
// an invalid session, not as an Ory failure.
var ErrInvalid = errors.New("credential is not a valid header value")

// sessionTokenPrefix starts every Ory session token; a bearer token without it
// is not an Ory credential (it may be a JWT meant for the upstream).
const sessionTokenPrefix = "ory_st_"

// Extractor finds credentials. It is immutable and safe for concurrent use.
type Extractor struct {
	exact       []string
	prefixes    []string
	tokenHeader string
	maxBytes    int
	// firstByte holds the first byte of every cookie name and prefix, a
	// cheap filter: most cookies of a browser are not session cookies.
	firstByte [256]bool
}

// NewExtractor builds an Extractor. cookieNames are exact names or, with a
// trailing "*", prefixes. tokenHeader is the header carrying a session token.
// A credential longer than maxBytes yields ErrTooLarge.
func NewExtractor(cookieNames []string, tokenHeader string, maxBytes int) *Extractor {
	e := &Extractor{tokenHeader: strings.ToLower(tokenHeader), maxBytes: maxBytes}
	for _, n := range cookieNames {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			e.prefixes = append(e.prefixes, p)
		} else {
			e.exact = append(e.exact, n)
		}
		if n != "" && n[0] != '*' {
			e.firstByte[n[0]] = true
		} else {
			// An empty prefix matches every name.
			for i := range e.firstByte {
				e.firstByte[i] = true
			}
		}
	}
	return e
}

// HeadersRead lists the request headers the Extractor reads, lower-case. Envoy's
// `allowed_headers` must let all of them through.
func (e *Extractor) HeadersRead() []string {
	return []string{e.tokenHeader, "cookie", "authorization"}
}

// Extract returns the credential of a request, KindNone when there is none.
func (e *Extractor) Extract(h Headers) (Credential, error) {
	if v, ok := h.Get(e.tokenHeader); ok && v != "" {
		return e.limit(Credential{Kind: KindSessionToken, Value: v})
	}
	if v, ok := h.Get("cookie"); ok && v != "" {
		if c := e.cookies(v); c != "" {
			return e.limit(Credential{Kind: KindCookie, Value: c})
		}
	}
	if v, ok := h.Get("authorization"); ok {
		if tok, ok := bearer(v); ok && strings.HasPrefix(tok, sessionTokenPrefix) {
			return e.limit(Credential{Kind: KindSessionToken, Value: tok})
		}
	}
	return Credential{}, nil
}

// limit refuses a credential Ory must not be asked about: over the size
// limit, or not a header value net/http's Transport would send (it checks
// every value with httpguts.ValidHeaderFieldValue before a request leaves;
// a refusal there would look like an unreachable Ory). Value is exactly the
// header value the Ory client sends (X-Session-Token or Cookie).
func (e *Extractor) limit(c Credential) (Credential, error) {
	if len(c.Value) > e.maxBytes {
		return Credential{}, ErrTooLarge
	}
	if !httpguts.ValidHeaderFieldValue(c.Value) {
		return Credential{}, ErrInvalid
	}
	return c, nil
}

// cookies returns the session cookies of a Cookie header value as a Cookie
// header value of their own. Pairs are split on ";" and on "," (Envoy joins
// several HTTP/1.1 Cookie lines with ","). The common case of one session
// cookie returns a substring of v without allocating.
func (e *Extractor) cookies(v string) string {
	var first string
	var b *strings.Builder
	// One SIMD scan per pair for ";", and one for "," kept one step ahead
	// (rare in practice), instead of strings.IndexAny's per-call set.
	comma := strings.IndexByte(v, ',')
	for pos := 0; pos < len(v); {
		end := strings.IndexByte(v[pos:], ';')
		if end < 0 {
			end = len(v)
		} else {
			end += pos
		}
		if comma >= 0 && comma < pos {
			if c := strings.IndexByte(v[pos:], ','); c >= 0 {
				comma = pos + c
			} else {
				comma = -1
			}
		}
		if comma >= 0 && comma < end {
			end = comma
		}
		// Trimmed as net/http reads cookies (Kratos does): ASCII space and
		// tab around the pair and around the name.
		pair := textproto.TrimString(v[pos:end])
		pos = end + 1
		if pair == "" || !e.firstByte[pair[0]] {
			continue
		}
		raw, value, ok := strings.Cut(pair, "=")
		name := textproto.TrimString(raw)
		if !ok || !e.isSessionCookie(name) {
			continue
		}
		if len(name) != len(raw) {
			// "name =value": forward it as Kratos reads it, so that only
			// session cookie names reach Ory and the cache key is that
			// of the plain pair.
			pair = name + "=" + value
		}
		switch {
		case first == "":
			first = pair
		case b == nil:
			b = &strings.Builder{}
			b.WriteString(first)
			fallthrough
		default:
			b.WriteString("; ")
			b.WriteString(pair)
		}
	}
	if b != nil {
		return b.String()
	}
	return first
}

func (e *Extractor) isSessionCookie(name string) bool {
	for _, n := range e.exact {
		if name == n {
			return true
		}
	}
	for _, p := range e.prefixes {
		if len(name) > len(p) && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// bearer returns the token of an "Authorization: Bearer <token>" value; the
// scheme is case-insensitive as in RFC 9110.
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Headers reads request headers in either of Envoy's encodings.
type Headers struct {
	// Map is CheckRequest.attributes.request.http.headers.
	Map map[string]string
	// Raw is CheckRequest.attributes.request.http.header_map.headers.
	Raw []*corev3.HeaderValue
}

// Get returns the value of a header, name in lower case. In the raw encoding
// duplicate headers are joined with "," as Envoy does for the map, so both
// encodings give the same value.
func (h Headers) Get(name string) (string, bool) {
	if len(h.Map) > 0 {
		v, ok := h.Map[name]
		return v, ok
	}
	var val string
	var found bool
	var b []byte
	for _, hv := range h.Raw {
		if !strings.EqualFold(hv.GetKey(), name) {
			continue
		}
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		switch {
		case !found:
			val, found = v, true
		case b == nil:
			b = append(append(append(b, val...), ','), v...)
		default:
			b = append(append(b, ','), v...)
		}
	}
	if b != nil {
		return string(b), true
	}
	return val, found
}
