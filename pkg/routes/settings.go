package routes

import "fmt"

// OnMissing says what happens to a request without a valid Ory session.
// Its values are authz.OnMissing's (the --on-missing flag's); the type is
// this package's own because pkg/authz is to import pkg/routes, not the
// other way round.
type OnMissing string

// The modes.
const (
	OnMissingDeny     OnMissing = "deny"
	OnMissingAllow    OnMissing = "allow"
	OnMissingRedirect OnMissing = "redirect"
)

// ParseOnMissing validates a mode given as text.
func ParseOnMissing(s string) (OnMissing, error) {
	switch m := OnMissing(s); m {
	case OnMissingDeny, OnMissingAllow, OnMissingRedirect:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want deny, allow or redirect)", s)
}

// AAL is an Ory authenticator assurance level a rule requires.
type AAL string

// The levels.
const (
	AAL1 AAL = "aal1"
	AAL2 AAL = "aal2"
)

// ParseAAL validates a level given as text.
func ParseAAL(s string) (AAL, error) {
	switch a := AAL(s); a {
	case AAL1, AAL2:
		return a, nil
	}
	return "", fmt.Errorf("unknown assurance level %q (want aal1 or aal2)", s)
}

// Settings are what applies to a request. The caller's defaults (its
// flags) are a Settings too: Rule.Settings lays a rule over them.
type Settings struct {
	// TokenizeAs is the tokenizer template asked of Ory.
	TokenizeAs string
	// OnMissing is what a request without a valid session gets.
	OnMissing OnMissing
	// RequireAAL, when set, is the least assurance level of the session.
	RequireAAL AAL
	// PassClientAuthorization keeps a client's own Authorization on an OK
	// answer without a session (authz.Options.PassClientAuthorization).
	PassClientAuthorization bool
	// Headers are the identity headers set for the upstream, sorted by
	// header name. Shared with the table: do not modify.
	Headers []HeaderClaim
}

// maxTemplateLen bounds a template name, as pkg/authz bounds the one of a
// context extension.
const maxTemplateLen = 256
