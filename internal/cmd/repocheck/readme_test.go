package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEPackageTable: the README's package table names exactly the
// library packages `go list ./pkg/...` lists, so the map a newcomer reads
// first cannot drift from the tree.
func TestREADMEPackageTable(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "./pkg/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var listed []string
	for _, p := range strings.Fields(string(out)) {
		listed = append(listed, p[strings.Index(p, "/pkg/")+1:])
	}
	var named []string
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		for _, m := range regexp.MustCompile("`(pkg/[a-z0-9/]+)`").FindAllStringSubmatch(first, -1) {
			named = append(named, m[1])
		}
	}
	slices.Sort(listed)
	slices.Sort(named)
	if !slices.Equal(listed, named) {
		t.Fatalf("README package table names %v\ngo list ./pkg/... lists %v", named, listed)
	}
}

// TestLibraryPackages: every package under pkg/ is a library as the issue
// of the layout defined it: a doc.go, at least one runnable Example, and no
// import of testing, of the flag parsing or of anything under internal/.
func TestLibraryPackages(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}|{{join .Imports \" \"}}|{{join .XTestGoFiles \" \"}} {{join .TestGoFiles \" \"}}", "./pkg/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, rest, _ := strings.Cut(line, "|")
		imports, tests, _ := strings.Cut(rest, "|")
		name, _ := filepath.Rel(root, dir)
		if _, err := os.Stat(filepath.Join(dir, "doc.go")); err != nil {
			t.Errorf("%s has no doc.go", name)
		}
		for _, imp := range strings.Fields(imports) {
			if imp == "testing" || strings.Contains(imp, "/ory-ext-authz/internal/") {
				t.Errorf("%s imports %s", name, imp)
			}
		}
		example := false
		for _, f := range strings.Fields(tests) {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if regexp.MustCompile(`(?m)^func Example\w*\(\) \{`).Match(b) && strings.Contains(string(b), "// Output:") {
				example = true
			}
		}
		if !example {
			t.Errorf("%s has no runnable Example (an Example function with // Output:)", name)
		}
	}
}
