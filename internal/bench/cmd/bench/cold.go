package main

import (
	"context"
	"fmt"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
)

// cold: every session receives coldPer concurrent checks at once against a
// cold cache while Ory takes oryLatency per call. The same burst against
// the baseline shows what the client and gRPC alone cost.
func (h *harness) cold(ctx context.Context) error {
	o := h.opt
	ory, err := h.startFakeOry("fakeory-cold", o.oryLatency, time.Hour, o.sessions, 0)
	if err != nil {
		return err
	}
	srv, noopAddr, err := h.startPair(ctx, "server-cold", ory)
	if err != nil {
		return err
	}
	reqs, sessionOf := h.stormRequests(ory)
	total := len(reqs)

	logf("cold: baseline burst of %d checks", total)
	baseCalls, err := h.burst(ctx, []string{noopAddr}, reqs, sessionOf)
	if err != nil {
		return err
	}
	if err := ory.reset(ctx); err != nil {
		return err
	}
	logf("cold: %d sessions x %d concurrent checks, Ory latency %s", o.sessions, o.coldPer, o.oryLatency)
	srvCPU, oryCPU := srv.cpuTime(), ory.proc.cpuTime()
	calls, err := h.burst(ctx, []string{srv.addr}, reqs, sessionOf)
	if err != nil {
		return err
	}
	srvCPU, oryCPU = srv.cpuTime()-srvCPU, ory.proc.cpuTime()-oryCPU
	st, err := ory.stats(ctx)
	if err != nil {
		return err
	}
	summarize := func(cs []load.Call) (load.Summary, int) {
		lat, errs := load.Latencies(cs)
		return load.Summarize(lat), errs
	}
	sum, errs := summarize(calls)
	bsum, berrs := summarize(baseCalls)
	per := perSession(st, o.sessions)
	scen := "cold start"
	h.table.add(scen, "setup", fmt.Sprintf("%d sessions x %d concurrent checks at once (%d), cold cache, Ory latency %s, 4 connections, server defaults", o.sessions, o.coldPer, total, o.oryLatency), "", "", "")
	h.table.add(scen, "whoami calls / distinct sessions", fmt.Sprintf("%.2f (%d calls)", per.ratio, per.calls), "", "exactly 1.00", yes(per.exactlyOne()))
	h.table.add(scen, "sessions with other than 1 call; most calls for one session", fmt.Sprintf("%d; %d", per.notOne, per.most), "", "0; 1", yes(per.notOne == 0))
	h.table.add(scen, "failed checks", fmt.Sprintf("%d of %d %v", errs, total, load.Errors(calls)), "", "0", yes(errs == 0))
	h.table.add(scen, "CPU used by the burst: server / fake Ory", fmt.Sprintf("%.2f s / %.2f s", srvCPU.Seconds(), oryCPU.Seconds()), "", "", "")
	h.table.add(scen, "baseline burst p50 / p99", fmt.Sprintf("%s / %s", ms(bsum.P50), ms(bsum.P99)), "1.00x", "", yes(berrs == 0))
	h.table.add(scen, "ory-ext-authz p50", ms(sum.P50), ratio(float64(sum.P50), float64(bsum.P50)), "", "")
	h.table.add(scen, "ory-ext-authz p99 / max", ms(sum.P99)+" / "+ms(sum.Max), ratio(float64(sum.P99), float64(bsum.P99)), "", "")
	return nil
}

// stormRequests are the cold storm's checks: coldPer for every session of
// ory. Request i goes to session i mod sessions, so that the checks of a
// session are spread over the burst (as over Envoy's workers) and, over
// the replicas of a pool from load.DialAll, over every replica.
func (h *harness) stormRequests(ory *fakeOry) (reqs []*authv3.CheckRequest, sessionOf func(i int) int) {
	n := len(ory.cookies)
	perSession := make([]*authv3.CheckRequest, n)
	for i, c := range ory.cookies {
		perSession[i] = load.CheckRequest(c)
	}
	reqs = make([]*authv3.CheckRequest, n*h.opt.coldPer)
	for i := range reqs {
		reqs[i] = perSession[i%n]
	}
	return reqs, func(i int) int { return i % n }
}

// burst sends every request at once over 4 connections to each of addrs.
func (h *harness) burst(ctx context.Context, addrs []string, reqs []*authv3.CheckRequest, sessionOf func(i int) int) ([]load.Call, error) {
	p, err := load.DialAll(addrs, 4)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	// One check of an unknown session on each connection opens them before
	// the burst; it is a miss that Ory answers 401, not one of the sessions.
	for i := range 4 * len(addrs) {
		_, _ = p.Client(i).Check(ctx, load.CheckRequest("ory_kratos_session=warmup"))
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return load.Burst(cctx, p, reqs, sessionOf, 30*time.Second), nil
}

// callsPerSession is how the fake Ory's whoami calls fell on the sessions.
type callsPerSession struct {
	calls    int64   // calls of known sessions
	ratio    float64 // calls per session
	notOne   int     // sessions with other than one call
	most     int64   // most calls of one session
	sessions int
}

func perSession(st bench.FakeOryStats, sessions int) callsPerSession {
	c := callsPerSession{calls: st.Calls - st.Unknown, sessions: sessions}
	c.ratio = float64(c.calls) / float64(sessions)
	for _, n := range st.PerSession {
		if n != 1 {
			c.notOne++
		}
		c.most = max(c.most, n)
	}
	return c
}

// exactlyOne: every session was asked of Ory exactly once.
func (c callsPerSession) exactlyOne() bool {
	return c.calls == int64(c.sessions) && c.notOne == 0
}
