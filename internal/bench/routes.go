package bench

import (
	"fmt"
	"strings"
)

// The route table of the policy benchmarks (BenchmarkCheckCacheHitPolicy in
// pkg/authz, make bench's warm-routes): PolicyRules rules, the request of
// internal/bench/load (GET app.example.org/api/orders?page=2) matching the
// last one, which has an `authorize` expression and two identity headers.
const (
	// PolicyRules is the number of rules of PolicyRoutes.
	PolicyRules = 200
	// PolicyExpression is the matched rule's `authorize`: a role from the
	// JWT's claims and the JWT's subject against the session's identity.
	PolicyExpression = `"admin" in claims.roles && claims.sub == session.identity_id`
	// PolicyRole is the role PolicyExpression requires.
	PolicyRole = "admin"
	// PolicyUserID and PolicyUserEmail are the matched rule's identity
	// headers, carrying the claims sub and email.
	PolicyUserID    = "x-user-id"
	PolicyUserEmail = "x-user-email"
	// PolicyOtherHeader is an identity header only the first rule sets:
	// every answer of the matched rule removes it (headers_to_remove).
	PolicyOtherHeader = "x-user-aal"
)

// PolicyRoles is the roles claim of a session PolicyExpression admits.
var PolicyRoles = []any{PolicyRole, "dev"}

// PolicyRoutes is the routes file of the policy benchmarks: 199 rules for
// other hosts and paths (on_missing: allow; the first also sets
// PolicyOtherHeader from the aal claim), then the one the benchmark traffic
// matches, tried last: prefix /api/, template mesh, PolicyExpression and
// the identity headers PolicyUserID (sub) and PolicyUserEmail (email).
func PolicyRoutes() string {
	var b strings.Builder
	b.WriteString("rules:\n")
	fmt.Fprintf(&b, "  - {name: r0, match: {host: h0.example.org, path: {prefix: /svc0/}}, on_missing: allow, headers: {%s: aal}}\n", PolicyOtherHeader)
	for i := 1; i < PolicyRules-1; i++ {
		fmt.Fprintf(&b, "  - {name: r%d, match: {host: h%d.example.org, path: {prefix: /svc%d/}}, on_missing: allow}\n", i, i, i)
	}
	fmt.Fprintf(&b, "  - name: api\n    match: {path: {prefix: /api/}}\n    tokenize_as: mesh\n    authorize: '%s'\n    headers: {%s: sub, %s: email}\n",
		PolicyExpression, PolicyUserID, PolicyUserEmail)
	return b.String()
}
