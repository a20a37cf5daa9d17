package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
)

// vsBaselineHTTP: the real server's forward-auth door against the no-op
// HTTP baseline.
var vsBaselineHTTP = sides{a: "ory-ext-authz /auth", b: "baseline (no-op HTTP)", minRps: 0.90, maxP99: 1.25}

// warmHTTP is warm through the HTTP forward-auth door: the real server
// with --forward-auth-addr, its cache filled with one /auth per session,
// against the no-op HTTP baseline (internal/bench/cmd/noop --http-addr: a
// net/http server with the forward-auth listener's timeouts answering 200
// with an Authorization of the same length and Cache-Control: no-store),
// both driven by internal/bench/load's keep-alive HTTP driver at
// --concurrency with Traefik's headers, A B A B in 4 x --rounds rounds
// of a quarter of --warm-seconds (as warm-routes' Go driver). Every answer is checked
// (200 with a bearer Authorization); failures are counted and reported.
func (h *harness) warmHTTP(ctx context.Context) error {
	o := h.opt
	const label = "warm-http (Go driver)"
	ory, err := h.startFakeOry("fakeory-warm-http", 0, time.Hour, o.sessions, 0)
	if err != nil {
		return err
	}
	fp, err := freePort()
	if err != nil {
		return err
	}
	realAddr := "127.0.0.1:" + fp
	srv, err := h.startServer(ctx, "server-warm-http", ory, "--forward-auth-addr", realAddr)
	if err != nil {
		return err
	}
	if err := load.WaitHTTP(ctx, "http://"+realAddr+"/", 30*time.Second); err != nil {
		return err
	}
	noopAddr, noopProc, err := h.startNoopHTTP(ctx, "noop-warm-http", ory.jwtBytes)
	if err != nil {
		return err
	}
	realReqs, err := load.ForwardAuthRequests(realAddr, ory.cookies)
	if err != nil {
		return err
	}
	noopReqs, err := load.ForwardAuthRequests(noopAddr, ory.cookies)
	if err != nil {
		return err
	}
	client := func() *http.Client { return load.HTTPClient(o.concurrency, 5*time.Second) }
	realClient, noopClient := client(), client()
	defer realClient.CloseIdleConnections()
	defer noopClient.CloseIdleConnections()

	// Fill: each session asked once through /auth on a cold cache must
	// cost exactly one whoami call per session.
	logf("warm-http: filling the cache (%d /auth checks, one per session)", o.sessions)
	fill, _ := load.ClosedHTTP(ctx, realClient, realReqs, o.sessions, o.concurrency, time.Minute)
	_, fillFailed := load.Latencies(fill)
	st, err := ory.stats(ctx)
	if err != nil {
		return err
	}
	distinct := 0
	for _, c := range st.PerSession {
		if c > 0 {
			distinct++
		}
	}
	h.table.add(label, fmt.Sprintf("fill: whoami calls for %d /auth checks on a cold cache, one per session (distinct sessions); failed checks", o.sessions),
		fmt.Sprintf("%d (%d); %d", st.Calls, distinct, fillFailed), "", fmt.Sprintf("%d, one per session; 0 failed", o.sessions),
		yes(st.Calls == int64(o.sessions) && distinct == o.sessions && fillFailed == 0 && len(fill) == o.sessions))
	if fillFailed > 0 {
		logf("warm-http: fill: %d failed checks: %v", fillFailed, load.Errors(fill))
	}

	// The two answers carry the same headers: a hit's Authorization is as
	// long as the baseline's, both with Cache-Control: no-store.
	realHdr, err := oneAnswer(ctx, realClient, realReqs[0])
	if err != nil {
		return fmt.Errorf("real /auth: %w", err)
	}
	noopHdr, err := oneAnswer(ctx, noopClient, noopReqs[0])
	if err != nil {
		return fmt.Errorf("baseline /auth: %w", err)
	}
	same := len(realHdr.Get("Authorization")) == len(noopHdr.Get("Authorization")) &&
		realHdr.Get("Cache-Control") == "no-store" && noopHdr.Get("Cache-Control") == "no-store"
	h.table.add(label, "answers: Authorization length, Cache-Control (real / baseline)",
		fmt.Sprintf("%d, %s / %d, %s", len(realHdr.Get("Authorization")), realHdr.Get("Cache-Control"), len(noopHdr.Get("Authorization")), noopHdr.Get("Cache-Control")),
		"", "the same", yes(same))
	if err := ory.reset(ctx); err != nil {
		return err
	}

	// Warm-up of both (connections, heap growth), then the rounds:
	// warm-routes' many short ones (4 x --rounds of a quarter of
	// --warm-seconds each), so that a pair of rounds (A, then B right
	// after it) sees the same load of the shared machine.
	rounds, round := 4*o.rounds, time.Duration(o.warmSeconds/4*float64(time.Second))
	const total = 400_000
	sideList := []struct {
		name   string
		proc   *proc
		client *http.Client
		reqs   []*http.Request
		into   []measurement
		// cpu and checks: the server process's CPU time during its
		// rounds, and the checks of those rounds.
		cpu    time.Duration
		checks int
	}{{name: vsBaselineHTTP.a, proc: srv.proc, client: realClient, reqs: realReqs}, {name: vsBaselineHTTP.b, proc: noopProc, client: noopClient, reqs: noopReqs}}
	failed := 0
	errs := map[string]int{}
	count := func(calls []load.Call) {
		_, f := load.Latencies(calls)
		failed += f
		for k, v := range load.Errors(calls) {
			errs[k] += v
		}
	}
	for _, s := range sideList {
		calls, _ := load.ClosedHTTP(ctx, s.client, s.reqs, 5000, o.concurrency, 30*time.Second)
		count(calls)
	}
	for r := range rounds {
		for i := range sideList {
			s := &sideList[i]
			cpu0 := s.proc.cpuTime()
			calls, elapsed := load.ClosedHTTP(ctx, s.client, s.reqs, total, o.concurrency, round)
			s.cpu += s.proc.cpuTime() - cpu0
			s.checks += len(calls)
			if err := ctx.Err(); err != nil {
				return err
			}
			count(calls)
			lat, _ := load.Latencies(calls)
			sum := load.Summarize(lat)
			m := measurement{rps: float64(len(calls)) / elapsed.Seconds(), p50: sum.P50, p99: sum.P99, n: len(calls), errors: len(calls) - len(lat)}
			logf("warm-http: round %d %-22s %8.0f rps  p50 %s  p99 %s  failed %d", r+1, s.name, m.rps, ms(m.p50), ms(m.p99), m.errors)
			s.into = append(s.into, m)
		}
	}
	if failed > 0 {
		logf("warm-http: %d failed checks: %v", failed, errs)
	}
	if st, err = ory.stats(ctx); err != nil {
		return err
	}
	h.table.add(label, "original request", fmt.Sprintf("GET /auth, X-Forwarded-Method %s, -Proto %s, -Host %s, -Uri %s, the browser's 14 cookies with the session, cycling through %d warm sessions",
		load.ForwardedMethod, load.ForwardedProto, load.ForwardedHost, load.ForwardedURI, o.sessions), "", "", "")
	h.addWarmRows(label, fmt.Sprintf("internal/bench/load HTTP driver, keep-alive, c=%d, up to %d connections, %s per round, %d rounds each, A B A B", o.concurrency, o.concurrency, round, rounds),
		vsBaselineHTTP, sideList[0].into, sideList[1].into)
	perCheck := func(i int) float64 {
		return float64(sideList[i].cpu.Microseconds()) / float64(max(sideList[i].checks, 1))
	}
	h.table.add(label, "server process CPU per check during the rounds (user+system): ory-ext-authz / baseline",
		fmt.Sprintf("%.1f us / %.1f us", perCheck(0), perCheck(1)), ratio(perCheck(0), perCheck(1)), "", "")
	h.table.add(label, "failed checks (not 200 with Authorization: Bearer) during the warm-ups and rounds, both sides", strconv.Itoa(failed)+errSummary(errs), "", "0", yes(failed == 0))
	h.table.add(label, "whoami calls during the warm-ups and rounds", strconv.FormatInt(st.Calls, 10), "", "0 (all hits)", yes(st.Calls == 0))
	return nil
}

// errSummary is ": " and the failures by message, or nothing for none.
func errSummary(errs map[string]int) string {
	if len(errs) == 0 {
		return ""
	}
	var parts []string
	for k, v := range errs {
		parts = append(parts, fmt.Sprintf("%s: %d", k, v))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// oneAnswer sends req once and returns the answer's headers, or an error
// unless it is a hit (200 with a bearer Authorization).
func oneAnswer(ctx context.Context, client *http.Client, req *http.Request) (http.Header, error) {
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer ") {
		return nil, fmt.Errorf("status %d, Authorization %q", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	return resp.Header, nil
}

// startNoopHTTP starts the HTTP baseline (as name) with a JWT as long as
// the fake Ory's, and waits until it answers.
func (h *harness) startNoopHTTP(ctx context.Context, name string, jwtBytes int) (string, *proc, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr := "127.0.0.1:" + port
	p, err := h.procs.start(name, nil, h.bins.noop, "--http-addr", addr, "--jwt-bytes", strconv.Itoa(jwtBytes))
	if err != nil {
		return "", nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- load.WaitHTTP(ctx, "http://"+addr+"/", 30*time.Second) }()
	select {
	case err := <-errc:
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w (see %s.log)", name, err, name)
		}
		return addr, p, nil
	case <-p.Exited():
		return "", nil, fmt.Errorf("%s exited before serving (see %s/%s.log): %w", name, h.dir, name, p.Err())
	}
}
