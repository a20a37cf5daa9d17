package main

import (
	"context"
	"fmt"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

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
	realAddr, srv, noopAddr, err := h.startPair(ctx, "server-cold", ory)
	if err != nil {
		return err
	}
	total := o.sessions * o.coldPer
	perSession := make([]*authv3.CheckRequest, o.sessions)
	for i, c := range ory.cookies {
		perSession[i] = load.CheckRequest(c)
	}
	// Request i goes to session i mod sessions: the 20 checks of a session
	// are spread over the burst, as they would be over Envoy's workers.
	reqs := make([]*authv3.CheckRequest, total)
	for i := range reqs {
		reqs[i] = perSession[i%o.sessions]
	}
	sessionOf := func(i int) int { return i % o.sessions }

	burst := func(addr string) ([]load.Call, error) {
		p, err := load.Dial(addr, 4)
		if err != nil {
			return nil, err
		}
		defer p.Close()
		// One check of an unknown session opens the connections before the
		// burst; it is a miss that Ory answers 401, not one of the sessions.
		_, _ = p.Client(0).Check(ctx, load.CheckRequest("ory_kratos_session=warmup"))
		for i := 1; i < 4; i++ {
			_, _ = p.Client(i).Check(ctx, load.CheckRequest("ory_kratos_session=warmup"))
		}
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return load.Burst(cctx, p, reqs, sessionOf, 30*time.Second), nil
	}

	logf("cold: baseline burst of %d checks", total)
	baseCalls, err := burst(noopAddr)
	if err != nil {
		return err
	}
	if err := ory.reset(ctx); err != nil {
		return err
	}
	logf("cold: %d sessions x %d concurrent checks, Ory latency %s", o.sessions, o.coldPer, o.oryLatency)
	srvCPU, oryCPU := srv.cpuTime(), ory.proc.cpuTime()
	calls, err := burst(realAddr)
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
	notOne, maxPer := 0, int64(0)
	for _, c := range st.PerSession {
		if c != 1 {
			notOne++
		}
		maxPer = max(maxPer, c)
	}
	perSessionCalls := float64(st.Calls-st.Unknown) / float64(o.sessions)
	scen := "cold start"
	h.table.add(scen, "setup", fmt.Sprintf("%d sessions x %d concurrent checks at once (%d), cold cache, Ory latency %s, 4 connections, server defaults", o.sessions, o.coldPer, total, o.oryLatency), "", "", "")
	h.table.add(scen, "whoami calls / distinct sessions", fmt.Sprintf("%.2f (%d calls)", perSessionCalls, st.Calls-st.Unknown), "", "exactly 1.00", yes(st.Calls-st.Unknown == int64(o.sessions) && notOne == 0))
	h.table.add(scen, "sessions with other than 1 call; most calls for one session", fmt.Sprintf("%d; %d", notOne, maxPer), "", "0; 1", yes(notOne == 0))
	h.table.add(scen, "failed checks", fmt.Sprintf("%d of %d %v", errs, total, load.Errors(calls)), "", "0", yes(errs == 0))
	h.table.add(scen, "CPU used by the burst: server / fake Ory", fmt.Sprintf("%.2f s / %.2f s", srvCPU.Seconds(), oryCPU.Seconds()), "", "", "")
	h.table.add(scen, "baseline burst p50 / p99", fmt.Sprintf("%s / %s", ms(bsum.P50), ms(bsum.P99)), "1.00x", "", yes(berrs == 0))
	h.table.add(scen, "ory-ext-authz p50", ms(sum.P50), ratio(float64(sum.P50), float64(bsum.P50)), "", "")
	h.table.add(scen, "ory-ext-authz p99 / max", ms(sum.P99)+" / "+ms(sum.Max), ratio(float64(sum.P99), float64(bsum.P99)), "", "")
	return nil
}
