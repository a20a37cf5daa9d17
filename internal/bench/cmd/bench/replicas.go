package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// stormFlags are the servers' flags in replicasCold: the storm keeps every
// check queued for a second or two on the shared cores (three servers, the
// client, Ory and Redis), and a Redis operation then waits longer than
// --redis-timeout's default (50ms) for a core, not for Redis; the tier's
// breaker opens and each replica asks Ory itself. With these bounds the
// storm measures the coalescing over the replicas; the run at the
// defaults is reported next to it.
var stormFlags = []string{"--whoami-timeout", "5s", "--redis-timeout", "1s"}

// replicasCold: the cold storm of cold, spread over the replicas, with a
// shared Redis (one whoami call per session, whichever replicas the
// session's checks reach), without it (each replica asks Ory itself), and
// with it at the server's defaults.
func (h *harness) replicasCold(ctx context.Context) error {
	o := h.opt
	ory, err := h.startFakeOry("fakeory-replicas-cold", o.oryLatency, time.Hour, o.sessions, 0)
	if err != nil {
		return err
	}
	redisURL, err := h.startRedis(ctx, "redis-replicas-cold")
	if err != nil {
		return err
	}
	reqs, sessionOf := h.stormRequests(ory)
	type result struct {
		per  callsPerSession
		sum  load.Summary
		errs int
	}
	var with, without, defaults result
	for _, run := range []struct {
		name, redis string
		flags       []string
		into        *result
	}{{"redis", redisURL, stormFlags, &with}, {"plain", "", stormFlags, &without}, {"redis-defaults", redisURL, nil, &defaults}} {
		srvs, err := h.startReplicas(ctx, "server-replicas-cold-"+run.name, ory, o.replicas, run.redis, run.flags...)
		if err != nil {
			return err
		}
		if err := ory.reset(ctx); err != nil {
			return err
		}
		logf("replicas-cold: %s, %d replicas, %d sessions x %d concurrent checks", run.name, o.replicas, o.sessions, o.coldPer)
		calls, err := h.burst(ctx, addrs(srvs), reqs, sessionOf)
		if err != nil {
			return err
		}
		st, err := ory.stats(ctx)
		if err != nil {
			return err
		}
		lat, errs := load.Latencies(calls)
		*run.into = result{per: perSession(st, o.sessions), sum: load.Summarize(lat), errs: errs}
		// The next storm has the cores to itself.
		for _, s := range srvs {
			s.stop()
		}
	}
	scen := fmt.Sprintf("cold start, %d replicas", o.replicas)
	h.table.add(scen, "setup", fmt.Sprintf("%d serve processes (%s), with one shared redis-server (--redis-url) and then without; %d sessions x %d concurrent checks at once (%d) spread round-robin over the replicas (4 connections each), cold cache, Ory latency %s",
		o.replicas, strings.Join(stormFlags, " "), o.sessions, o.coldPer, len(reqs), o.oryLatency), "", "", "")
	h.table.add(scen, "whoami calls per session with Redis (without Redis)", fmt.Sprintf("%.2f (%.2f); %d (%d) calls", with.per.ratio, without.per.ratio, with.per.calls, without.per.calls), "",
		"1.00 with Redis", yes(with.per.exactlyOne()))
	h.table.add(scen, "with Redis: sessions with other than 1 call; most calls for one session", fmt.Sprintf("%d; %d", with.per.notOne, with.per.most), "", "0; 1", yes(with.per.notOne == 0))
	h.table.add(scen, "failed checks with Redis (without)", fmt.Sprintf("%d (%d) of %d", with.errs, without.errs, len(reqs)), "", "0", yes(with.errs == 0 && without.errs == 0))
	h.table.add(scen, "p50 / p99 with Redis (without)", fmt.Sprintf("%s / %s (%s / %s)", ms(with.sum.P50), ms(with.sum.P99), ms(without.sum.P50), ms(without.sum.P99)),
		ratio(float64(with.sum.P99), float64(without.sum.P99)), "", "")
	h.table.add(scen, "with Redis at the server's defaults (--redis-timeout 50ms, --whoami-timeout 1s): whoami calls per session; failed checks", fmt.Sprintf("%.2f (%d calls); %d", defaults.per.ratio, defaults.per.calls, defaults.errs), "", "", "")
	return nil
}

// replicasExpiry: the steady load of expiry spread over the replicas
// sharing a Redis. A replica at its refresh point takes the newer JWT
// another one put there, so the sessions cost Ory what they cost one
// replica.
func (h *harness) replicasExpiry(ctx context.Context) error {
	o := h.opt
	redisURL, err := h.startRedis(ctx, "redis-replicas-expiry")
	if err != nil {
		return err
	}
	run, err := h.runExpiry(ctx, "replicas-expiry", o.replicas, redisURL)
	if err != nil {
		return err
	}
	scen := fmt.Sprintf("expiry under load, %d replicas", o.replicas)
	h.table.add(scen, "setup", fmt.Sprintf("%d serve processes sharing one redis-server, the load of expiry under load (ttl %s, --expiry-leeway %s, %.0f checks/s for %s over %d sessions) spread round-robin over them (2 connections each)",
		o.replicas, o.expiryTTL, o.expiryLeeway, o.expiryRate, o.expiryFor, o.sessions), "", "", "")
	vs, met := "n/a", "n/a: run expiry in the same run"
	if h.expiryPerTTL > 0 {
		vs, met = ratio(run.perTTL, h.expiryPerTTL), yes(run.perTTL <= 1.1*h.expiryPerTTL)
	}
	h.table.add(scen, "whoami calls per session per ttl period (vs the single replica's)", fmt.Sprintf("%.2f (%d calls, %.1f periods)", run.perTTL, run.st.Calls-run.st.Unknown, run.periods), vs,
		"<= 1.10x the single replica's of this run", met)
	h.addGapRow(scen, run.st)
	lat, errs := load.Latencies(run.calls)
	fromElsewhere := 0
	for _, c := range run.calls {
		if c.Err == nil && !c.Cached {
			fromElsewhere++
		}
	}
	sum := load.Summarize(lat)
	h.table.add(scen, "failed checks / answered without the replica's cache (cached=false: from Redis or Ory)", fmt.Sprintf("%d / %d of %d", errs, fromElsewhere, len(run.calls)), "", "0 failed", yes(errs == 0))
	h.table.add(scen, "p50 / p99 of every check (n)", fmt.Sprintf("%s / %s (%d)", ms(sum.P50), ms(sum.P99), sum.N), "", "", "")
	h.table.add(scen, "CPU used during the run: servers / fake Ory (same 2 cores)", fmt.Sprintf("%.1f s / %.1f s of %.0f s", run.srvCPU.Seconds(), run.oryCPU.Seconds(), run.runFor.Seconds()), "", "", "")
	return nil
}

// withRedis: a server with --redis-url against one without, on warm hits
// (a hit never touches Redis).
var withRedis = sides{a: "with --redis-url", b: "without --redis-url", minRps: 0.97, maxP99: 1.10}

// redisWarm: the Go driver's warm A/B rounds, a server with --redis-url
// against one without, both with every session cached.
func (h *harness) redisWarm(ctx context.Context) error {
	o := h.opt
	ory, err := h.startFakeOry("fakeory-redis-warm", 0, time.Hour, o.sessions, 0)
	if err != nil {
		return err
	}
	redisURL, err := h.startRedis(ctx, "redis-warm")
	if err != nil {
		return err
	}
	srvs, err := h.startReplicas(ctx, "server-redis-warm", ory, 1, redisURL)
	if err != nil {
		return err
	}
	plain, err := h.startServer(ctx, "server-warm-plain", ory)
	if err != nil {
		return err
	}
	// Rounds of equal time (the round size of warm is calibrated by ghz,
	// which this scenario does not run), four times as many and a quarter
	// as long as warm's: its targets are much closer to 1.00x than the
	// noise of a shared machine between two rounds seconds apart.
	rounds, round := 4*o.rounds, time.Duration(o.warmSeconds/4*float64(time.Second))
	a, b, err := h.driverRounds(ctx, "redis warm", withRedis, srvs[0].addr, plain.addr, ory, rounds, 200_000, round)
	if err != nil {
		return err
	}
	st, err := ory.stats(ctx)
	if err != nil {
		return err
	}
	scen := "warm, Redis on/off"
	h.addWarmRows(scen, fmt.Sprintf("internal/bench/load, c=%d, 2 connections, %s per round, %d rounds each, A B A B; A: serve with --redis-url (one redis-server), B: serve without, %d cached sessions each",
		o.concurrency, round, rounds, o.sessions), withRedis, a, b)
	per := perSession(st, o.sessions)
	h.table.add(scen, "whoami calls per session, warm-ups and rounds of both servers", fmt.Sprintf("%.2f", per.ratio), "", "2.00 (each server's fill; every other check a hit)", yes(per.calls == 2*int64(o.sessions)))
	return nil
}

// sharedPair starts two replicas sharing a Redis and checks every session
// of a new fake Ory once on the first: each session is then in Redis and in
// the first replica's cache, and not in the second's.
func (h *harness) sharedPair(ctx context.Context, name string) (first, second *server, ory *fakeOry, reqs []*authv3.CheckRequest, err error) {
	o := h.opt
	if ory, err = h.startFakeOry("fakeory-"+name, 0, time.Hour, o.sessions, 0); err != nil {
		return nil, nil, nil, nil, err
	}
	redisURL, err := h.startRedis(ctx, "redis-"+name)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	srvs, err := h.startReplicas(ctx, "server-"+name, ory, 2, redisURL)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	reqs = make([]*authv3.CheckRequest, len(ory.cookies))
	for i, c := range ory.cookies {
		reqs[i] = load.CheckRequest(c)
	}
	p, err := load.Dial(srvs[0].addr, 2)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer p.Close()
	calls, _ := load.Closed(ctx, p, reqs, len(reqs), o.concurrency, time.Minute, 5*time.Second)
	if _, errs := load.Latencies(calls); errs > 0 || len(calls) != len(reqs) {
		return nil, nil, nil, nil, fmt.Errorf("%s: fill: %d of %d checks failed: %v", name, errs, len(reqs), load.Errors(calls))
	}
	return srvs[0], srvs[1], ory, reqs, nil
}

// oneByOne checks every request once, one at a time, on p. A first check
// of an unknown session opens the connection (and the server's to Redis).
func oneByOne(ctx context.Context, p *load.Pool, reqs []*authv3.CheckRequest) ([]load.Call, error) {
	_, _ = p.Client(0).Check(ctx, load.CheckRequest("ory_kratos_session=warmup"))
	calls, _ := load.Closed(ctx, p, reqs, len(reqs), 1, time.Minute, 5*time.Second)
	if _, errs := load.Latencies(calls); errs > 0 || len(calls) != len(reqs) {
		return nil, fmt.Errorf("%d of %d checks failed: %v", errs, len(reqs), load.Errors(calls))
	}
	return calls, nil
}

// redisL2: sessions filled on replica A are checked for the first time on
// replica B (an L1 miss answered from Redis), then again (L1 hits).
func (h *harness) redisL2(ctx context.Context) error {
	_, b, ory, reqs, err := h.sharedPair(ctx, "redis-l2")
	if err != nil {
		return err
	}
	if err := ory.reset(ctx); err != nil {
		return err
	}
	p, err := load.Dial(b.addr, 1)
	if err != nil {
		return err
	}
	defer p.Close()
	logf("redis-l2: %d sessions filled on A, checked on B from Redis, then from B's cache", len(reqs))
	var sums [2]load.Summary
	for i := range sums {
		calls, err := oneByOne(ctx, p, reqs)
		if err != nil {
			return fmt.Errorf("redis-l2: pass %d on B: %w", i+1, err)
		}
		lat, _ := load.Latencies(calls)
		sums[i] = load.Summarize(lat)
	}
	shared, err := b.metric(ctx, sharedHitSeries)
	if err != nil {
		return err
	}
	st, err := ory.stats(ctx)
	if err != nil {
		return err
	}
	l2, l1 := sums[0], sums[1]
	scen := "L1 miss from Redis"
	h.table.add(scen, "setup", fmt.Sprintf("2 serve processes sharing one redis-server; %d sessions checked on A, then on B one check at a time: first each session once (B's cache misses, Redis has it), then each once again (B's cache hits)", len(reqs)), "", "", "")
	h.table.add(scen, "B's cache hits: p50 / p99 (n)", fmt.Sprintf("%s / %s (%d)", ms(l1.P50), ms(l1.P99), l1.N), "1.00x", "", "")
	h.table.add(scen, "B's cache misses answered from Redis: p50 / p99 (n)", fmt.Sprintf("%s / %s (%d)", ms(l2.P50), ms(l2.P99), l2.N),
		ratio(float64(l2.P50), float64(l1.P50))+" / "+ratio(float64(l2.P99), float64(l1.P99)), "report", "")
	h.table.add(scen, "B's shared hits (/metrics) / whoami calls of the sessions while B checked", fmt.Sprintf("%.0f / %d", shared, st.Calls-st.Unknown), "", fmt.Sprintf("%d / 0", len(reqs)), yes(int(shared) == len(reqs) && st.Calls == st.Unknown))
	return nil
}

// Polling replica B after an invalidation on A: one check at a time,
// pollEvery apart, for at most pollFor.
const (
	pollEvery = 100 * time.Microsecond
	pollFor   = 2 * time.Second
)

// invalidation: for every session cached on replicas A and B, an admin
// InvalidateSession on A, then checks on B until one is answered by a
// fresh whoami (cached=false): the delay from the call's return to
// enforcement on the other replica.
func (h *harness) invalidation(ctx context.Context) error {
	a, b, ory, reqs, err := h.sharedPair(ctx, "invalidation")
	if err != nil {
		return err
	}
	p, err := load.Dial(b.addr, 1)
	if err != nil {
		return err
	}
	defer p.Close()
	// B's first checks put every session in its cache and give the
	// session ids the admin API takes.
	first, err := oneByOne(ctx, p, reqs)
	if err != nil {
		return fmt.Errorf("invalidation: fill B: %w", err)
	}
	cc, err := grpc.NewClient("passthrough:///"+a.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = cc.Close() }()
	admin := adminv1.NewAdminClient(cc)
	if err := ory.reset(ctx); err != nil {
		return err
	}
	logf("invalidation: %d sessions invalidated on A, B polled every %s", len(reqs), pollEvery)
	var delays []time.Duration
	notTwo, atFirst, failed, late := 0, 0, 0, 0
	for _, c := range first {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := admin.InvalidateSession(actx, &adminv1.InvalidateSessionRequest{SessionId: c.SessionID})
		cancel()
		if err != nil {
			return fmt.Errorf("invalidation: InvalidateSession on A: %w", err)
		}
		t0 := time.Now()
		if resp.GetReplicas() != 2 {
			notTwo++
		}
		for n := 0; ; n++ {
			poll := load.Once(ctx, p.Client(0), reqs[c.Session], t0, 5*time.Second)
			if poll.Err != nil {
				failed++
				break
			}
			if !poll.Cached {
				delays = append(delays, poll.Start)
				if n == 0 {
					atFirst++
				}
				break
			}
			if poll.Start > pollFor {
				late++
				break
			}
			time.Sleep(pollEvery)
		}
	}
	st, err := ory.stats(ctx)
	if err != nil {
		return err
	}
	d := load.Summarize(delays)
	scen := "invalidation across replicas"
	h.table.add(scen, "setup", fmt.Sprintf("2 serve processes sharing one redis-server, %d sessions cached on both; per session: InvalidateSession on A's admin API, then checks on B one at a time %s apart (at most %s) until one is answered cached=false; the delay runs from the call's return to the start of that check",
		len(reqs), pollEvery, pollFor), "", "", "")
	h.table.add(scen, "delay to enforcement on B: p50 / p99 / max (n)", fmt.Sprintf("%s / %s / %s (%d)", ms(d.P50), ms(d.P99), ms(d.Max), d.N), "", "report", "")
	h.table.add(scen, "enforced at B's first check after the return", fmt.Sprintf("%d of %d", atFirst, len(reqs)), "", "", "")
	h.table.add(scen, fmt.Sprintf("not enforced within %s / failed checks / answers with replicas other than 2", pollFor), fmt.Sprintf("%d / %d / %d", late, failed, notTwo), "", "0 / 0 / 0", yes(late == 0 && failed == 0 && notTwo == 0))
	h.table.add(scen, "whoami calls of the sessions during the invalidations", fmt.Sprintf("%d", st.Calls-st.Unknown), "", fmt.Sprintf("%d: one fresh whoami per invalidation", len(reqs)), yes(st.Calls-st.Unknown == int64(len(reqs))))
	return nil
}
