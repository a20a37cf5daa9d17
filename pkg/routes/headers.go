package routes

import (
	"fmt"
	"strings"
)

// HeaderClaim is one identity header a rule sets for the upstream: Header
// (lower-case) carries the value of the JWT claim Claim.
type HeaderClaim struct {
	Header string
	Claim  string
}

// refusedHeaders are the names a rule may not set, with the reason.
var refusedHeaders = map[string]string{
	"authorization":  "is the JWT's own header",
	"cookie":         "carries the session",
	"host":           "routes the request",
	"content-length": "frames the body",
	// Hop-by-hop (RFC 9110 7.6.1; proxy-connection and keep-alive by
	// custom): a proxy drops or acts on them, never the upstream.
	"connection":          "is hop-by-hop",
	"keep-alive":          "is hop-by-hop",
	"proxy-authenticate":  "is hop-by-hop",
	"proxy-authorization": "is hop-by-hop",
	"proxy-connection":    "is hop-by-hop",
	"te":                  "is hop-by-hop",
	"trailer":             "is hop-by-hop",
	"transfer-encoding":   "is hop-by-hop",
	"upgrade":             "is hop-by-hop",
}

// checkHeaderName validates the name of an identity header: an HTTP token
// in lower case (Envoy's header maps are lower-case), none of
// refusedHeaders, no pseudo-header, nothing Envoy reads as an instruction
// (x-envoy-*).
func checkHeaderName(h string) error {
	if strings.HasPrefix(h, ":") {
		return fmt.Errorf("header %q: a pseudo-header cannot be set", h)
	}
	if h == "" {
		return fmt.Errorf("header %q: want a lower-case header name", h)
	}
	for i := 0; i < len(h); i++ {
		if !isTokenChar(h[i]) || 'A' <= h[i] && h[i] <= 'Z' {
			return fmt.Errorf("header %q: want a lower-case header name (letters, digits and !#$%%&'*+-.^_`|~)", h)
		}
	}
	if why, ok := refusedHeaders[h]; ok {
		return fmt.Errorf("header %q cannot be set: it %s", h, why)
	}
	if strings.HasPrefix(h, "x-envoy-") {
		return fmt.Errorf("header %q cannot be set: Envoy reads x-envoy-* headers as instructions", h)
	}
	return nil
}

// isTokenChar is RFC 9110's tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// checkMethod validates a method of a rule: an HTTP token.
func checkMethod(m string) error {
	if m == "" {
		return fmt.Errorf("method %q: want an HTTP method (GET, POST, ...)", m)
	}
	for i := 0; i < len(m); i++ {
		if !isTokenChar(m[i]) {
			return fmt.Errorf("method %q: want an HTTP method (GET, POST, ...)", m)
		}
	}
	return nil
}
