package authz

import (
	"errors"
	"fmt"
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

// CheckTable tells why the Check path cannot serve t, nil if it can: a
// rule sets on_missing: redirect without a login URL (hasLoginURL false).
// Serve refuses such a table at start and on every reload (the previous
// table stays); New refuses Options.Routes whose current table it refuses.
func CheckTable(t *routes.Table, hasLoginURL bool) error {
	var problems []string
	for _, r := range t.Rules() {
		if !hasLoginURL && r.Settings(routes.Settings{}).OnMissing == routes.OnMissingRedirect {
			problems = append(problems, fmt.Sprintf("%d:%d: %s: on_missing: redirect needs --login-url", r.Line(), r.Column(), r))
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
	// requireAAL is the rule's require_aal; empty: any session.
	requireAAL routes.AAL
	// rule is the matched rule (nil: none), plan the table's plan.
	rule *routes.Rule
	plan *plan
}

// routeSettings finds the settings of r: the defaults (flags) < the
// matched rule of the route table < context_extensions, field by field.
// An ambiguous path is errAmbiguousPath; bad context_extensions a
// routeError.
func (s *Server) routeSettings(r request) (settings, error) {
	p := s.currentPlan()
	st := settings{template: s.template, mode: s.onMissing, passClient: s.passClientAuth, plan: p}
	if p.table != nil && !r.noRoute {
		rule, ok := p.table.Match(r.http.GetMethod(), r.http.GetHost(), r.http.GetPath())
		if rule.Ambiguous() {
			return settings{template: s.template, mode: OnMissingDeny, plan: p}, errAmbiguousPath
		}
		if ok {
			rs := rule.Settings(routes.Settings{TokenizeAs: st.template, OnMissing: routes.OnMissing(st.mode), PassClientAuthorization: st.passClient})
			st = settings{template: rs.TokenizeAs, mode: OnMissing(rs.OnMissing), passClient: rs.PassClientAuthorization,
				requireAAL: rs.RequireAAL, rule: rule, plan: p}
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
