package credential

import (
	"errors"
	"net/textproto"
	"strings"
	"unsafe"

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
	if c, shared := e.sessionCookies(h); c != "" {
		cred, err := e.limit(Credential{Kind: KindCookie, Value: c})
		if err == nil && shared {
			// c points into a header_map entry's bytes; the credential
			// outlives the request (cache fill, refresh).
			cred.Value = strings.Clone(cred.Value)
		}
		return cred, err
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
	if !validHeaderValue(c.Value) {
		return Credential{}, ErrInvalid
	}
	return c, nil
}

// validHeaderValue is httpguts.ValidHeaderFieldValue (no control byte but
// tab) with a fast path: eight bytes at a time it proves the common value
// free of every byte below 0x20 and of 0x7f; any other value gets
// httpguts' own answer. It checks every credential, so it is on the hot path.
func validHeaderValue(v string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(v); i += 8 {
		w := v[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		// Some byte < 0x20, or some byte of x^0x7f... == 0, i.e. 0x7f
		// (the "hasless" bit trick: exact as a yes/no answer).
		del := x ^ (ones * 0x7f)
		if ((x-ones*0x20)&^x|(del-ones)&^del)&highs != 0 {
			return httpguts.ValidHeaderFieldValue(v)
		}
	}
	for ; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return httpguts.ValidHeaderFieldValue(v)
		}
	}
	return true
}

// sessionCookies returns the session cookies of the request as a Cookie
// header value of their own ("" for none), in order. shared says that it may
// point into the bytes of a header_map entry.
//
// net/http, so Kratos and most upstreams, reads every Cookie line on ";"
// only: "," is an ordinary byte of a value (readCookies in net/http's
// cookie.go). header_map has the lines apart, so each is read exactly so.
// The headers map joins several lines with "," (cookie is not an inline
// header in Envoy by default), so there a "," is either a line boundary or a
// byte of a value; it is read as follows, so that a session cookie hidden in
// another cookie's value ("pref=x,ory_kratos_session=<attacker's>; " +
// "ory_kratos_session=<victim's>", a session fixation) is never the one
// forwarded when net/http would read a real one:
//
//  1. Split on ";" as net/http does. A pair named as a session cookie is
//     real; its value ends at the first "," (an Ory session never holds one:
//     the rest is another line Envoy joined).
//  2. If there is a real pair, only real pairs are forwarded.
//  3. Only without a real pair are the ","-fragments read: Envoy's join of
//     "theme=dark" and "ory_kratos_session=abc" lines is
//     "theme=dark,ory_kratos_session=abc", which no ";"-reading names a
//     session in: Kratos behind Envoy would read it from the lines. This
//     also reads a session cookie hidden in a value when the client sent no
//     real one (and cannot tell two lines, the first hiding one, from
//     three): an attacker able to set a cookie on the victim's domain could
//     set the session cookie itself anyway; one who only controls another
//     cookie's value is stopped by `encode_raw_headers: true`, which removes
//     the ambiguity entirely.
func (e *Extractor) sessionCookies(h Headers) (string, bool) {
	var j joiner
	if len(h.Map) > 0 {
		v := h.Map["cookie"]
		if !e.pairs(v, ";", true, &j) && strings.IndexByte(v, ',') >= 0 {
			e.pairs(v, ";,", false, &j)
		}
		return j.String(), false
	}
	shared := false
	for _, hv := range h.Raw {
		if !strings.EqualFold(hv.GetKey(), "cookie") {
			continue
		}
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			// Read in place; Extract copies only what it forwards.
			v = unsafe.String(&raw[0], len(raw))
			shared = true
		}
		e.pairs(v, ";", false, &j)
	}
	// A builder's string is a copy of its own.
	return j.String(), shared && j.b == nil
}

// pairs adds to j the session cookies of v split on the bytes of seps
// (";", or ";," for the fragments of the headers map), and tells whether it
// found one. With cutComma a value ends at its first ",". One SIMD scan per
// pair for ";"; the rare ","-fragments pay for strings.IndexAny.
func (e *Extractor) pairs(v, seps string, cutComma bool, j *joiner) bool {
	found := false
	for pos := 0; pos < len(v); {
		var end int
		if len(seps) == 1 {
			end = strings.IndexByte(v[pos:], seps[0])
		} else {
			end = strings.IndexAny(v[pos:], seps)
		}
		if end < 0 {
			end = len(v)
		} else {
			end += pos
		}
		// Trimmed as net/http reads cookies (Kratos does): ASCII space and
		// tab around the pair.
		pair := textproto.TrimString(v[pos:end])
		pos = end + 1
		if pair == "" || !e.firstByte[pair[0]] {
			continue
		}
		if pair, ok := e.sessionPair(pair, cutComma); ok {
			j.add(pair)
			found = true
		}
	}
	return found
}

// sessionPair returns a trimmed pair as forwarded to Ory if it names a
// session cookie. The name is trimmed as net/http reads it (ASCII space and
// tab), so that only session cookie names reach Ory and the cache key is
// that of the plain pair.
func (e *Extractor) sessionPair(pair string, cutComma bool) (string, bool) {
	raw, value, hasValue := strings.Cut(pair, "=")
	name := textproto.TrimString(raw)
	// A "," is no byte of a name net/http reads (not a token); in the
	// headers map such a "name" holds the end of one line and the start
	// of the next.
	if !e.isSessionCookie(name) || strings.IndexByte(name, ',') >= 0 {
		return "", false
	}
	if !hasValue {
		// net/http reads a bare name as that cookie with an empty value,
		// which hides a later pair of the same name from Kratos: keep it.
		return name, true
	}
	if cutComma {
		if i := strings.IndexByte(value, ','); i >= 0 {
			value = strings.TrimRight(value[:i], " \t")
			pair = pair[:len(raw)+1+len(value)]
		}
	}
	if len(name) != len(raw) {
		return name + "=" + value, true
	}
	return pair, true
}

// joiner builds a Cookie header value from pairs. One pair, the common case,
// is returned as it is, without allocating.
type joiner struct {
	first string
	b     *strings.Builder
}

func (j *joiner) add(pair string) {
	switch {
	case j.first == "":
		j.first = pair
	case j.b == nil:
		j.b = &strings.Builder{}
		j.b.WriteString(j.first)
		fallthrough
	default:
		j.b.WriteString("; ")
		j.b.WriteString(pair)
	}
}

func (j *joiner) String() string {
	if j.b != nil {
		return j.b.String()
	}
	return j.first
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
// encodings give the same value. (Extract reads Cookie lines one by one
// instead: a "," within one is a byte of a cookie value.)
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
