// Command bench is the orchestrator behind `make bench`. It builds the
// baseline (internal/bench/cmd/noop), the fake Ory (internal/bench/cmd/fakeory)
// and the memory probe (internal/bench/cmd/memory), starts them and the real
// server (--server, bin/ory-ext-authz) as child processes on free 127.0.0.1
// ports, runs every scenario, and prints one markdown table to stdout.
// Progress goes to stderr; the children's logs stay in the work dir.
//
// Scenarios (each bounded in count and in time):
//
//   - warm: 1000 cached sessions, ghz at concurrency 50, the real server and
//     the baseline alternately (A B A B ...), rps, p50 and p99 as ratios;
//   - warm-routes: warm with --routes, a table of 200 rules whose last (the
//     traffic's) has an `authorize` expression and two identity headers,
//     against a baseline answering with the same headers;
//   - warm-http: the HTTP forward-auth door (--forward-auth-addr, /auth
//     with Traefik's headers) against a no-op net/http handler answering
//     with the same headers, the in-repo HTTP driver, A B A B: rps and p99
//     ratios, failed checks;
//   - cold: 1000 sessions x 20 concurrent checks at once on a cold cache, Ory
//     answering in 5ms: Ory calls per session and p99;
//   - expiry: JWT ttl 10s, --expiry-leeway 2s, steady load for 45s: Ory calls
//     per session per ttl, p99 near each expiry/refresh against the rest;
//   - memory: 100k cached sessions, heap and RSS per session beyond the JWT,
//     and the --cache-max-bytes bound;
//   - go: the Go benchmarks of the hit path (allocs/op);
//
// and with many replicas: serve processes sharing one redis-server per
// scenario (started here on a free port of 127.0.0.1, persistence off):
//
//   - replicas-cold: the cold storm spread over --replicas servers, with
//     Redis and without: whoami calls per session;
//   - replicas-expiry: the expiry load spread over --replicas servers:
//     calls per session per ttl against the single replica's of the same
//     run (expiry);
//   - redis-warm: warm A/B rounds (Go driver), a server with --redis-url
//     against one without: rps and p99 ratios;
//   - redis-l2: sessions filled on replica A, checked on B: an L1 miss
//     served from Redis against an L1 hit, p50 and p99;
//   - invalidation: an admin invalidation on A, B polled until it enforces
//     it: p50, p99 and max of the delay over one per session.
//
// Nothing here asserts a wall-clock number: every latency and throughput
// figure is reported next to the baseline measured in the same run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// defaultGhz is the pinned load generator, run with go run.
const defaultGhz = "github.com/bojand/ghz/cmd/ghz@v0.120.0"

type options struct {
	server       string
	ghz          string
	rounds       int
	warmSeconds  float64
	sessions     int
	concurrency  int
	coldPer      int
	oryLatency   time.Duration
	expiryTTL    time.Duration
	expiryLeeway time.Duration
	expiryFor    time.Duration
	expiryRate   float64
	memSessions  int
	memBound     int64
	only         string
	oryNice      int
	keep         bool
	driverCheck  bool
	replicas     int
}

type bins struct{ noop, fakeory, memory string }

type harness struct {
	opt    options
	dir    string
	server string
	bins   bins
	procs  *procs
	table  *table
	// secretFile is the Redis tier's secret of every replica (startRedis).
	secretFile string
	// expiryPerTTL is the single replica's whoami calls per session per
	// ttl of this run (expiry), which replicas-expiry is held to.
	expiryPerTTL float64
}

func main() {
	var o options
	flag.StringVar(&o.server, "server", "bin/ory-ext-authz", "the server binary (make build)")
	flag.StringVar(&o.ghz, "ghz", defaultGhz, "ghz as module@version, run with go run")
	flag.IntVar(&o.rounds, "rounds", 5, "warm, warm-routes and warm-http: rounds per server, alternating A B A B (at least 2)")
	flag.Float64Var(&o.warmSeconds, "warm-seconds", 4, "warm and warm-routes: target length of one round (warm-http: 4 x --rounds rounds of a quarter of it); its request count is calibrated on the baseline and bounded to [20000, 200000]")
	flag.IntVar(&o.sessions, "sessions", 1000, "distinct sessions of the warm, cold and expiry scenarios")
	flag.IntVar(&o.concurrency, "concurrency", 50, "warm, warm-routes and warm-http: ghz and Go driver concurrency")
	flag.IntVar(&o.coldPer, "cold-per-session", 20, "cold: concurrent checks per session")
	flag.DurationVar(&o.oryLatency, "ory-latency", 5*time.Millisecond, "cold and expiry: latency of every whoami call")
	flag.DurationVar(&o.expiryTTL, "expiry-ttl", 10*time.Second, "expiry: the template ttl (fake Ory's JWT lifetime)")
	flag.DurationVar(&o.expiryLeeway, "expiry-leeway", 2*time.Second, "expiry: the server's --expiry-leeway (below a quarter of the ttl, so refresh-ahead runs at 75% of the lifetime)")
	flag.DurationVar(&o.expiryFor, "expiry-duration", 45*time.Second, "expiry: how long the steady load runs")
	flag.Float64Var(&o.expiryRate, "expiry-rate", 2000, "expiry: checks per second of the steady load")
	flag.IntVar(&o.oryNice, "ory-nice", 19, "expiry: run the fake Ory at this nice level (0: as the others), so that its signing takes the cores only when the server and the load leave them idle")
	flag.IntVar(&o.memSessions, "memory-sessions", 100_000, "memory: sessions cached")
	flag.Int64Var(&o.memBound, "memory-bound", 8<<20, "memory: the small --cache-max-bytes whose bound is shown")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios to run (warm,warm-routes,warm-http,cold,expiry,memory,go,replicas-cold,replicas-expiry,redis-warm,redis-l2,invalidation); empty runs all. replicas-expiry's target compares with expiry's figure of the same run")
	flag.IntVar(&o.replicas, "replicas", 3, "replicas-cold and replicas-expiry: serve processes sharing one Redis")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (logs, ghz reports) instead of removing it")
	flag.BoolVar(&o.driverCheck, "driver-check", true, "warm and warm-routes: also run the A/B rounds with the in-repo Go driver, as a cross-check of ghz")
	flag.Parse()
	if o.rounds < 2 {
		fmt.Fprintln(os.Stderr, "bench: --rounds must be at least 2")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	// The whole run is bounded: every scenario also bounds itself.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	start := time.Now()
	dir, err := os.MkdirTemp("", "ory-ext-authz-bench-")
	if err != nil {
		return err
	}
	h := &harness{opt: o, dir: dir, procs: &procs{dir: dir}, table: &table{}}
	defer func() {
		h.procs.stopAll()
		if o.keep {
			logf("work dir kept: %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	}()
	if h.server, err = filepath.Abs(o.server); err != nil {
		return err
	}
	if _, err := os.Stat(h.server); err != nil {
		return fmt.Errorf("--server: %w (run make build)", err)
	}
	if err := h.build(ctx); err != nil {
		return err
	}
	h.machine()
	for _, sc := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"warm", h.warm},
		{"warm-routes", h.warmRoutes},
		{"warm-http", h.warmHTTP},
		{"cold", h.cold},
		{"expiry", h.expiry},
		{"memory", h.memory},
		{"go", h.goBench},
		{"replicas-cold", h.replicasCold},
		{"replicas-expiry", h.replicasExpiry},
		{"redis-warm", h.redisWarm},
		{"redis-l2", h.redisL2},
		{"invalidation", h.invalidation},
	} {
		if !h.want(sc.name) {
			continue
		}
		t0 := time.Now()
		logf("== %s", sc.name)
		if err := sc.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		h.procs.stopAll()
		logf("== %s done in %s", sc.name, time.Since(t0).Round(time.Second))
	}
	h.table.add("run", "total time of make bench's scenarios", time.Since(start).Round(time.Second).String(), "", "", "")
	h.table.print(os.Stdout)
	return nil
}

// build compiles the helpers into the work dir and makes sure the pinned ghz
// builds (go run caches the binary for the rounds).
func (h *harness) build(ctx context.Context) error {
	logf("building the baseline, fake Ory and memory probe")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", h.dir+string(filepath.Separator),
		"./internal/bench/cmd/noop", "./internal/bench/cmd/fakeory", "./internal/bench/cmd/memory")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	h.bins = bins{noop: filepath.Join(h.dir, "noop"), fakeory: filepath.Join(h.dir, "fakeory"), memory: filepath.Join(h.dir, "memory")}
	if h.want("warm") || h.want("warm-routes") {
		logf("building %s (go run)", h.opt.ghz)
		cmd = exec.CommandContext(ctx, "go", "run", h.opt.ghz, "--version")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go run %s: %w", h.opt.ghz, err)
		}
	}
	return nil
}

// want tells whether --only selects the scenario.
func (h *harness) want(name string) bool {
	return h.opt.only == "" || strings.Contains(","+h.opt.only+",", ","+name+",")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
