package authz

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// plan is what the Check path derives once from a route table: the
// distinct identity header sets of its rules, the header names every other
// answer strips, and the OK answers without a session that strip them.
// It is rebuilt when the table changes (a reload) and shared read-only.
type plan struct {
	table *routes.Table
	// names are every identity header name any rule sets (sorted).
	names []string
	// sets are the distinct `headers` lists of the rules; ruleSet maps a
	// rule's index to its set, -1 for a rule without headers.
	sets    [][]routes.HeaderClaim
	ruleSet []int
	// verdictSlot maps a rule's index to the slot of extras.verdicts that
	// keeps its `authorize` result for a JWT (an expression that does not
	// read the request), -1 for the others; verdicts is the slot count.
	verdictSlot []int
	verdicts    int
	// claims: some rule has an `authorize` expression, so the decoded
	// claims are kept with each cached JWT.
	claims bool
	// extras: some rule needs what a JWT is decoded into at fill time
	// (identity headers or claims).
	extras bool
	// stripAll is the OK part of an answer that sets no identity header:
	// it removes every name (nil when the table sets none).
	stripAll *authv3.CheckResponse_OkResponse
	// okNoSession and okUntouched are okRemoveAuthorization and
	// okUntouched that also strip every identity header name.
	okNoSession, okUntouched *authv3.CheckResponse
}

// emptyPlan is the plan of no table: no identity headers, nothing kept.
var emptyPlan = &plan{okNoSession: okRemoveAuthorization, okUntouched: okUntouched}

// newPlan derives the plan of t.
func newPlan(t *routes.Table) *plan {
	if t == nil {
		return emptyPlan
	}
	p := &plan{table: t, names: t.HeaderNames(), ruleSet: make([]int, len(t.Rules())), verdictSlot: make([]int, len(t.Rules()))}
	seen := map[string]int{}
	for i, r := range t.Rules() {
		p.ruleSet[i], p.verdictSlot[i] = -1, -1
		if r.Expression() != "" {
			p.claims, p.extras = true, true
			if !r.AuthorizeReadsRequest() {
				p.verdictSlot[i] = p.verdicts
				p.verdicts++
			}
		}
		hs := r.Settings(routes.Settings{}).Headers
		if len(hs) == 0 {
			continue
		}
		p.extras = true
		var k strings.Builder
		for _, h := range hs {
			k.WriteString(h.Header + "\x00" + h.Claim + "\x00")
		}
		set, ok := seen[k.String()]
		if !ok {
			set = len(p.sets)
			seen[k.String()] = set
			p.sets = append(p.sets, hs)
		}
		p.ruleSet[i] = set
	}
	if len(p.names) == 0 {
		p.okNoSession, p.okUntouched = okRemoveAuthorization, okUntouched
		return p
	}
	p.stripAll = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{HeadersToRemove: p.names}}
	p.okNoSession = &authv3.CheckResponse{
		Status: statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			HeadersToRemove: append([]string{"authorization"}, p.names...),
		}},
	}
	p.okUntouched = &authv3.CheckResponse{Status: statusOK, HttpResponse: p.stripAll}
	return p
}

// setOf is the identity header set of rule r, -1 for none.
func (p *plan) setOf(r *routes.Rule) int {
	if r == nil || r.Ambiguous() || r.Index() >= len(p.ruleSet) {
		return -1
	}
	return p.ruleSet[r.Index()]
}

// currentPlan is the plan of the route table now in force.
func (s *Server) currentPlan() *plan {
	if s.routes == nil {
		return emptyPlan
	}
	t := s.routes.Table()
	if p := s.plan.Load(); p != nil && p.table == t {
		return p
	}
	p := newPlan(t)
	s.plan.Store(p)
	return p
}
