package routes

import (
	"fmt"
	"regexp"
	"strings"
)

// Table is a compiled routes file: its rules in file order, the first that
// matches a request wins. A Table never changes; a reload builds a new
// one. The nil *Table has no rules.
type Table struct {
	rules       []*Rule
	headerNames []string
	// byHost lists, per exact host, the indexes of the rules for that host;
	// anyHost the indexes of the others (no host, a wildcard). Both are in
	// file order, so find tries only rules that can match the request's
	// host, still first match first.
	byHost  map[string][]int
	anyHost []int
}

// indexHosts builds byHost and anyHost.
func (t *Table) indexHosts() {
	t.byHost = map[string][]int{}
	t.anyHost = nil
	for i, r := range t.rules {
		if r.host != nil && !r.host.wildcard {
			t.byHost[r.host.name] = append(t.byHost[r.host.name], i)
			continue
		}
		t.anyHost = append(t.anyHost, i)
	}
}

// Rule is one rule of a table.
type Rule struct {
	index        int
	name         string
	line, column int

	host    *hostMatcher
	methods []string
	path    pathMatcher

	tokenizeAs string
	onMissing  OnMissing
	requireAAL AAL
	passClient *bool
	headers    []HeaderClaim
	authorize  *program

	ambiguous bool
}

type pathKind uint8

const (
	anyPath pathKind = iota
	exactPath
	prefixPath
	regexPath
)

type pathMatcher struct {
	kind  pathKind
	value string
	re    *regexp.Regexp
}

func (m *pathMatcher) match(p string) bool {
	switch m.kind {
	case exactPath:
		return p == m.value
	case prefixPath:
		return strings.HasPrefix(p, m.value)
	case regexPath:
		return m.re.MatchString(p)
	}
	return true
}

// ambiguousRule is what Match returns for a path whose readings match
// different rules, or that Envoy would refuse: nothing of the table
// applies to it with certainty, so nothing lets it through. Its settings
// deny a request without a session and its authorize denies every other.
var ambiguousRule = &Rule{index: -1, name: "ambiguous-path", onMissing: OnMissingDeny, ambiguous: true}

// Match finds the rule of a request: method as sent, host as in Envoy's
// host attribute (:authority; port and a trailing dot ignored), path as in
// Envoy's path attribute (with its query, which is ignored). ok is false
// when no rule matches: the defaults apply.
//
// The path is matched in Envoy's normal form (NormalizePath), and also in
// every other reading an upstream may give it (see docs/routes.md: a path
// not in normal form, escaped slashes, ';' parameters). When the readings
// do not all match the same rule, or the path is one Envoy refuses, Match
// returns the rule for which Ambiguous is true, never a rule of the table.
func (t *Table) Match(method, host, path string) (*Rule, bool) {
	if t == nil || len(t.rules) == 0 {
		return nil, false
	}
	var buf [maxReadings]string
	rs, valid := readings(path, &buf)
	if !valid {
		return ambiguousRule, true
	}
	h := requestHost(host)
	first := t.find(method, h, rs[0])
	for _, r := range rs[1:] {
		if t.find(method, h, r) != first {
			return ambiguousRule, true
		}
	}
	if first < 0 {
		return nil, false
	}
	return t.rules[first], true
}

// Reading is one reading of a path and the rule it matches (nil: none).
type Reading struct {
	Path string
	Rule *Rule
}

// Explain is Match with its work shown: the readings of the path (the
// first is Envoy's normal form) and the rule each matches; for the CLI.
func (t *Table) Explain(method, host, path string) (rule *Rule, ok bool, rs []Reading) {
	var buf [maxReadings]string
	paths, _ := readings(path, &buf)
	h := requestHost(host)
	for _, p := range paths {
		r := Reading{Path: p}
		if i := t.find(method, h, p); i >= 0 {
			r.Rule = t.rules[i]
		}
		rs = append(rs, r)
	}
	rule, ok = t.Match(method, host, path)
	return rule, ok, rs
}

// find returns the index of the first rule that matches, or -1: the
// rules for the request's exact host and those for any host, merged in
// file order.
func (t *Table) find(method, host, path string) int {
	if t == nil {
		return -1
	}
	if len(t.byHost) == 0 {
		// No rule has an exact host (or a Table not built by Parse).
		for i, r := range t.rules {
			if r.matches(method, host, path) {
				return i
			}
		}
		return -1
	}
	exact, other := t.byHost[host], t.anyHost
	if len(exact) == 0 {
		for _, i := range other {
			if t.rules[i].matches(method, host, path) {
				return i
			}
		}
		return -1
	}
	for len(exact) > 0 || len(other) > 0 {
		var i int
		if len(other) == 0 || len(exact) > 0 && exact[0] < other[0] {
			i, exact = exact[0], exact[1:]
		} else {
			i, other = other[0], other[1:]
		}
		if t.rules[i].matches(method, host, path) {
			return i
		}
	}
	return -1
}

func (r *Rule) matches(method, host, path string) bool {
	if r.host != nil && !r.host.match(host) {
		return false
	}
	if len(r.methods) > 0 {
		found := false
		for _, m := range r.methods {
			if strings.EqualFold(m, method) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return r.path.match(path)
}

// Rules are the table's rules in file order; do not modify the slice.
func (t *Table) Rules() []*Rule {
	if t == nil {
		return nil
	}
	return t.rules
}

// HeaderNames lists, sorted, every header name any rule can set. The
// Check path removes each of them from every request that does not get it
// set by its rule, so that a client cannot send one itself. Do not modify
// the slice.
func (t *Table) HeaderNames() []string {
	if t == nil {
		return nil
	}
	return t.headerNames
}

// Index is the rule's position in the file, from 0; -1 for the ambiguous
// path rule.
func (r *Rule) Index() int { return r.index }

// Name is the rule's name in the file; may be empty.
func (r *Rule) Name() string { return r.name }

// Line is the line of the file where the rule starts.
func (r *Rule) Line() int { return r.line }

// Column is the column of the file where the rule starts.
func (r *Rule) Column() int { return r.column }

// Ambiguous tells the rule Match returns for a path it cannot match with
// certainty: the Check path is to refuse the request.
func (r *Rule) Ambiguous() bool { return r != nil && r.ambiguous }

// String names the rule: "rule 2 (admin)", "rule 0", "ambiguous path".
func (r *Rule) String() string {
	switch {
	case r == nil:
		return "no rule (defaults)"
	case r.ambiguous:
		return "ambiguous path"
	case r.name != "":
		return fmt.Sprintf("rule %d (%s)", r.index, r.name)
	}
	return fmt.Sprintf("rule %d", r.index)
}

// Expression is the rule's `authorize` expression; empty without one.
func (r *Rule) Expression() string {
	if r == nil || r.authorize == nil {
		return ""
	}
	return r.authorize.source
}

// Settings are the rule's settings laid over defaults (the caller's
// flags): each setting the rule has replaces the default's. The nil rule
// (no match) gives the defaults; the ambiguous path rule denies a request
// without a session whatever the defaults say.
func (r *Rule) Settings(defaults Settings) Settings {
	s := defaults
	if r == nil {
		return s
	}
	if r.tokenizeAs != "" {
		s.TokenizeAs = r.tokenizeAs
	}
	if r.onMissing != "" {
		s.OnMissing = r.onMissing
	}
	if r.requireAAL != "" {
		s.RequireAAL = r.requireAAL
	}
	if r.passClient != nil {
		s.PassClientAuthorization = *r.passClient
	}
	if r.headers != nil {
		s.Headers = r.headers
	}
	return s
}

// Authorize runs the rule's `authorize` expression over v: true lets the
// request through. A rule without one authorizes every request; the
// ambiguous path rule none. An error (the cost limit reached, a claim the
// expression reads that is missing or of another type) comes with false:
// the caller denies.
func (r *Rule) Authorize(v Vars) (bool, error) {
	switch {
	case r == nil:
		return true, nil
	case r.ambiguous:
		return false, nil
	case r.authorize == nil:
		return true, nil
	}
	return r.authorize.eval(&v)
}

// AuthorizeReadsRequest tells whether the rule's `authorize` expression
// reads `request`. One that does not has the same result for every request
// of a JWT (its claims and session), so a caller may keep the result with
// the JWT instead of evaluating it on every request.
func (r *Rule) AuthorizeReadsRequest() bool {
	return r != nil && r.authorize != nil && r.authorize.readsRequest
}

// SettingsSet names, in the file's spelling and the table's field order,
// the settings the rule sets (tokenize_as, on_missing, require_aal,
// authorize, headers, pass_client_authorization): a server that enforces
// only some of them refuses a table whose rules set the others.
func (r *Rule) SettingsSet() []string {
	if r == nil {
		return nil
	}
	var set []string
	add := func(name string, ok bool) {
		if ok {
			set = append(set, name)
		}
	}
	add("tokenize_as", r.tokenizeAs != "")
	add("on_missing", r.onMissing != "")
	add("require_aal", r.requireAAL != "")
	add("authorize", r.authorize != nil)
	add("headers", r.headers != nil)
	add("pass_client_authorization", r.passClient != nil)
	return set
}
