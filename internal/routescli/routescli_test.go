package routescli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/routescli"
)

const good = `rules:
  - name: public
    match: {path: {prefix: /public/}}
    on_missing: allow
  - name: admin
    match: {host: "*.example.com", path: {prefix: /admin/}}
    tokenize_as: admin
    require_aal: aal2
    authorize: '"admin" in claims.roles'
    headers: {x-user-id: sub}
`

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := routescli.Run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	goodFile := filepath.Join(dir, "good.yaml")
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(goodFile, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badFile, []byte("rules:\n  - nme: a\n    on_missing: open\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout []string // each must appear
		stderr string   // exact
	}{
		{name: "valid", args: []string{"check", goodFile}, code: 0,
			stdout: []string{goodFile + ": valid, 2 rules; identity headers: x-user-id\n"}},
		{name: "problems", args: []string{"check", badFile}, code: 1,
			stderr: "ory-ext-authz routes check: " + badFile + ": 2 problems\n" +
				badFile + `:2:5: rules[0]: unknown field "nme" (want authorize, headers, match, name, on_missing, pass_client_authorization, require_aal, tokenize_as)` + "\n" +
				badFile + `:3:17: rules[0].on_missing: unknown mode "open" (want deny, allow or redirect)` + "\n"},
		{name: "stdin", args: []string{"check", "-"}, stdin: "rules: [{on_missing: maybe}]", code: 1,
			stderr: "ory-ext-authz routes check: (stdin): 1 problem\n(stdin):1:22: rules[0].on_missing: unknown mode \"maybe\" (want deny, allow or redirect)\n"},
		{name: "request matched", args: []string{"check", goodFile, "--request", "GET https://app.example.com:8443/admin/users?page=2", "--tokenize-as", "mesh"}, code: 0,
			stdout: []string{
				"GET https://app.example.com:8443/admin/users?page=2\n  path:  /admin/users\n  match: rule 1 (admin), line 5\n",
				"  tokenize_as:               admin\n",
				"  on_missing:                deny (default)\n",
				"  require_aal:               aal2\n",
				"  authorize:                 \"admin\" in claims.roles\n",
				"  headers:                   x-user-id <- claim sub\n",
				"  pass_client_authorization: false (default)\n",
			}},
		{name: "flags before the file, a path only", args: []string{"check", "--on-missing", "allow", "--pass-client-authorization", "--request", "POST /orders", goodFile}, code: 0,
			stdout: []string{"POST /orders\n  path:  /orders\n  match: none: the defaults apply\n  tokenize_as:               (--tokenize-as) (default)\n  on_missing:                allow (default)\n",
				"  pass_client_authorization: true (default)\n"}},
		{name: "ambiguous", args: []string{"check", goodFile, "--request", "GET https://a.example.com/public/..;/admin/x"}, code: 0,
			stdout: []string{"  path:  /public/..;/admin/x\n  match: none: the path is ambiguous, the Check path will refuse it; its readings:\n",
				"/public/..;/admin/x            rule 0 (public)\n", "/admin/x                       rule 1 (admin)\n"}},
		{name: "missing file", args: []string{"check", filepath.Join(dir, "none.yaml")}, code: 2,
			stderr: "ory-ext-authz routes check: routes file: open " + filepath.Join(dir, "none.yaml") + ": no such file or directory\n"},
		{name: "no file", args: []string{"check"}, code: 2,
			stderr: "ory-ext-authz routes check: missing FILE\nRun 'ory-ext-authz routes check --help' for usage.\n"},
		{name: "two files", args: []string{"check", goodFile, badFile}, code: 2,
			stderr: "ory-ext-authz routes check: one FILE only; unexpected [\"" + badFile + "\"]\nRun 'ory-ext-authz routes check --help' for usage.\n"},
		{name: "bad request", args: []string{"check", "--request", "GET", goodFile}, code: 2,
			stderr: "ory-ext-authz routes check: invalid value \"GET\" for flag -request: want 'METHOD URL' (GET https://app.example.com/path or GET /path), not \"GET\"\nRun 'ory-ext-authz routes check --help' for usage.\n"},
		{name: "bad mode", args: []string{"check", "--on-missing", "open", goodFile}, code: 2,
			stderr: "ory-ext-authz routes check: --on-missing: unknown mode \"open\" (want deny, allow or redirect)\nRun 'ory-ext-authz routes check --help' for usage.\n"},
		{name: "unknown subcommand", args: []string{"lint"}, code: 2,
			stderr: "ory-ext-authz routes: unknown subcommand \"lint\"\nUsage:\n  ory-ext-authz routes check [--request 'METHOD URL']... FILE\nRun 'ory-ext-authz routes --help' for usage.\n"},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"Usage:\n  ory-ext-authz routes check"}},
		{name: "check help", args: []string{"check", "-h"}, code: 0, stdout: []string{"Usage: ory-ext-authz routes check [flags] FILE", "-request 'METHOD URL'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.stdin, tc.args...)
			if code != tc.code || stderr != tc.stderr {
				t.Errorf("exit %d, want %d\nstderr:\n%s\nwant:\n%s", code, tc.code, stderr, tc.stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if len(tc.stdout) == 0 && stdout != "" {
				t.Errorf("stdout: %s", stdout)
			}
		})
	}
}

// TestCheckShippedExample: the example routes file passes the CLI.
func TestCheckShippedExample(t *testing.T) {
	code, stdout, stderr := run(t, "", "check", "../../docs/routes.example.yaml", "--request", "GET https://app.example.com/public/logo.png")
	if code != 0 || !strings.Contains(stdout, "match: rule 0 (public)") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
