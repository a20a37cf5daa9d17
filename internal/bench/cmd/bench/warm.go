package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
)

// ghzReport is the part of ghz's JSON report the harness reads.
type ghzReport struct {
	Count               uint64         `json:"count"`
	Total               time.Duration  `json:"total"`
	Rps                 float64        `json:"rps"`
	ErrorDist           map[string]int `json:"errorDistribution"`
	StatusCodeDist      map[string]int `json:"statusCodeDistribution"`
	LatencyDistribution []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

func (r ghzReport) pct(p int) time.Duration {
	for _, l := range r.LatencyDistribution {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return 0
}

func (r ghzReport) errors() int {
	n := 0
	for _, c := range r.ErrorDist {
		n += c
	}
	return n
}

// measurement is one round of one server.
type measurement struct {
	rps      float64
	p50, p99 time.Duration
	n        int
	errors   int
}

// ghz runs the pinned ghz against addr: n checks at concurrency c cycling
// through the requests of the data file, over two connections (as Envoy with
// two workers would hold). A round is bounded by n and by a timeout.
func (h *harness) ghz(ctx context.Context, name, addr, protoset, data string, n, c int) (ghzReport, error) {
	out := filepath.Join(h.dir, name+".json")
	p, err := h.procs.start(name, nil, "go", "run", h.opt.ghz,
		"--insecure", "--protoset", protoset, "--call", load.CheckMethod, "--data-file", data,
		"-c", strconv.Itoa(c), "-n", strconv.Itoa(n), "--connections", "2", "--timeout", "5s",
		"--format", "json", "-o", out, addr)
	if err != nil {
		return ghzReport{}, err
	}
	limit := 90 * time.Second
	select {
	case <-p.Exited():
	case <-time.After(limit):
		p.stop()
		return ghzReport{}, fmt.Errorf("%s: ghz still running after %v", name, limit)
	case <-ctx.Done():
		p.stop()
		return ghzReport{}, ctx.Err()
	}
	if p.Err() != nil {
		return ghzReport{}, fmt.Errorf("%s: ghz: %w (see %s.log)", name, p.Err(), name)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return ghzReport{}, err
	}
	var r ghzReport
	if err := json.Unmarshal(b, &r); err != nil {
		return ghzReport{}, fmt.Errorf("%s: ghz report: %w", name, err)
	}
	if n := r.errors(); n > 0 {
		return r, fmt.Errorf("%s: %d errors: %v", name, n, r.ErrorDist)
	}
	return r, nil
}

func (h *harness) warm(ctx context.Context) error {
	o := h.opt
	ory, err := h.startFakeOry("fakeory-warm", 0, time.Hour, o.sessions, 0)
	if err != nil {
		return err
	}
	protoset := filepath.Join(h.dir, "authz.protoset")
	if err := load.WriteProtoset(protoset); err != nil {
		return err
	}
	data := filepath.Join(h.dir, "warm-data.json")
	if err := load.WriteGhzData(data, ory.cookies); err != nil {
		return err
	}
	srv, noopAddr, err := h.startPair(ctx, "server-warm", ory)
	if err != nil {
		return err
	}
	realAddr := srv.addr

	// Fill the cache through ghz itself: 2 x sessions checks on a cold
	// cache must cost exactly one whoami per session. That also proves ghz
	// cycles through every element of the data file.
	logf("warm: filling the cache with ghz (%d checks over %d sessions)", 2*o.sessions, o.sessions)
	if _, err := h.ghz(ctx, "ghz-fill", realAddr, protoset, data, 2*o.sessions, o.concurrency); err != nil {
		return err
	}
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
	h.table.add("warm (ghz)", fmt.Sprintf("fill: whoami calls for %d ghz checks on a cold cache (distinct sessions)", 2*o.sessions), fmt.Sprintf("%d (%d)", st.Calls, distinct), "",
		fmt.Sprintf("%d, one per session: ghz cycles through the data file", o.sessions), yes(st.Calls == int64(o.sessions) && distinct == o.sessions))
	if err := ory.reset(ctx); err != nil {
		return err
	}

	// Warm both up (connections, heap growth) and calibrate the round size
	// on the baseline.
	if _, err := h.ghz(ctx, "ghz-warmup-real", realAddr, protoset, data, 10000, o.concurrency); err != nil {
		return err
	}
	cal, err := h.ghz(ctx, "ghz-warmup-noop", noopAddr, protoset, data, 10000, o.concurrency)
	if err != nil {
		return err
	}
	n := min(max(int(cal.Rps*o.warmSeconds)/1000*1000, 20000), 200000)
	logf("warm: %d checks per round (baseline warm-up: %.0f rps)", n, cal.Rps)

	var real, base []measurement
	for r := range o.rounds {
		for _, s := range []struct {
			name, addr string
			into       *[]measurement
		}{{"real", realAddr, &real}, {"noop", noopAddr, &base}} {
			rep, err := h.ghz(ctx, fmt.Sprintf("ghz-round%d-%s", r+1, s.name), s.addr, protoset, data, n, o.concurrency)
			if err != nil {
				return err
			}
			m := measurement{rps: rep.Rps, p50: rep.pct(50), p99: rep.pct(99), n: int(rep.Count), errors: rep.errors()}
			logf("warm: round %d %-4s %8.0f rps  p50 %s  p99 %s", r+1, s.name, m.rps, ms(m.p50), ms(m.p99))
			*s.into = append(*s.into, m)
		}
	}
	st, err = ory.stats(ctx)
	if err != nil {
		return err
	}
	h.addWarmRows("warm (ghz)", fmt.Sprintf("%s, c=%d, 2 connections, %d checks per round over %d sessions, %d rounds each, A B A B", strings.TrimPrefix(o.ghz, "github.com/bojand/ghz/cmd/"), o.concurrency, n, o.sessions, o.rounds), vsBaseline, real, base)
	h.table.add("warm (ghz)", "whoami calls during the rounds", strconv.FormatInt(st.Calls, 10), "", "0 (all hits)", yes(st.Calls == 0))

	if o.driverCheck {
		if err := h.warmDriver(ctx, realAddr, noopAddr, ory, n); err != nil {
			return err
		}
	}
	return nil
}

// warmDriver repeats the A/B rounds with the in-repo Go driver: a client
// much cheaper than ghz's dynamic messages, so more of the two cores go to
// the server and its own cost shows more.
func (h *harness) warmDriver(ctx context.Context, realAddr, noopAddr string, ory *fakeOry, n int) error {
	o := h.opt
	n2 := n * 2
	real, base, err := h.driverRounds(ctx, "warm driver", vsBaseline, realAddr, noopAddr, ory, o.rounds, n2, 30*time.Second)
	if err != nil {
		return err
	}
	h.addWarmRows("warm (Go driver)", fmt.Sprintf("internal/bench/load, c=%d, 2 connections, up to %d checks or 30s per round, %d rounds each, A B A B", o.concurrency, n2, o.rounds), vsBaseline, real, base)
	return nil
}

// sides names the two servers of an A/B comparison, as the table calls
// them, and the targets of A against B: A's rps at least minRps times B's,
// its p99 at most maxP99 times B's.
type sides struct {
	a, b           string
	minRps, maxP99 float64
}

// vsBaseline: the real server against the no-op baseline.
var vsBaseline = sides{a: "ory-ext-authz", b: "baseline (no-op)", minRps: 0.90, maxP99: 1.25}

// driverRounds warms up addrA and addrB with 5000 checks of ory's sessions
// each, then runs rounds rounds on each in turn (A B A B) with the Go
// driver at o.concurrency over 2 connections; a round ends after total
// checks or maxTime.
func (h *harness) driverRounds(ctx context.Context, label string, sd sides, addrA, addrB string, ory *fakeOry, rounds, total int, maxTime time.Duration) (a, b []measurement, err error) {
	o := h.opt
	reqs := make([]*authv3.CheckRequest, len(ory.cookies))
	for i, c := range ory.cookies {
		reqs[i] = load.CheckRequest(c)
	}
	sideList := []struct {
		name string
		pool *load.Pool
		into *[]measurement
	}{{name: sd.a, into: &a}, {name: sd.b, into: &b}}
	for i, addr := range []string{addrA, addrB} {
		p, err := load.Dial(addr, 2)
		if err != nil {
			return nil, nil, err
		}
		defer p.Close()
		sideList[i].pool = p
		// warm-up
		load.Closed(ctx, p, reqs, 5000, o.concurrency, 30*time.Second, 5*time.Second)
	}
	for r := range rounds {
		for _, s := range sideList {
			calls, elapsed := load.Closed(ctx, s.pool, reqs, total, o.concurrency, maxTime, 5*time.Second)
			lat, errs := load.Latencies(calls)
			if errs > 0 {
				return nil, nil, fmt.Errorf("%s round %d %s: %d errors: %v", label, r+1, s.name, errs, load.Errors(calls))
			}
			sum := load.Summarize(lat)
			m := measurement{rps: float64(len(calls)) / elapsed.Seconds(), p50: sum.P50, p99: sum.P99, n: len(calls)}
			logf("%s: round %d %-16s %8.0f rps  p50 %s  p99 %s", label, r+1, s.name, m.rps, ms(m.p50), ms(m.p99))
			*s.into = append(*s.into, m)
		}
	}
	return a, b, nil
}

// addWarmRows reports the medians over the rounds and, as the ratio of A
// to B, the median of the per-round ratios: round i pairs A's run with B's
// run right after it, so slow drifts of a shared, noisy machine cancel out
// of each ratio.
func (h *harness) addWarmRows(scenario, setup string, sd sides, a, b []measurement) {
	med := func(f func(m measurement) float64, ms []measurement) float64 {
		xs := make([]float64, len(ms))
		for i, m := range ms {
			xs[i] = f(m)
		}
		return load.Median(xs)
	}
	paired := func(f func(m measurement) float64) float64 {
		xs := make([]float64, len(a))
		for i := range a {
			xs[i] = f(a[i]) / f(b[i])
		}
		return load.Median(xs)
	}
	rps := func(m measurement) float64 { return m.rps }
	p50 := func(m measurement) float64 { return float64(m.p50) }
	p99 := func(m measurement) float64 { return float64(m.p99) }
	h.table.add(scenario, "setup", setup, "", "", "")
	h.table.add(scenario, sd.b+" rps / p50 / p99, median of rounds",
		fmt.Sprintf("%.0f / %s / %s", med(rps, b), ms(time.Duration(med(p50, b))), ms(time.Duration(med(p99, b)))), "1.00x", "", "")
	rr, r50, r99 := paired(rps), paired(p50), paired(p99)
	h.table.add(scenario, sd.a+" throughput (rps), median of rounds", fmt.Sprintf("%.0f", med(rps, a)), fmt.Sprintf("%.2fx", rr), fmt.Sprintf(">= %.2fx", sd.minRps), yes(rr >= sd.minRps))
	h.table.add(scenario, sd.a+" p50, median of rounds", ms(time.Duration(med(p50, a))), fmt.Sprintf("%.2fx", r50), "", "")
	h.table.add(scenario, sd.a+" p99, median of rounds", ms(time.Duration(med(p99, a))), fmt.Sprintf("%.2fx", r99), fmt.Sprintf("<= %.2fx", sd.maxP99), yes(r99 <= sd.maxP99))
	var per []string
	for i := range a {
		per = append(per, fmt.Sprintf("%s/%s", ratio(a[i].rps, b[i].rps), ratio(float64(a[i].p99), float64(b[i].p99))))
	}
	h.table.add(scenario, "each round: rps ratio / p99 ratio", strings.Join(per, ", "), "", "", "")
}
