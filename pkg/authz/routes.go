package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// RouteTable is the source of the route table (--routes): a
// *routes.Watcher, whose Table changes on a reload. Table may return nil
// (no rules: the defaults apply to every request).
type RouteTable interface {
	Table() *routes.Table
}

// errAmbiguousPath: the route table cannot match the request's path with
// certainty (routes' ambiguous path rule). The request is denied as
// invalid, never allowed, and Ory is not asked.
var errAmbiguousPath = errors.New("the request path is ambiguous: its readings match different routes, or Envoy would refuse it")

// enforcedSettings are the route settings the Check path enforces; a
// table whose rules set any other is refused (CheckTable), so that a
// security setting is never silently ignored.
var enforcedSettings = []string{"tokenize_as", "on_missing", "pass_client_authorization"}

// CheckTable tells why the Check path cannot serve t, nil if it can: a
// rule sets require_aal, authorize or headers, which are not enforced yet,
// or on_missing: redirect without a login URL (hasLoginURL false). Serve
// refuses such a table at start and on every reload (the previous table
// stays); New refuses Options.Routes whose current table it refuses.
func CheckTable(t *routes.Table, hasLoginURL bool) error {
	var problems []string
	for _, r := range t.Rules() {
		var unenforced []string
		for _, name := range r.SettingsSet() {
			if !slices.Contains(enforcedSettings, name) {
				unenforced = append(unenforced, name)
			}
		}
		where := fmt.Sprintf("%d:%d: %s", r.Line(), r.Column(), r)
		if len(unenforced) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %s not enforced yet (only %s are): remove it, the server refuses to ignore a security setting",
				where, strings.Join(unenforced, ", "), strings.Join(enforcedSettings, ", ")))
		}
		if !hasLoginURL && r.Settings(routes.Settings{}).OnMissing == routes.OnMissingRedirect {
			problems = append(problems, where+": on_missing: redirect needs --login-url")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// settings are what applies to one request: the server's defaults, laid
// over by the route table's rule, then by the context_extensions.
type settings struct {
	template   string
	mode       OnMissing
	passClient bool
}

// routeSettings finds the settings of r: the defaults (flags) < the
// matched rule of the route table < context_extensions, field by field.
// An ambiguous path is errAmbiguousPath; bad context_extensions a
// routeError.
func (s *Server) routeSettings(r request) (settings, error) {
	st := settings{template: s.template, mode: s.onMissing, passClient: s.passClientAuth}
	if s.routes != nil {
		if t := s.routes.Table(); t != nil {
			rule, ok := t.Match(r.http.GetMethod(), r.http.GetHost(), r.http.GetPath())
			if rule.Ambiguous() {
				return settings{template: s.template, mode: OnMissingDeny}, errAmbiguousPath
			}
			if ok {
				rs := rule.Settings(routes.Settings{TokenizeAs: st.template, OnMissing: routes.OnMissing(st.mode), PassClientAuthorization: st.passClient})
				st = settings{template: rs.TokenizeAs, mode: OnMissing(rs.OnMissing), passClient: rs.PassClientAuthorization}
			}
		}
	}
	ext := r.contextExtensions
	if len(ext) == 0 {
		return st, nil
	}
	if m, ok := ext[ContextOnMissing]; ok {
		parsed, err := ParseOnMissing(m)
		if err != nil {
			return st, &routeError{fmt.Errorf("context extension %s: %w", ContextOnMissing, err)}
		}
		if parsed == OnMissingRedirect && !s.login.set() {
			return st, &routeError{fmt.Errorf("context extension %s=redirect needs --login-url", ContextOnMissing)}
		}
		st.mode = parsed
	}
	if t, ok := ext[ContextTokenizeAs]; ok {
		if t == "" || len(t) > maxTemplateLen {
			return st, &routeError{fmt.Errorf("context extension %s: empty or longer than %d bytes", ContextTokenizeAs, maxTemplateLen)}
		}
		st.template = t
	}
	return st, nil
}
