package authz

import "fmt"

// OnMissing says what happens to a request without a valid Ory session:
// the --on-missing flag and the per-route `on_missing` context extension.
type OnMissing string

// The modes.
const (
	// OnMissingDeny answers 401.
	OnMissingDeny OnMissing = "deny"
	// OnMissingAllow lets the request through without a JWT (removing a
	// client's own Authorization unless Options.PassClientAuthorization).
	OnMissingAllow OnMissing = "allow"
	// OnMissingRedirect sends browsers to the login URL, others get 401.
	OnMissingRedirect OnMissing = "redirect"
)

// DefaultOnMissing is the mode when Options.OnMissing is empty.
const DefaultOnMissing = OnMissingDeny

// ParseOnMissing validates a mode given as text.
func ParseOnMissing(s string) (OnMissing, error) {
	switch m := OnMissing(s); m {
	case OnMissingDeny, OnMissingAllow, OnMissingRedirect:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want deny, allow or redirect)", s)
}

// The request limits a zero Limits field takes. They sit just above Envoy's
// own defaults (max_headers_count 100, max_request_headers_kb 60), so that
// only a request Envoy was configured to let through can exceed them.
const (
	DefaultMaxRequestHeaders     = 128
	DefaultMaxRequestHeaderBytes = 64 << 10
	// DefaultMaxCookies is above what browsers keep per domain (Chrome: 180).
	DefaultMaxCookies = 200
)
