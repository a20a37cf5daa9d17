// Package routescli is `ory-ext-authz routes`: it checks a routes file
// (pkg/routes) the way the server will load it, and shows which rule a
// request gets and with which settings, before the file is deployed.
package routescli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ory-ext-authz/ory-ext-authz/internal/cli"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

const command = "ory-ext-authz routes"

// synopsis is what a missing or unknown subcommand shows.
const synopsis = `Usage:
  ory-ext-authz routes check [--request 'METHOD URL']... FILE
`

const usage = synopsis + `
Works with a routes file (docs/routes.md): per-route settings matched on
host, path and methods. The server does not read one yet (a follow-up wires
it into the Check path); check it now.

  check FILE   validate FILE as the server will (every problem with its
               line and column); with --request, print the rule each request
               matches and its effective settings. FILE - reads stdin.

Run 'ory-ext-authz routes check --help' for its flags.
`

const checkUsage = `Usage: ory-ext-authz routes check [flags] FILE

Validates the routes file FILE (- for stdin): unknown fields, values of the
wrong type, bad values and authorize expressions that do not compile are
reported as FILE:LINE:COLUMN: problem. With --request (repeatable), prints
for each request the path as it is matched (Envoy's normal form), the rule
it gets (first match wins; none means the defaults) and the effective
settings, defaults from the flags below as serve's would give them.

Exit codes:
  0  the file is valid
  1  the file has problems (each printed to stderr)
  2  bad flags, or FILE cannot be read

Example:
  ory-ext-authz routes check routes.yaml --request 'GET https://app.example.com/admin/users'

Flags (before or after FILE; one or two dashes):
`

// Run runs `ory-ext-authz routes <check> ...`; args are the arguments
// after "routes". It follows internal/cli's convention and returns the
// exit code: 0 valid, 1 the file has problems, 2 a usage error or an
// unreadable file. -h prints the help to stdout and returns 0.
func Run(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Subcommands{
		Command: command, Noun: "subcommand", Synopsis: synopsis,
		Help: func(w io.Writer) error { return cli.Help(w, usage, nil) },
		Run: map[string]func([]string) error{
			"check": func(args []string) error { return check(args, stdin, stdout) },
		},
	}.Dispatch(args, stdout, stderr)
}

// requests is the repeatable --request flag.
type requests []request

type request struct {
	text               string
	method, host, path string
}

func (r *requests) String() string { return "" }

func (r *requests) Set(s string) error {
	req, err := parseRequest(s)
	if err != nil {
		return err
	}
	*r = append(*r, req)
	return nil
}

// parseRequest reads "METHOD URL", the URL absolute (http(s)://host/path)
// or a path; the path is kept exactly as written, so that "..", "//" and
// escapes reach the matcher as a client would send them.
func parseRequest(s string) (request, error) {
	method, target, ok := strings.Cut(strings.TrimSpace(s), " ")
	target = strings.TrimSpace(target)
	if !ok || method == "" || target == "" {
		return request{}, fmt.Errorf("want 'METHOD URL' (GET https://app.example.com/path or GET /path), not %q", s)
	}
	r := request{text: method + " " + target, method: method, path: target}
	for _, scheme := range []string{"https://", "http://"} {
		rest, found := strings.CutPrefix(target, scheme)
		if !found {
			continue
		}
		i := strings.IndexAny(rest, "/?")
		if i < 0 {
			r.host, r.path = rest, "/"
		} else {
			r.host, r.path = rest[:i], rest[i:]
		}
		if strings.HasPrefix(r.path, "?") {
			r.path = "/" + r.path
		}
		if r.host == "" {
			return request{}, fmt.Errorf("%q: no host in the URL", s)
		}
		return r, nil
	}
	if !strings.HasPrefix(target, "/") {
		return request{}, fmt.Errorf("%q: want an http:// or https:// URL or a path starting with /", s)
	}
	return r, nil
}

type checkOptions struct {
	requests  requests
	defaults  routes.Settings
	onMissing string
}

func newFlagSet(o *checkOptions) *flag.FlagSet {
	fs := cli.NewFlagSet(command + " check")
	fs.Var(&o.requests, "request", "`'METHOD URL'` to match, e.g. 'GET https://app.example.com/admin/users?page=2' or 'GET /path' (repeatable)")
	fs.StringVar(&o.defaults.TokenizeAs, "tokenize-as", "", "the default `template`, serve's --tokenize-as (shown as the default when empty)")
	fs.StringVar(&o.onMissing, "on-missing", string(routes.OnMissingDeny), "the default `mode`, serve's --on-missing: deny, allow or redirect")
	fs.BoolVar(&o.defaults.PassClientAuthorization, "pass-client-authorization", false, "the default of serve's --pass-client-authorization")
	return fs
}

// parseCheck parses flags given before and after FILE.
func parseCheck(args []string, stdout io.Writer) (*checkOptions, string, error) {
	o := &checkOptions{}
	fs := newFlagSet(o)
	if err := cli.Parse(fs, args, stdout, checkUsage); err != nil {
		return nil, "", err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, "", cli.Usagef("missing FILE")
	}
	file := rest[0]
	if err := cli.Parse(fs, rest[1:], stdout, checkUsage); err != nil {
		return nil, "", err
	}
	if fs.NArg() > 0 {
		return nil, "", cli.Usagef("one FILE only; unexpected %q", fs.Args())
	}
	m, err := routes.ParseOnMissing(o.onMissing)
	if err != nil {
		return nil, "", cli.Usagef("--on-missing: %w", err)
	}
	o.defaults.OnMissing = m
	if o.defaults.TokenizeAs == "" {
		o.defaults.TokenizeAs = "(--tokenize-as)"
	}
	return o, file, nil
}

func check(args []string, stdin io.Reader, stdout io.Writer) error {
	o, file, err := parseCheck(args, stdout)
	if err != nil {
		return err
	}
	var table *routes.Table
	if file == "-" {
		file = "(stdin)"
		var data []byte
		data, err = io.ReadAll(io.LimitReader(stdin, routes.MaxFileBytes+1))
		if err == nil {
			table, err = routes.Parse(data)
		}
	} else {
		table, err = routes.ParseFile(file)
	}
	var errs routes.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			e.File = file
		}
		return cli.Refused(fmt.Errorf("%s: %s\n%w", file, plural(len(errs), "problem"), errs))
	}
	if err != nil {
		return err
	}
	w := &printer{w: stdout}
	w.printf("%s: valid, %s", file, plural(len(table.Rules()), "rule"))
	if names := table.HeaderNames(); len(names) > 0 {
		w.printf("; identity headers: %s", strings.Join(names, ", "))
	}
	w.printf("\n")
	for _, req := range o.requests {
		w.printf("\n")
		printMatch(w, table, req, o.defaults)
	}
	return w.err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// printer keeps the first write error, so that the report is written in
// one go and checked once.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// printMatch prints which rule req gets and its effective settings.
func printMatch(w *printer, table *routes.Table, req request, defaults routes.Settings) {
	rule, _, readings := table.Explain(req.method, req.host, req.path)
	w.printf("%s\n", req.text)
	if normal, ok := routes.NormalizePath(req.path); ok {
		w.printf("  path:  %s\n", normal)
	} else {
		w.printf("  path:  refused (Envoy answers 400: a NUL byte)\n")
	}
	switch {
	case rule == nil:
		w.printf("  match: none: the defaults apply\n")
	case rule.Ambiguous():
		w.printf("  match: none: the path is ambiguous, the Check path will refuse it; its readings:\n")
		for _, r := range readings {
			w.printf("           %-30s %s\n", r.Path, r.Rule)
		}
	default:
		w.printf("  match: %s, line %d\n", rule, rule.Line())
	}
	if rule.Ambiguous() {
		return
	}
	s := rule.Settings(defaults)
	// A setting is the rule's own when it does not follow the defaults.
	other := rule.Settings(routes.Settings{TokenizeAs: "\x00", OnMissing: "\x00", RequireAAL: "\x00",
		PassClientAuthorization: !defaults.PassClientAuthorization, Headers: []routes.HeaderClaim{}})
	from := func(own bool) string {
		if own {
			return ""
		}
		return " (default)"
	}
	w.printf("  tokenize_as:               %s%s\n", s.TokenizeAs, from(s.TokenizeAs == other.TokenizeAs))
	w.printf("  on_missing:                %s%s\n", s.OnMissing, from(s.OnMissing == other.OnMissing))
	aal := string(s.RequireAAL)
	if aal == "" {
		aal = "any"
	}
	w.printf("  require_aal:               %s%s\n", aal, from(s.RequireAAL == other.RequireAAL))
	if expr := rule.Expression(); expr != "" {
		w.printf("  authorize:                 %s\n", strings.Join(strings.Fields(expr), " "))
	} else {
		w.printf("  authorize:                 none\n")
	}
	if len(s.Headers) == 0 {
		w.printf("  headers:                   none\n")
	} else {
		hs := make([]string, len(s.Headers))
		for i, h := range s.Headers {
			hs[i] = h.Header + " <- claim " + h.Claim
		}
		w.printf("  headers:                   %s\n", strings.Join(hs, ", "))
	}
	w.printf("  pass_client_authorization: %v%s\n", s.PassClientAuthorization, from(s.PassClientAuthorization == other.PassClientAuthorization))
}
