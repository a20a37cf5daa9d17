package redistier_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// TestLabelLists: Ops, Results and BreakerStates list every Op*, Result*
// and Breaker* constant of observe.go, each once, so that a metrics package
// pre-creating its series from them misses none.
func TestLabelLists(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "observe.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string][]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				for _, prefix := range []string{"Op", "Result", "Breaker"} {
					if strings.HasPrefix(name.Name, prefix) && name.IsExported() {
						declared[prefix] = append(declared[prefix], strings.Trim(lit.Value, `"`))
					}
				}
			}
		}
	}
	for prefix, list := range map[string][]string{"Op": redistier.Ops(), "Result": redistier.Results(), "Breaker": redistier.BreakerStates()} {
		want := slices.Sorted(slices.Values(declared[prefix]))
		got := slices.Sorted(slices.Values(list))
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s* constants %v, listed %v", prefix, want, got)
		}
	}
}
