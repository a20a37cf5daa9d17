package routes_test

import (
	"fmt"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

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
