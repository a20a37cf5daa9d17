package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
)

// nearWindow is how close to an expiry or refresh point a check counts as
// "near expiry".
const nearWindow = time.Second

// expiry: a short template ttl and steady traffic for several ttl periods.
// Refresh-ahead should hide every expiry: no check waits on Ory, Ory gets
// one call per session per refresh, and the p99 near the refresh and expiry
// points is that of the rest of the run.
func (h *harness) expiry(ctx context.Context) error {
	o := h.opt
	run, err := h.runExpiry(ctx, "expiry", 1, "")
	if err != nil {
		return err
	}
	h.expiryPerTTL = run.perTTL
	calls, t0, st := run.calls, run.t0, run.st

	// The points of each session: its whoami calls (refreshes) and the hard
	// expiry (exp - leeway) of every JWT it was served.
	points := make([][]time.Duration, o.sessions)
	for s, ts := range st.Times {
		for _, t := range ts {
			points[s] = append(points[s], time.Duration(t-t0.UnixNano()))
		}
	}
	seenExp := make([]map[int64]bool, o.sessions)
	for _, c := range calls {
		if c.Exp == 0 {
			continue
		}
		if seenExp[c.Session] == nil {
			seenExp[c.Session] = map[int64]bool{}
		}
		if !seenExp[c.Session][c.Exp] {
			seenExp[c.Session][c.Exp] = true
			hard := time.Unix(c.Exp, 0).Add(-o.expiryLeeway)
			points[c.Session] = append(points[c.Session], hard.Sub(t0))
		}
	}
	for _, ps := range points {
		slices.Sort(ps)
	}
	near := func(c load.Call) bool {
		ps := points[c.Session]
		i, _ := slices.BinarySearch(ps, c.Start-nearWindow)
		return i < len(ps) && ps[i] <= c.Start+nearWindow
	}
	var nearLat, restLat []time.Duration
	errs, waited := 0, 0
	buckets := map[int][]time.Duration{}
	for _, c := range calls {
		if c.Err != nil {
			errs++
			continue
		}
		if !c.Cached {
			waited++
		}
		if near(c) {
			nearLat = append(nearLat, c.Latency)
		} else {
			restLat = append(restLat, c.Latency)
		}
		sec := int(c.Start / time.Second)
		buckets[sec] = append(buckets[sec], c.Latency)
	}
	// p99 of every second of the run: a spike at the (synchronised) refresh
	// points would show as one second far above the others.
	var p99s []float64
	worstSec, worst := 0, time.Duration(0)
	for sec, ls := range buckets {
		v := load.Percentile(ls, 99)
		p99s = append(p99s, float64(v))
		if v > worst {
			worstSec, worst = sec, v
		}
	}
	// The seconds in which the refreshes of many sessions fell together
	// (all sessions were filled at once): the p99 of the checks in them
	// against that of the other seconds.
	callsPerSec := map[int]int{}
	for _, ts := range st.Times {
		for _, t := range ts {
			callsPerSec[int(time.Duration(t-t0.UnixNano())/time.Second)]++
		}
	}
	var stormLat, quietLat []time.Duration
	var timeline []string
	for sec := 0; sec <= int(calls[len(calls)-1].Start/time.Second); sec++ {
		ls := buckets[sec]
		if callsPerSec[sec] >= o.sessions/20 {
			stormLat = append(stormLat, ls...)
		} else {
			quietLat = append(quietLat, ls...)
		}
		timeline = append(timeline, fmt.Sprintf("%d:%s/%d", sec, ms(load.Percentile(ls, 99)), callsPerSec[sec]))
	}
	logf("expiry: per second p99/whoami calls: %s", strings.Join(timeline, " "))
	nearS, restS := load.Summarize(nearLat), load.Summarize(restLat)
	// The lower bound of calls per ttl: an entry is served only until
	// exp - leeway, so even a refresh at the last moment costs ttl/(ttl-leeway).
	floor := o.expiryTTL.Seconds() / (o.expiryTTL - o.expiryLeeway).Seconds()
	// Refresh-ahead refreshes at 75% of the lifetime (this leeway is under a
	// quarter of the ttl), so steady traffic costs ttl/(0.75 ttl) = 1.33,
	// plus the one early first refresh per session of the refresh jitter.
	scen := "expiry under load"
	h.table.add(scen, "setup", fmt.Sprintf("template ttl %s, --expiry-leeway %s (the default 5s is over a quarter of a 10s ttl), %.0f checks/s for %s over %d sessions, Ory latency %s, all sessions filled at once so their refreshes coincide",
		o.expiryTTL, o.expiryLeeway, o.expiryRate, o.expiryFor, o.sessions, o.oryLatency), "", "", "")
	h.table.add(scen, "whoami calls per session per ttl period", fmt.Sprintf("%.2f (%d calls, %.1f periods)", run.perTTL, st.Calls-st.Unknown, run.periods), "",
		fmt.Sprintf("<= 1 (literal): not reachable while no JWT is served past exp - leeway, the floor is ttl/(ttl-leeway) = %.2f; refresh at 75%% gives 1.33", floor), yes(run.perTTL <= 1.0))
	h.addGapRow(scen, st)
	h.table.add(scen, "checks that waited on Ory (cached=false) / failed", fmt.Sprintf("%d / %d of %d", waited, errs, len(calls)), "", "0 / 0", yes(waited == 0 && errs == 0))
	h.table.add(scen, fmt.Sprintf("p50 / p99 within ±%s of a refresh or expiry (n)", nearWindow), fmt.Sprintf("%s / %s (%d)", ms(nearS.P50), ms(nearS.P99), nearS.N),
		ratio(float64(nearS.P99), float64(restS.P99)), "p99 near <= 1.25x rest", yes(float64(nearS.P99) <= 1.25*float64(restS.P99)))
	h.table.add(scen, "p50 / p99 the rest of the run (n)", fmt.Sprintf("%s / %s (%d)", ms(restS.P50), ms(restS.P99), restS.N), "1.00x", "", "")
	stormS, quietS := load.Summarize(stormLat), load.Summarize(quietLat)
	h.table.add(scen, fmt.Sprintf("p50 / p99 in the seconds with >= %d whoami calls (the refresh waves) (n)", o.sessions/20), fmt.Sprintf("%s / %s (%d)", ms(stormS.P50), ms(stormS.P99), stormS.N),
		ratio(float64(stormS.P99), float64(quietS.P99)), "p99 <= 1.25x other seconds", yes(float64(stormS.P99) <= 1.25*float64(quietS.P99)))
	h.table.add(scen, "p50 / p99 in the other seconds (n)", fmt.Sprintf("%s / %s (%d)", ms(quietS.P50), ms(quietS.P99), quietS.N), "1.00x", "", "")
	h.table.add(scen, "CPU used during the run: server / fake Ory (same 2 cores)", fmt.Sprintf("%.1f s / %.1f s of %.0f s", run.srvCPU.Seconds(), run.oryCPU.Seconds(), run.runFor.Seconds()), "", "", "")
	h.table.add(scen, "worst one-second p99 vs median one-second p99", fmt.Sprintf("%s at second %d vs %s", ms(worst), worstSec, ms(time.Duration(load.Median(p99s)))),
		ratio(float64(worst), load.Median(p99s)), "", "")
	return nil
}

// expiryRun is one run of the steady expiry load: its checks, the fake
// Ory's calls and what they cost.
type expiryRun struct {
	calls          []load.Call
	t0             time.Time
	st             bench.FakeOryStats
	srvCPU, oryCPU time.Duration // srvCPU: of every replica
	runFor         time.Duration
	// periods is the run's length in ttl periods, perTTL the whoami calls
	// per session per period.
	periods, perTTL float64
}

// runExpiry runs the steady load of the expiry scenario (ttl, leeway,
// rate, duration of the options) over replicas servers, sharing the Redis
// at redisURL unless it is empty.
func (h *harness) runExpiry(ctx context.Context, name string, replicas int, redisURL string) (expiryRun, error) {
	o := h.opt
	var run expiryRun
	// Ory runs on other machines in production; here it shares the cores
	// with the server and the load, and the CPU of its signing in the
	// refresh seconds (ES256, most of its CPU) would be measured as the
	// server's latency near expiry. At a high nice level it takes the cores
	// when the others leave them idle. (Not in the cold start: there the
	// cores are saturated and Ory's own latency is part of the scenario.)
	ory, err := h.startFakeOry("fakeory-"+name, o.oryLatency, o.expiryTTL, o.sessions, o.oryNice)
	if err != nil {
		return run, err
	}
	srvs, err := h.startReplicas(ctx, "server-"+name, ory, replicas, redisURL, "--expiry-leeway", o.expiryLeeway.String())
	if err != nil {
		return run, err
	}
	reqs := make([]*authv3.CheckRequest, len(ory.cookies))
	for i, c := range ory.cookies {
		reqs[i] = load.CheckRequest(c)
	}
	p, err := load.DialAll(addrs(srvs), 2)
	if err != nil {
		return run, err
	}
	defer p.Close()
	// Fill: one check per session, all at once; the sessions whose check
	// failed (the server may shed a burst of whoami calls, see
	// --ory-max-inflight) are tried again, a bounded number of times.
	pending := reqs
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == 10 {
			return run, fmt.Errorf("fill: %d sessions still failing after %d attempts", len(pending), attempt)
		}
		fill := load.Burst(ctx, p, pending, func(i int) int { return i }, 30*time.Second)
		var failed []*authv3.CheckRequest
		for i, c := range fill {
			if c.Err != nil {
				failed = append(failed, pending[i])
			}
		}
		pending = failed
	}
	if err := ory.reset(ctx); err != nil {
		return run, err
	}
	logf("%s: %d replicas, ttl %s, leeway %s, %.0f checks/s for %s over %d sessions", name, replicas, o.expiryTTL, o.expiryLeeway, o.expiryRate, o.expiryFor, o.sessions)
	cctx, cancel := context.WithTimeout(ctx, o.expiryFor+30*time.Second)
	defer cancel()
	srvCPU, oryCPU := cpuTime(srvs), ory.proc.cpuTime()
	run.calls, run.t0, err = load.Paced(cctx, p, reqs, o.expiryRate, o.expiryFor, 64, 5*time.Second)
	run.srvCPU, run.oryCPU = cpuTime(srvs)-srvCPU, ory.proc.cpuTime()-oryCPU
	if err != nil {
		return run, err
	}
	if run.st, err = ory.stats(ctx); err != nil {
		return run, err
	}
	run.runFor = run.calls[len(run.calls)-1].Start
	run.periods = run.runFor.Seconds() / o.expiryTTL.Seconds()
	run.perTTL = float64(run.st.Calls-run.st.Unknown) / float64(o.sessions) / run.periods
	return run, nil
}

// addGapRow reports the gaps between the whoami calls of each session: one
// call per refresh leaves none near 0.
func (h *harness) addGapRow(scen string, st bench.FakeOryStats) {
	var gaps []float64
	minGap := time.Duration(-1)
	for _, ts := range st.Times {
		for i := 1; i < len(ts); i++ {
			g := time.Duration(ts[i] - ts[i-1])
			gaps = append(gaps, float64(g))
			if minGap < 0 || g < minGap {
				minGap = g
			}
		}
	}
	h.table.add(scen, "refresh interval per session: median / shortest gap between calls", fmt.Sprintf("%.2f s / %.2f s", load.Median(gaps)/1e9, minGap.Seconds()), "",
		"one call per refresh: no gap near 0", yes(minGap > h.opt.expiryTTL/4))
}
