// Command fakeory runs internal/fakeory's fake Ory as a process for `make bench`:
// whoami?tokenize_as= on 127.0.0.1 signing real ES256 JWTs, with a per-call
// latency, a JWT ttl, and N sessions created up front whose cookies are
// written to a file, one "ory_kratos_session=<value>" a line. With --roles
// every JWT carries a roles claim, but that of one more session, whose
// cookie goes to --roleless-file (route table policies: a session the
// policy denies).
//
// A second loopback listener is the control API of the orchestrator:
//
//	GET  /stats  {"calls": n, "per_session": [...], "times": [[unix nanos...]...]}
//	POST /reset  zero the counters
//
// When ready it writes {"url", "control", "jwt_bytes"} as one JSON line to
// stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
)

func main() { bench.Main("fakeory", run) }

// maxTimes bounds the call log per session.
const maxTimes = 1000

type counter struct {
	index map[string]int // cookie value -> session index
	mu    sync.Mutex
	s     bench.FakeOryStats
}

func (c *counter) observe(r *http.Request) {
	i := -1
	if ck, err := r.Cookie(fakeory.CookieName); err == nil {
		if j, ok := c.index[ck.Value]; ok {
			i = j
		}
	}
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Calls++
	if i < 0 {
		c.s.Unknown++
		return
	}
	c.s.PerSession[i]++
	if len(c.s.Times[i]) < maxTimes {
		c.s.Times[i] = append(c.s.Times[i], now)
	}
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.index)
	c.s = bench.FakeOryStats{PerSession: make([]int64, n), Times: make([][]int64, n)}
}

func run() error {
	latency := flag.Duration("latency", 0, "time every whoami call takes before it is answered")
	ttl := flag.Duration("ttl", time.Hour, "lifetime of the minted JWTs (the tokenizer template's ttl)")
	sessions := flag.Int("sessions", 1000, "sessions to create up front")
	sessionsFile := flag.String("sessions-file", "", "where to write the session cookies, one a line (required)")
	roles := flag.String("roles", "", "comma-separated roles claim of every session's JWT (empty: no roles claim)")
	rolelessFile := flag.String("roleless-file", "", "with --roles: create one more session whose JWT has no roles claim and write its cookie here (its calls count as unknown)")
	flag.Parse()
	if *sessionsFile == "" {
		return fmt.Errorf("--sessions-file is required")
	}
	fake := fakeory.New()
	defer fake.Close()
	fake.TTL = *ttl
	// A run makes thousands of calls: keep no copy of each request.
	fake.Forget = true

	c := &counter{index: make(map[string]int, *sessions)}
	var b strings.Builder
	var sample *fakeory.Session
	for i := range *sessions {
		s := fake.NewSession()
		c.index[s.Cookie] = i
		b.WriteString(s.CookiePair())
		b.WriteByte('\n')
		sample = s
	}
	c.reset()
	if *roles != "" {
		var claim []any
		for _, r := range strings.Split(*roles, ",") {
			claim = append(claim, r)
		}
		roleless := ""
		if *rolelessFile != "" {
			s := fake.NewSession()
			roleless = s.IdentityID
			if err := os.WriteFile(*rolelessFile, []byte(s.CookiePair()+"\n"), 0o600); err != nil {
				return err
			}
		}
		fake.SetClaims(func(m map[string]any) {
			if m["sub"] != roleless {
				m["roles"] = claim
			}
		})
	}
	if err := os.WriteFile(*sessionsFile, []byte(b.String()), 0o600); err != nil {
		return err
	}
	jwtBytes := 0
	if sample != nil {
		tok, err := fake.Mint(sample, "mesh")
		if err != nil {
			return err
		}
		jwtBytes = len(tok)
	}
	d := *latency
	fake.SetHook(func(_ http.ResponseWriter, r *http.Request) bool {
		c.observe(r)
		if d <= 0 {
			return false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return false
		case <-r.Context().Done():
			return true
		}
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.s)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		c.reset()
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	info, err := json.Marshal(bench.FakeOryInfo{URL: fake.URL, Control: "http://" + l.Addr().String(), JWTBytes: jwtBytes})
	if err != nil {
		return err
	}
	fmt.Println(string(info))
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}
