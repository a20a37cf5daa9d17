package routes_test

import (
	"fmt"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// A table with an open area and a protected admin area: the first rule
// that matches wins, a request no rule matches gets the defaults, and a
// path that reads differently to Envoy and to the upstream gets the
// ambiguous path rule.
func ExampleTable_Match() {
	table, err := routes.Parse([]byte(`
rules:
  - name: public
    match: {path: {prefix: /public/}}
    on_missing: allow
  - name: admin
    match: {host: "*.example.com", path: {prefix: /admin/}}
    require_aal: aal2
    authorize: '"admin" in claims.roles'
    headers: {x-user-id: sub}
`))
	if err != nil {
		panic(err)
	}
	defaults := routes.Settings{TokenizeAs: "mesh", OnMissing: routes.OnMissingDeny}
	for _, path := range []string{"/public/logo.png", "/admin/users?page=2", "/orders", "/public/..%2Fadmin/users"} {
		rule, _ := table.Match("GET", "app.example.com", path)
		s := rule.Settings(defaults)
		fmt.Printf("%-26s %-18s on_missing=%s aal=%q headers=%v\n", path, rule, s.OnMissing, s.RequireAAL, s.Headers)
	}
	admin, _ := table.Match("GET", "app.example.com", "/admin/users")
	ok, err := admin.Authorize(routes.Vars{Claims: map[string]any{"sub": "id-1", "roles": []any{"admin"}}})
	fmt.Println("admin authorized:", ok, err)
	fmt.Println("identity headers:", table.HeaderNames())
	// Output:
	// /public/logo.png           rule 0 (public)    on_missing=allow aal="" headers=[]
	// /admin/users?page=2        rule 1 (admin)     on_missing=deny aal="aal2" headers=[{x-user-id sub}]
	// /orders                    no rule (defaults) on_missing=deny aal="" headers=[]
	// /public/..%2Fadmin/users   ambiguous path     on_missing=deny aal="" headers=[]
	// admin authorized: true <nil>
	// identity headers: [x-user-id]
}

// NormalizePath is the path as Envoy forwards it with normalize_path and
// merge_slashes on.
func ExampleNormalizePath() {
	for _, p := range []string{"/a/b/../c", "//a///b", "/a/%2e%2e/c?q=1", "/%41%2Fb", "/a\\..\\c"} {
		n, ok := routes.NormalizePath(p)
		fmt.Println(p, "->", n, ok)
	}
	// Output:
	// /a/b/../c -> /a/c true
	// //a///b -> /a/b true
	// /a/%2e%2e/c?q=1 -> /c true
	// /%41%2Fb -> /A%2Fb true
	// /a\..\c -> /c true
}
