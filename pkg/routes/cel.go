package routes

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// Vars are what an `authorize` expression sees.
type Vars struct {
	// Claims are the JWT's claims as JSON decodes them (numbers are
	// float64): claims.sub, claims.email, "admin" in claims.roles.
	Claims map[string]any
	// Session is the Ory session the JWT was minted for.
	Session Session
	// Request is the request being checked.
	Request Request
	// InputBytes is the size of what Claims and Request were decoded from
	// (the JWT plus the request's header names and values), 0 if unknown.
	// At most MaxInputBytes, the load-time cost estimate already bounds
	// the evaluation, and it runs without cel-go's runtime cost tracking
	// (three times faster); otherwise it runs under CostLimit.
	InputBytes int
}

// Session is `session` in an expression.
type Session struct {
	IdentityID string `cel:"identity_id"`
	SessionID  string `cel:"session_id"`
	// AAL is the session's authenticator assurance level: aal1, aal2.
	AAL string `cel:"aal"`
}

// Request is `request` in an expression.
type Request struct {
	Method string `cel:"method"`
	Host   string `cel:"host"`
	// Path is the path as matched: Envoy's normal form, without the query.
	Path string `cel:"path"`
	// Headers are the request's headers, names in lower case.
	Headers map[string]string `cel:"headers"`
}

// The bounds of an `authorize` expression, checked when the file is
// loaded and, for the cost, again while it runs.
const (
	// CostLimit bounds the cost of one evaluation, in CEL's units (about
	// one per operation, one per list element or string byte a function
	// walks). An expression whose estimated worst case exceeds it is
	// refused at load; an evaluation that reaches it fails (a denial).
	CostLimit = 1_000_000
	// MaxExpressionLen bounds the text of an expression, in code points.
	MaxExpressionLen = 4096
	// MaxLoopLen bounds the length of every list and map in the claims
	// and the request headers when the expression loops (exists, all,
	// exists_one, filter, map): a longer one fails the evaluation (a
	// denial). cel-go v0.31.0's cost tracking, which CostLimit needs,
	// costs time quadratic in the length of the list a comprehension
	// walks (about 3 ms for 1,000 elements, 230 ms for the 8,000 a 16 KiB
	// JWT can hold); this bound keeps one evaluation in the milliseconds.
	// Lists and maps that are only indexed or searched with `in` are
	// linear and not bounded.
	MaxLoopLen = 1024
	// maxInputSize is the size the cost estimate assumes for every string,
	// list and map of the input: claims come from a JWT the server bounds
	// (16 KiB by default), headers from a request it bounds (64 KiB).
	maxInputSize = 64 << 10
	// MaxInputBytes is the largest Vars.InputBytes evaluated without
	// runtime cost tracking: no string, list or map of such an input can
	// be longer than the estimate assumed.
	MaxInputBytes = maxInputSize
)

var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Session](), reflect.TypeFor[Request](), ext.ParseStructTags(true)),
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("session", cel.ObjectType("routes.Session")),
		cel.Variable("request", cel.ObjectType("routes.Request")),
		cel.ParserExpressionSizeLimit(MaxExpressionLen),
		cel.ParserRecursionLimit(64),
	)
})

// program is a compiled `authorize` expression.
type program struct {
	source string
	// prg runs under the runtime cost limit; fast without it, for inputs
	// the load-time estimate bounds (Vars.InputBytes).
	prg, fast cel.Program
	// loops: the expression has a comprehension, so its input is checked
	// against MaxLoopLen first.
	loops bool
	// readsRequest: the expression names `request`; without it, its
	// result is fixed for a JWT (its claims and session).
	readsRequest bool
}

// compileAuthorize parses, type-checks and plans expr; every problem is
// one error of the list (positions relative to the expression).
func compileAuthorize(expr string) (*program, []exprError) {
	env, err := celEnv()
	if err != nil {
		return nil, []exprError{{msg: "CEL environment: " + err.Error()}}
	}
	if strings.TrimSpace(expr) == "" {
		return nil, []exprError{{msg: "empty expression"}}
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		var errs []exprError
		for _, e := range iss.Errors() {
			errs = append(errs, exprError{line: e.Location.Line(), column: e.Location.Column(), msg: e.Message})
		}
		return nil, errs
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, []exprError{{msg: fmt.Sprintf("the expression is of type %s, want bool (compare a claim: claims.admin == true)", ast.OutputType())}}
	}
	est, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, []exprError{{msg: "cost estimate: " + err.Error()}}
	}
	if est.Max > CostLimit {
		return nil, []exprError{{msg: fmt.Sprintf("estimated worst-case cost %d exceeds the limit %d (nested loops over claims or headers?)", est.Max, CostLimit)}}
	}
	prg, err := env.Program(ast, cel.CostLimit(CostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, []exprError{{msg: err.Error()}}
	}
	fast, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, []exprError{{msg: err.Error()}}
	}
	root := celast.NavigateAST(ast.NativeRep())
	loops := len(celast.MatchDescendants(root, celast.KindMatcher(celast.ComprehensionKind))) > 0
	readsRequest := len(celast.MatchDescendants(root, func(e celast.NavigableExpr) bool {
		return e.Kind() == celast.IdentKind && e.AsIdent() == "request"
	})) > 0
	return &program{source: expr, prg: prg, fast: fast, loops: loops, readsRequest: readsRequest}, nil
}

// exprError is a problem in an expression; line is 1-based, column
// 0-based, both relative to the expression (0: no position).
type exprError struct {
	line, column int
	msg          string
}

// sizeEstimator bounds every input the cost estimate cannot see.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if p := n.Path(); len(p) > 0 {
		switch p[0] {
		case "claims", "session", "request":
			return &checker.SizeEstimate{Min: 0, Max: maxInputSize}
		}
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// activation hands the variables to the program without building a map.
type activation struct{ v *Vars }

var emptyClaims = map[string]any{}

func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		if a.v.Claims == nil {
			return emptyClaims, true
		}
		return a.v.Claims, true
	case "session":
		return &a.v.Session, true
	case "request":
		return &a.v.Request, true
	}
	return nil, false
}

func (activation) Parent() interpreter.Activation { return nil }

// errNotBool is a result that is not a bool, which the type check rules
// out unless a claim's value lies about its type at run time.
var errNotBool = errors.New("authorize: the expression did not return a bool")

func (p *program) eval(v *Vars) (bool, error) {
	if p.loops {
		if err := checkLoopLen(v.Claims, "claims", 0); err != nil {
			return false, err
		}
		if len(v.Request.Headers) > MaxLoopLen {
			return false, fmt.Errorf("authorize: request.headers has %d entries, more than %d", len(v.Request.Headers), MaxLoopLen)
		}
	}
	prg := p.prg
	if v.InputBytes > 0 && v.InputBytes <= MaxInputBytes {
		prg = p.fast
	}
	out, _, err := prg.Eval(activation{v})
	if err != nil {
		return false, fmt.Errorf("authorize: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errNotBool
	}
	return b, nil
}

// maxClaimsDepth bounds the nesting of claims checkLoopLen walks; JSON
// from a 16 KiB JWT cannot nest deeper than 8 Ki levels, and no claims
// mapper nests that deep.
const maxClaimsDepth = 64

// checkLoopLen fails for a list or map under v longer than MaxLoopLen.
func checkLoopLen(v any, path string, depth int) error {
	if depth > maxClaimsDepth {
		return fmt.Errorf("authorize: %s nests deeper than %d levels", path, maxClaimsDepth)
	}
	switch c := v.(type) {
	case []any:
		if len(c) > MaxLoopLen {
			return fmt.Errorf("authorize: %s has %d elements, more than %d", path, len(c), MaxLoopLen)
		}
		for _, e := range c {
			if err := checkLoopLen(e, path+"[]", depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		if len(c) > MaxLoopLen {
			return fmt.Errorf("authorize: %s has %d entries, more than %d", path, len(c), MaxLoopLen)
		}
		for k, e := range c {
			switch e.(type) {
			case []any, map[string]any:
				if err := checkLoopLen(e, path+"."+k, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
