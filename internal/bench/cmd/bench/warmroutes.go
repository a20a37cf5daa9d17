package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/noop"
)

// vsBaselineRoutes: the real server with a route table against the
// baseline answering with the same identity headers.
var vsBaselineRoutes = sides{a: "ory-ext-authz --routes", b: "baseline (no-op, same headers)", minRps: 0.95, maxP99: 1.10}

// warmRoutes is warm on a route with a policy: the server runs with
// --routes on internal/bench's PolicyRoutes (200 rules, the traffic's
// rule tried last, with an `authorize` expression and two identity
// headers), every JWT of the fake Ory carries the role the expression
// asks for, and the baseline answers with the identity headers and
// headers_to_remove of the real server's answer. Before the rounds it
// checks that the answer sets both headers from the JWT's claims and
// that a session without the role is denied, from the cache too. The Go
// driver runs redis-warm's many short rounds: the targets are close to
// 1.00x.
func (h *harness) warmRoutes(ctx context.Context) error {
	o := h.opt
	file := filepath.Join(h.dir, "warm-routes.yaml")
	if err := os.WriteFile(file, []byte(bench.PolicyRoutes()), 0o600); err != nil {
		return err
	}
	roleless := filepath.Join(h.dir, "warm-routes.roleless")
	var roles []string
	for _, r := range bench.PolicyRoles {
		roles = append(roles, fmt.Sprint(r))
	}
	const label = "warm, routes"
	h.table.add(label+" (ghz)", "route table", fmt.Sprintf("--routes, %d rules, the traffic (GET app.example.org/api/orders) matching the last: authorize '%s', headers %s: sub, %s: email; the first rule sets %s, which the answers remove; the baseline answers with the same headers",
		bench.PolicyRules, bench.PolicyExpression, bench.PolicyUserID, bench.PolicyUserEmail, bench.PolicyOtherHeader), "", "", "")
	return h.runWarm(ctx, warmCase{
		label: label, name: "warm-routes", sides: vsBaselineRoutes,
		oryArgs:    []string{"--roles", strings.Join(roles, ","), "--roleless-file", roleless},
		serverArgs: []string{"--routes", file},
		prepare: func(ctx context.Context, addr string, ory *fakeOry) (noop.Identity, error) {
			return h.checkPolicy(ctx, label+" (ghz)", addr, ory, roleless)
		},
		driverRounds: 4 * o.rounds,
		driverRound:  time.Duration(o.warmSeconds / 4 * float64(time.Second)),
	})
}

// checkPolicy checks on the server at addr, whose cache holds ory's
// sessions, that a hit sets both identity headers from the JWT's claims
// and removes the table's other one, and that the session of rolelessFile
// is denied twice for one whoami call (the expression runs on a hit). It
// returns the identity part of the hit's answer.
func (h *harness) checkPolicy(ctx context.Context, scen, addr string, ory *fakeOry, rolelessFile string) (noop.Identity, error) {
	p, err := load.Dial(addr, 1)
	if err != nil {
		return noop.Identity{}, err
	}
	defer p.Close()
	resp, err := p.Client(0).Check(ctx, load.CheckRequest(ory.cookies[0]))
	if err != nil {
		return noop.Identity{}, err
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		return noop.Identity{}, fmt.Errorf("a session with the role %q was not allowed: %v", bench.PolicyRole, resp)
	}
	set := map[string]string{}
	for _, hv := range resp.GetOkResponse().GetHeaders() {
		set[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	claims, err := jwtClaims(strings.TrimPrefix(set["authorization"], "Bearer "))
	if err != nil {
		return noop.Identity{}, err
	}
	removed := resp.GetOkResponse().GetHeadersToRemove()
	ok := set[bench.PolicyUserID] != "" && set[bench.PolicyUserID] == claims["sub"] &&
		set[bench.PolicyUserEmail] != "" && set[bench.PolicyUserEmail] == claims["email"] &&
		slices.Equal(removed, []string{bench.PolicyOtherHeader})
	h.table.add(scen, "a hit: identity headers (= the JWT's claims sub and email); headers_to_remove",
		fmt.Sprintf("%s: %d bytes (%s), %s: %d bytes (%s); %v", bench.PolicyUserID, len(set[bench.PolicyUserID]), same(set[bench.PolicyUserID], claims["sub"]),
			bench.PolicyUserEmail, len(set[bench.PolicyUserEmail]), same(set[bench.PolicyUserEmail], claims["email"]), removed),
		"", fmt.Sprintf("both set from the claims; [%s]", bench.PolicyOtherHeader), yes(ok))

	// The session without the role: fetched and denied, then denied again
	// from the cache.
	cookies, err := load.ReadLines(rolelessFile)
	if err != nil {
		return noop.Identity{}, err
	}
	if len(cookies) != 1 {
		return noop.Identity{}, fmt.Errorf("%s: %d sessions, want 1", rolelessFile, len(cookies))
	}
	before, err := ory.stats(ctx)
	if err != nil {
		return noop.Identity{}, err
	}
	var got []string
	denied := true
	for range 2 {
		r, err := p.Client(0).Check(ctx, load.CheckRequest(cookies[0]))
		if err != nil {
			return noop.Identity{}, err
		}
		st := r.GetDeniedResponse().GetStatus().GetCode()
		got = append(got, fmt.Sprintf("%d", st))
		denied = denied && r.GetStatus().GetCode() == int32(codes.PermissionDenied) && st == typev3.StatusCode_Forbidden
	}
	after, err := ory.stats(ctx)
	if err != nil {
		return noop.Identity{}, err
	}
	calls := after.Unknown - before.Unknown
	h.table.add(scen, "a session without the role, checked twice (fetched, then from the cache): HTTP status; whoami calls",
		fmt.Sprintf("%s; %d", strings.Join(got, ", "), calls), "", "403, 403; 1", yes(denied && calls == 1))
	return noop.IdentityOf(resp), nil
}

// same tells whether a header's value is the claim's.
func same(v string, claim any) string {
	if s, ok := claim.(string); ok && s == v {
		return "= claim"
	}
	return "NOT the claim"
}

// jwtClaims decodes the payload of a compact JWS (the server's answer; the
// signature is the fake Ory's and not checked here).
func jwtClaims(jwt string) (map[string]any, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("the answer's authorization is not a compact JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	return c, nil
}
