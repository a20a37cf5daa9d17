package routes_test

import (
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// TestOnMissingIsAuthz: the modes a rule accepts are exactly those of
// pkg/authz (--on-missing), which keeps a type of its own.
func TestOnMissingIsAuthz(t *testing.T) {
	for _, s := range []string{"deny", "allow", "redirect", "", "Deny", "open"} {
		r, rerr := routes.ParseOnMissing(s)
		a, aerr := authz.ParseOnMissing(s)
		if (rerr == nil) != (aerr == nil) || string(r) != string(a) {
			t.Errorf("%q: routes %q, %v; authz %q, %v", s, r, rerr, a, aerr)
		}
	}
	if routes.OnMissingDeny != routes.OnMissing(authz.OnMissingDeny) || routes.OnMissingAllow != routes.OnMissing(authz.OnMissingAllow) ||
		routes.OnMissingRedirect != routes.OnMissing(authz.OnMissingRedirect) {
		t.Error("the constants differ")
	}
}

// TestAuthorizeReadsRequest: an expression that names request is evaluated
// per request; one over claims and session only has one result per JWT.
func TestAuthorizeReadsRequest(t *testing.T) {
	for expr, want := range map[string]bool{
		`claims.sub == session.identity_id`:                           false,
		`"admin" in claims.roles`:                                     false,
		`request.method == "GET"`:                                     true,
		`"admin" in claims.roles && request.headers["x-team"] == "a"`: true,
		`claims.tenant == "a" || request.path.startsWith("/pub/")`:    true,
	} {
		tab, err := routes.Parse([]byte("rules: [{authorize: '" + strings.ReplaceAll(expr, "'", "''") + "'}]"))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if got := tab.Rules()[0].AuthorizeReadsRequest(); got != want {
			t.Errorf("%s: AuthorizeReadsRequest() = %v, want %v", expr, got, want)
		}
	}
	if (&routes.Rule{}).AuthorizeReadsRequest() {
		t.Error("a rule without an expression reads the request")
	}
}
