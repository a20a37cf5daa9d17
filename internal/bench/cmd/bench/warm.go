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
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/noop"
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

// warmCase is one warm comparison of the real server with the baseline:
// its rows are labelled label+" (ghz)" and label+" (Go driver)".
type warmCase struct {
	label, name string
	sides       sides
	// oryArgs and serverArgs are extra flags of the fake Ory and the
	// server.
	oryArgs, serverArgs []string
	// prepare, when set, runs after the fill (the fake Ory's counters not
	// yet reset): it checks the real server's answers and returns the
	// identity part the baseline's answer must have.
	prepare func(ctx context.Context, realAddr string, ory *fakeOry) (noop.Identity, error)
	// driverRounds and driverRound, when set, are the Go driver's rounds
	// per server and the length of each; warm's otherwise (--rounds, each
	// up to twice ghz's checks or 30s).
	driverRounds int
	driverRound  time.Duration
}

func (h *harness) warm(ctx context.Context) error {
	return h.runWarm(ctx, warmCase{label: "warm", name: "warm", sides: vsBaseline})
}

// runWarm fills the real server's cache with ghz, starts the baseline,
// and runs the A/B rounds with ghz, then with the Go driver.
func (h *harness) runWarm(ctx context.Context, wc warmCase) error {
	o := h.opt
	ghzScen, driverScen := wc.label+" (ghz)", wc.label+" (Go driver)"
	ory, err := h.startFakeOry("fakeory-"+wc.name, 0, time.Hour, o.sessions, 0, wc.oryArgs...)
	if err != nil {
		return err
	}
	protoset := filepath.Join(h.dir, "authz.protoset")
	if err := load.WriteProtoset(protoset); err != nil {
		return err
	}
	data := filepath.Join(h.dir, wc.name+"-data.json")
	if err := load.WriteGhzData(data, ory.cookies); err != nil {
		return err
	}
	srv, err := h.startServer(ctx, "server-"+wc.name, ory, wc.serverArgs...)
	if err != nil {
		return err
	}
	realAddr := srv.addr

	// Fill the cache through ghz itself: 2 x sessions checks on a cold
	// cache must cost exactly one whoami per session. That also proves ghz
	// cycles through every element of the data file.
	logf("%s: filling the cache with ghz (%d checks over %d sessions)", wc.name, 2*o.sessions, o.sessions)
	if _, err := h.ghz(ctx, "ghz-"+wc.name+"-fill", realAddr, protoset, data, 2*o.sessions, o.concurrency); err != nil {
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
	h.table.add(ghzScen, fmt.Sprintf("fill: whoami calls for %d ghz checks on a cold cache (distinct sessions)", 2*o.sessions), fmt.Sprintf("%d (%d)", st.Calls, distinct), "",
		fmt.Sprintf("%d, one per session: ghz cycles through the data file", o.sessions), yes(st.Calls == int64(o.sessions) && distinct == o.sessions))
	var id noop.Identity
	if wc.prepare != nil {
		if id, err = wc.prepare(ctx, realAddr, ory); err != nil {
			return err
		}
	}
	if err := ory.reset(ctx); err != nil {
		return err
	}
	noopAddr, _, err := h.startNoop(ctx, "noop-"+wc.name, ory.jwtBytes, id)
	if err != nil {
		return err
	}

	// Warm both up (connections, heap growth) and calibrate the round size
	// on the baseline.
	if _, err := h.ghz(ctx, "ghz-"+wc.name+"-warmup-real", realAddr, protoset, data, 10000, o.concurrency); err != nil {
		return err
	}
	cal, err := h.ghz(ctx, "ghz-"+wc.name+"-warmup-noop", noopAddr, protoset, data, 10000, o.concurrency)
	if err != nil {
		return err
	}
	n := min(max(int(cal.Rps*o.warmSeconds)/1000*1000, 20000), 200000)
	logf("%s: %d checks per round (baseline warm-up: %.0f rps)", wc.name, n, cal.Rps)

	var real, base []measurement
	for r := range o.rounds {
		for _, s := range []struct {
			name, addr string
			into       *[]measurement
		}{{"real", realAddr, &real}, {"noop", noopAddr, &base}} {
			rep, err := h.ghz(ctx, fmt.Sprintf("ghz-%s-round%d-%s", wc.name, r+1, s.name), s.addr, protoset, data, n, o.concurrency)
			if err != nil {
				return err
			}
			m := measurement{rps: rep.Rps, p50: rep.pct(50), p99: rep.pct(99), n: int(rep.Count), errors: rep.errors()}
			logf("%s: round %d %-4s %8.0f rps  p50 %s  p99 %s", wc.name, r+1, s.name, m.rps, ms(m.p50), ms(m.p99))
			*s.into = append(*s.into, m)
		}
	}
	st, err = ory.stats(ctx)
	if err != nil {
		return err
	}
	h.addWarmRows(ghzScen, fmt.Sprintf("%s, c=%d, 2 connections, %d checks per round over %d sessions, %d rounds each, A B A B", strings.TrimPrefix(o.ghz, "github.com/bojand/ghz/cmd/"), o.concurrency, n, o.sessions, o.rounds), wc.sides, real, base)
	h.table.add(ghzScen, "whoami calls during the rounds", strconv.FormatInt(st.Calls, 10), "", "0 (all hits)", yes(st.Calls == 0))

	if !o.driverCheck {
		return nil
	}
	// The same A/B rounds with the in-repo Go driver: a client much
	// cheaper than ghz's dynamic messages, so more of the two cores go to
	// the server and its own cost shows more.
	rounds, total, round := o.rounds, 2*n, 30*time.Second
	setup := fmt.Sprintf("internal/bench/load, c=%d, 2 connections, up to %d checks or 30s per round, %d rounds each, A B A B", o.concurrency, total, rounds)
	if wc.driverRounds > 0 {
		rounds, total, round = wc.driverRounds, 1_000_000, wc.driverRound
		setup = fmt.Sprintf("internal/bench/load, c=%d, 2 connections, %s per round, %d rounds each, A B A B", o.concurrency, round, rounds)
	}
	if err := ory.reset(ctx); err != nil {
		return err
	}
	real, base, err = h.driverRounds(ctx, wc.name+" driver", wc.sides, realAddr, noopAddr, ory, rounds, total, round)
	if err != nil {
		return err
	}
	if st, err = ory.stats(ctx); err != nil {
		return err
	}
	h.addWarmRows(driverScen, setup, wc.sides, real, base)
	h.table.add(driverScen, "whoami calls during the warm-ups and rounds", strconv.FormatInt(st.Calls, 10), "", "0 (all hits)", yes(st.Calls == 0))
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
