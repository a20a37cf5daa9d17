package routes_test

import (
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
