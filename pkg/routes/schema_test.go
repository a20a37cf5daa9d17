package routes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const schemaFile = "../../docs/routes.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("routes.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("routes.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// validateSchema reads a routes file as YAML and validates what it
// decodes to against the schema, as an editor's YAML plugin does.
func validateSchema(sch *jsonschema.Schema, file []byte) error {
	var v any
	if err := yaml.Unmarshal(file, &v); err != nil {
		return err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// shippedFiles are every routes file this repository ships: the example
// file and each YAML block of docs/routes.md that holds a table.
func shippedFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, name := range []string{"../../docs/routes.example.yaml", "../../docs/routes.md"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(name, ".md") {
			files[name] = b
			continue
		}
		blocks := strings.Split(string(b), "```yaml\n")
		for i, block := range blocks[1:] {
			block, _, _ = strings.Cut(block, "```")
			if strings.Contains(block, "\nrules:\n") || strings.HasPrefix(block, "rules:\n") {
				files[fmt.Sprintf("%s, YAML block %d", name, i+1)] = []byte(block)
			}
		}
	}
	if len(files) < 2 {
		t.Fatalf("found %d routes files, want the example and docs/routes.md's", len(files))
	}
	return files
}

func TestSchemaShippedFiles(t *testing.T) {
	sch := compileSchema(t)
	for name, b := range shippedFiles(t) {
		if err := validateSchema(sch, b); err != nil {
			t.Errorf("%s: the schema refuses it: %v", name, err)
		}
		if _, err := Parse(b); err != nil {
			t.Errorf("%s: the parser refuses it: %v", name, err)
		}
	}
}

// TestSchemaAgrees: the schema and the parser take and refuse the same
// files, except where the schema cannot see (listed in its description):
// those cases say so.
func TestSchemaAgrees(t *testing.T) {
	sch := compileSchema(t)
	for _, tc := range []struct {
		name, file string
		good       bool
		// parserOnly: the schema takes the file, the parser refuses it.
		parserOnly bool
	}{
		{name: "empty rules", file: "rules: []", good: true},
		{name: "every field", good: true, file: `rules:
  - name: all.fields_1
    match:
      host: "*.Example.com"
      path: {prefix: /a/}
      methods: [GET, post]
    tokenize_as: admin
    on_missing: redirect
    require_aal: aal2
    authorize: claims.sub == session.identity_id
    headers: {x-user-id: sub, "x-a!b": email}
    pass_client_authorization: false`},
		{name: "exact", file: "rules: [{match: {path: {exact: /login}}}]", good: true},
		{name: "regex", file: "rules: [{match: {path: {regex: '/a/[0-9]+'}}}]", good: true},
		{name: "host only", file: "rules: [{match: {host: 10.0.0.1}}]", good: true},
		{name: "no rules", file: "{}"},
		{name: "rules null", file: "rules:"},
		{name: "rules not a list", file: "rules: {a: 1}"},
		{name: "unknown top-level field", file: "rules: []\nversion: 1"},
		{name: "unknown rule field", file: "rules: [{nam: a}]"},
		{name: "unknown match field", file: "rules: [{match: {hosts: [a]}}]"},
		{name: "unknown path kind", file: "rules: [{match: {path: {suffix: .js}}}]"},
		{name: "two path kinds", file: "rules: [{match: {path: {exact: /a, prefix: /a}}}]"},
		{name: "no path kind", file: "rules: [{match: {path: {}}}]"},
		{name: "relative path", file: "rules: [{match: {path: {prefix: a/}}}]"},
		{name: "path with a query", file: "rules: [{match: {path: {exact: /a?b}}}]"},
		{name: "bad name", file: "rules: [{name: -a}]"},
		{name: "name a number", file: "rules: [{name: 1}]"},
		{name: "bad mode", file: "rules: [{on_missing: open}]"},
		{name: "mode a boolean", file: "rules: [{on_missing: true}]"},
		{name: "bad aal", file: "rules: [{require_aal: aal3}]"},
		{name: "empty template", file: `rules: [{tokenize_as: ""}]`},
		{name: "template with spaces around", file: `rules: [{tokenize_as: " a"}]`},
		{name: "empty expression", file: `rules: [{authorize: ""}]`},
		{name: "blank expression", file: `rules: [{authorize: "  "}]`},
		{name: "pass_client_authorization a string", file: `rules: [{pass_client_authorization: "true"}]`},
		{name: "wildcard inside", file: "rules: [{match: {host: a.*.com}}]"},
		{name: "host with a port", file: "rules: [{match: {host: a.com:80}}]"},
		{name: "host with a trailing dot", file: "rules: [{match: {host: a.com.}}]"},
		{name: "label with a leading hyphen", file: "rules: [{match: {host: -a.com}}]"},
		{name: "empty methods", file: "rules: [{match: {methods: []}}]"},
		{name: "method not a token", file: `rules: [{match: {methods: ["GE T"]}}]`},
		{name: "method twice", file: "rules: [{match: {methods: [GET, GET]}}]"},
		{name: "no headers", file: "rules: [{headers: {}}]"},
		{name: "upper-case header", file: "rules: [{headers: {X-User: sub}}]"},
		{name: "authorization header", file: "rules: [{headers: {authorization: sub}}]"},
		{name: "cookie header", file: "rules: [{headers: {cookie: sub}}]"},
		{name: "hop-by-hop header", file: "rules: [{headers: {connection: sub}}]"},
		{name: "pseudo-header", file: `rules: [{headers: {":authority": sub}}]`},
		{name: "x-envoy header", file: "rules: [{headers: {x-envoy-upstream-rq-timeout-ms: sub}}]"},
		{name: "empty claim", file: `rules: [{headers: {x-a: ""}}]`},
		{name: "claim a list", file: "rules: [{headers: {x-a: [sub]}}]"},
		{name: "duplicate rule field", file: "rules: [{name: a, name: b}]"},
		// What only the parser can tell.
		{name: "expression of the wrong type", file: "rules: [{authorize: claims.sub}]", parserOnly: true},
		{name: "undeclared variable", file: "rules: [{authorize: user.admin == true}]", parserOnly: true},
		{name: "expression over the cost limit", file: "rules: [{authorize: 'claims.a.exists(x, claims.b.exists(y, x == y))'}]", parserOnly: true},
		{name: "bad regex", file: "rules: [{match: {path: {regex: '/a/(b'}}}]", parserOnly: true},
		{name: "path not in normal form", file: "rules: [{match: {path: {prefix: /a/../b/}}}]", parserOnly: true},
		{name: "method twice in another case", file: "rules: [{match: {methods: [GET, get]}}]", parserOnly: true},
		{name: "duplicate rule names", file: "rules: [{name: a}, {name: a}]", parserOnly: true},
		{name: "alias", file: "rules:\n  - &r {name: a}\n  - *r", parserOnly: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serr := validateSchema(sch, []byte(tc.file))
			_, perr := Parse([]byte(tc.file))
			schemaGood, parserGood := tc.good || tc.parserOnly, tc.good
			if (serr == nil) != schemaGood {
				t.Errorf("schema: %v, want good=%v", serr, schemaGood)
			}
			if (perr == nil) != parserGood {
				t.Errorf("parser: %v, want good=%v", perr, parserGood)
			}
		})
	}
}

// TestSchemaLists: the schema's list of refused headers is the parser's.
func TestSchemaLists(t *testing.T) {
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	for h := range refusedHeaders {
		if !strings.Contains(string(b), `"`+h+`"`) {
			t.Errorf("the schema does not refuse header %q", h)
		}
	}
}
