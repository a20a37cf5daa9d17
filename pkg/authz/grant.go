package authz

import (
	"errors"
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// errAALRequired: the session is below the rule's require_aal. Browsers
// are sent to step up (Options.StepUpURL), API clients get 403.
var errAALRequired = errors.New("the session is below the assurance level the route requires")

// ruleDenied: the rule's `authorize` expression is false for the request.
type ruleDenied struct{ rule *routes.Rule }

func (e *ruleDenied) Error() string {
	return e.rule.String() + " denies the request (authorize is false)"
}

// ruleError: the rule's `authorize` expression failed (a claim missing or
// of another type, the cost limit): a denial, never an allow.
type ruleError struct {
	rule *routes.Rule
	err  error
}

func (e *ruleError) Error() string { return fmt.Sprintf("%s: %v", e.rule, e.err) }
func (e *ruleError) Unwrap() error { return e.err }

// claimsError: a JWT from Ory whose claims do not decode, so the route
// table's identity headers or claims cannot be had.
type claimsError struct{ err error }

func (e *claimsError) Error() string { return "the JWT from Ory: " + e.err.Error() }
func (e *claimsError) Unwrap() error { return e.err }

// grant turns a session's answer into the answer of this request's route:
// the rule's require_aal, then its `authorize` expression, then the
// identity headers of its rule (every other identity header name removed).
func (s *Server) grant(r request, st settings, a allowed, hit bool) (*authv3.CheckResponse, error) {
	p := st.plan
	if st.requireAAL == routes.AAL2 {
		if _, _, aal := a.meta(); string(aal) != string(routes.AAL2) {
			return nil, errAALRequired
		}
	}
	set := p.setOf(st.rule)
	expr := st.rule != nil && st.rule.Expression() != ""
	if set < 0 && !expr {
		return a.response(hit, p.stripAll), nil
	}
	x := a.ext
	if x == nil || x.plan != p {
		// Fetched under another table (before a reload) or decoded by a
		// replica without one: built for this request, until a refresh.
		var err error
		if x, err = extrasOf(p, a, a.jwt()); err != nil {
			return nil, err
		}
	}
	if expr {
		ok, err := authorize(st, x, r)
		if err != nil {
			return nil, &ruleError{rule: st.rule, err: err}
		}
		if !ok {
			return nil, &ruleDenied{rule: st.rule}
		}
	}
	if set < 0 {
		return a.response(hit, p.stripAll), nil
	}
	return a.response(hit, x.ok[set]), nil
}

// authorize runs the rule's expression for r, or for one that reads no
// request takes the result kept with the JWT (evaluating it the first
// time).
func authorize(st settings, x *extras, r request) (bool, error) {
	if slot := st.plan.verdictSlot[st.rule.Index()]; slot >= 0 && slot < len(x.verdicts) {
		if v := x.verdicts[slot].Load(); v != nil {
			return v.ok, v.err
		}
		ok, err := st.rule.Authorize(routes.Vars{Claims: x.claims, Session: x.session, InputBytes: x.jwtBytes})
		x.verdicts[slot].Store(&verdict{ok: ok, err: err})
		return ok, err
	}
	req, headerBytes := requestVars(r)
	return st.rule.Authorize(routes.Vars{Claims: x.claims, Session: x.session, Request: req, InputBytes: x.jwtBytes + headerBytes})
}

// withExtras adds to a what plan p needs decoded from its JWT, at fill
// time: a fetch from Ory or a read from the shared tier.
func withExtras(p *plan, a allowed, jwt string) (allowed, error) {
	if !p.extras {
		return a, nil
	}
	x, err := extrasOf(p, a, jwt)
	if err != nil {
		return allowed{}, err
	}
	a.ext = x
	return a, nil
}

// extrasOf decodes jwt, a's JWT, for p; the session is the one a's
// encoding names.
func extrasOf(p *plan, a allowed, jwt string) (*extras, error) {
	sid, iid, aal := a.meta()
	x, err := buildExtras(p, jwt, routes.Session{IdentityID: string(iid), SessionID: string(sid), AAL: string(aal)})
	if err != nil {
		return nil, &claimsError{err}
	}
	return x, nil
}

// requestVars is `request` of an `authorize` expression: the path as the
// table matched it (Envoy's normal form, without the query), headers with
// lower-case names; and the size of its headers' names and values.
func requestVars(r request) (routes.Request, int) {
	path, ok := routes.NormalizePath(r.http.GetPath())
	if !ok {
		path = ""
	}
	hs := r.headers.Map
	size := 0
	if hs == nil && len(r.headers.Raw) > 0 {
		hs = make(map[string]string, len(r.headers.Raw))
		for _, h := range r.headers.Raw {
			v := h.GetValue()
			if v == "" {
				v = string(h.GetRawValue())
			}
			hs[h.GetKey()] = v
		}
	}
	for k, v := range hs {
		size += len(k) + len(v)
	}
	return routes.Request{Method: r.http.GetMethod(), Host: r.http.GetHost(), Path: path, Headers: hs}, size
}
