package routes

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseExample(t *testing.T) {
	tab, err := ParseFile("../../docs/routes.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range tab.Rules() {
		names = append(names, r.Name())
	}
	if got := strings.Join(names, ","); got != "public,login-page,admin,orders-write,partner-api" {
		t.Errorf("rules = %s", got)
	}
	if got := strings.Join(tab.HeaderNames(), ","); got != "x-user-email,x-user-id" {
		t.Errorf("HeaderNames = %s", got)
	}
	admin := tab.Rules()[2]
	if admin.Line() != 22 || admin.Column() != 5 || admin.Index() != 2 || admin.String() != "rule 2 (admin)" {
		t.Errorf("admin rule at %d:%d index %d %s", admin.Line(), admin.Column(), admin.Index(), admin)
	}
}

// TestParseErrors: every problem is reported, each with the line and
// column of the node that has it.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string // each a whole line of the error
	}{
		{"empty", "", []string{"empty file: want a mapping with rules"}},
		{"comments only", "# nothing\n", []string{"empty file: want a mapping with rules"}},
		{"not a mapping", "- a\n", []string{"1:1: want a mapping, not a list"}},
		{"no rules", "{}\n", []string{"1:1: missing field rules"}},
		{"rules null", "rules:\n", []string{"1:7: rules: want a list of rules, not null"}},
		{"unknown top-level field", "rules: []\nroutes: []\n", []string{`2:1: unknown field "routes" (want rules)`}},
		{"syntax error", "rules: [\n", []string{"1: did not find expected node content"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"2:1: a second YAML document: want one"}},
		{"duplicate field", "rules: []\nrules: []\n", []string{"2:1: rules: duplicate field"}},
		{"unknown rule field", "rules:\n  - name: a\n    tokenise_as: x\n", []string{
			`3:5: rules[0]: unknown field "tokenise_as" (want authorize, headers, match, name, on_missing, pass_client_authorization, require_aal, tokenize_as)`}},
		{"unknown match field", "rules:\n  - match: {pth: {prefix: /}}\n", []string{
			`2:13: rules[0].match: unknown field "pth" (want host, methods, path)`}},
		{"bad values", `rules:
  - name: "bad name!"
    on_missing: maybe
    require_aal: aal3
    tokenize_as: ""
    pass_client_authorization: "yes"
`, []string{
			`2:11: rules[0].name: name "bad name!": want 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit`,
			`3:17: rules[0].on_missing: unknown mode "maybe" (want deny, allow or redirect)`,
			`4:18: rules[0].require_aal: unknown assurance level "aal3" (want aal1 or aal2)`,
			`5:18: rules[0].tokenize_as: want a template name of 1 to 256 bytes`,
			`6:32: rules[0].pass_client_authorization: want true or false, not a string`,
		}},
		{"wrong types", "rules:\n  - name: 3\n    on_missing: [deny]\n    match: {methods: GET}\n", []string{
			"2:11: rules[0].name: want a string, not a number",
			"3:17: rules[0].on_missing: want a string, not a list",
			"4:22: rules[0].match.methods: want a list of methods, not a string",
		}},
		{"path kinds", `rules:
  - match: {path: {prefix: /a/, exact: /a}}
  - match: {path: {}}
  - match: {path: {prefix: a/}}
  - match: {path: {exact: /a/../b}}
  - match: {path: {prefix: "/a?b"}}
  - match: {path: {regex: "/a/(b"}}
  - match: {path: {exact: /%41}}
`, []string{
			"2:19: rules[0].match.path: want exactly one of exact, prefix, regex (have 2)",
			"3:19: rules[1].match.path: want exactly one of exact, prefix, regex (have 0)",
			`4:28: rules[2].match.path.prefix: path "a/": want a path starting with /`,
			`5:27: rules[3].match.path.exact: path "/a/../b" is not in the normal form requests are matched in ("/b"): write that`,
			`6:28: rules[4].match.path.prefix: path "/a?b": the query is not matched (no ? or #)`,
			"7:27: rules[5].match.path.regex: regex \"/a/(b\": error parsing regexp: missing closing ): `/a/(b`",
			`8:27: rules[6].match.path.exact: path "/%41" is not in the normal form requests are matched in ("/A"): write that`,
		}},
		{"hosts", `rules:
  - match: {host: "example.com:443"}
  - match: {host: "a.*.example.com"}
  - match: {host: "example.com."}
  - match: {host: "-a.example.com"}
  - match: {host: "*"}
`, []string{
			`2:19: rules[0].match.host: host "example.com:443": no port (the request's port is not matched)`,
			`3:19: rules[1].match.host: host "a.*.example.com": label "*": want letters, digits and inner hyphens only (a '*' only as the whole first label)`,
			`4:19: rules[2].match.host: host "example.com.": label "": want 1 to 63 characters (no empty label, no trailing dot, no port)`,
			`5:19: rules[3].match.host: host "-a.example.com": label "-a": want letters, digits and inner hyphens only (a '*' only as the whole first label)`,
			`6:19: rules[4].match.host: host "*": label "*": want letters, digits and inner hyphens only (a '*' only as the whole first label)`,
		}},
		{"methods", "rules:\n  - match: {methods: []}\n  - match: {methods: [GET, get, \"BAD METHOD\"]}\n", []string{
			"2:22: rules[0].match.methods: want at least one method (leave methods out to match every method)",
			"3:28: rules[1].match.methods[1]: method GET listed twice",
			`3:33: rules[1].match.methods[2]: method "BAD METHOD": want an HTTP method (GET, POST, ...)`,
		}},
		{"headers", `rules:
  - headers:
      authorization: sub
      Cookie: sub
      x-user-id: sub
      x-user-id: email
      ":path": sub
      te: sub
      x-envoy-original-path: sub
      x-ok: ""
      x-list: [sub]
  - headers: {}
`, []string{
			`3:7: rules[0].headers.authorization: header "authorization" cannot be set: it is the JWT's own header`,
			`4:7: rules[0].headers.Cookie: header "Cookie": want a lower-case header name (letters, digits and !#$%&'*+-.^_` + "`" + `|~)`,
			"6:7: rules[0].headers.x-user-id: duplicate header",
			`7:7: rules[0].headers.:path: header ":path": a pseudo-header cannot be set`,
			`8:7: rules[0].headers.te: header "te" cannot be set: it is hop-by-hop`,
			`9:7: rules[0].headers.x-envoy-original-path: header "x-envoy-original-path" cannot be set: Envoy reads x-envoy-* headers as instructions`,
			"10:13: rules[0].headers.x-ok: want a claim name of 1 to 256 bytes",
			"11:15: rules[0].headers.x-list: want a string, not a list",
			"12:14: rules[1].headers: want at least one header (leave headers out to set none)",
		}},
		{"duplicate names", "rules:\n  - name: a\n  - name: a\n", []string{`3:5: rules[1].name: name "a" is also the name of rule 0`}},
		{"aliases", "rules:\n  - &r {name: a}\n  - *r\n", []string{
			"2:5: YAML anchors are not supported",
			"3:5: YAML aliases are not supported: write the value out",
		}},
		{"authorize", `rules:
  - authorize: claims.sub
  - authorize: session.aaal == "aal2"
  - authorize: '"a" in claims.roles && request.nope'
  - authorize: |
      claims.sub ==
        session.identity
  - authorize: ""
  - authorize: claims.a.exists(x, claims.b.exists(y, x == y))
  - authorize: 1 +
`, []string{
			"2:16: rules[0].authorize: the expression is of type dyn, want bool (compare a claim: claims.admin == true)",
			"3:23: rules[1].authorize: undefined field 'aaal'",
			"4:47: rules[2].authorize: undefined field 'nope'",
			"5:16: rules[3].authorize: undefined field 'identity'",
			"8:16: rules[4].authorize: empty expression",
			"9:16: rules[5].authorize: estimated worst-case cost 28174985920515 exceeds the limit 1000000 (nested loops over claims or headers?)",
			"10:19: rules[6].authorize: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse = %v, want Errors", err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseFileNamesTheFile(t *testing.T) {
	path := t.TempDir() + "/routes.yaml"
	if err := os.WriteFile(path, []byte("rules:\n  - nme: a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	if want := path + `:2:5: rules[0]: unknown field "nme"`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("ParseFile = %v, want %s...", err, want)
	}
	if _, err := ParseFile(path + ".missing"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
