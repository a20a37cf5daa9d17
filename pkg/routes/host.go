package routes

import (
	"fmt"
	"strings"
)

// hostMatcher matches the host of a request: exactly, or any name under a
// domain ("*.example.com": one or more labels before .example.com, never
// example.com itself). Names are compared without regard to ASCII case.
type hostMatcher struct {
	// name is the host, or for a wildcard the suffix with its leading dot
	// (".example.com"); lower-case.
	name     string
	wildcard bool
}

// maxHostLen is the longest DNS name.
const maxHostLen = 253

// parseHost validates a rule's host: a DNS name of letters, digits and
// hyphens (an IPv4 address is one too), optionally under a leading "*."
// wildcard label; no port, no trailing dot.
func parseHost(s string) (hostMatcher, error) {
	name, wildcard := strings.CutPrefix(s, "*.")
	if name == "" || len(s) > maxHostLen {
		return hostMatcher{}, fmt.Errorf("host %q: want a DNS name (example.com) or a wildcard (*.example.com)", s)
	}
	if strings.Contains(name, ":") {
		return hostMatcher{}, fmt.Errorf("host %q: no port (the request's port is not matched)", s)
	}
	for label := range strings.SplitSeq(name, ".") {
		if err := checkLabel(label); err != nil {
			return hostMatcher{}, fmt.Errorf("host %q: %w", s, err)
		}
	}
	name = strings.ToLower(name)
	if wildcard {
		return hostMatcher{name: "." + name, wildcard: true}, nil
	}
	return hostMatcher{name: name}, nil
}

func checkLabel(l string) error {
	if l == "" || len(l) > 63 {
		return fmt.Errorf("label %q: want 1 to 63 characters (no empty label, no trailing dot, no port)", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' && i > 0 && i < len(l)-1 {
			continue
		}
		return fmt.Errorf("label %q: want letters, digits and inner hyphens only (a '*' only as the whole first label)", l)
	}
	return nil
}

// match reports whether host, as requestHost returns it (lower-case),
// matches.
func (m hostMatcher) match(host string) bool {
	if !m.wildcard {
		return host == m.name
	}
	return len(host) > len(m.name) && host[len(host)-len(m.name):] == m.name &&
		host[len(host)-len(m.name)-1] != '.'
}

// requestHost is the name a request's authority (Envoy's host attribute,
// :authority or Host) holds: without the port, without the brackets of an
// IPv6 literal, without one trailing dot ("example.com." is the same name
// as "example.com", and a rule for one must not be skipped by the other).
func requestHost(authority string) string {
	h := authority
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h[:i], ':') < 0 && allDigits(h[i+1:]) {
		h = h[:i]
	}
	return lowerASCII(strings.TrimSuffix(h, "."))
}

// lowerASCII is s with ASCII letters in lower case; it allocates only
// when s has an upper-case one. Names are compared without regard to
// ASCII case (RFC 4343), as the rules' names are stored lower-case.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
