package redistier_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// Liveness bound for one operation against a sick Redis: generous, since
// the machine is shared, but far below what an unbounded wait would take.
const faultTimeout = 100 * time.Millisecond

func within(t *testing.T, what string, bound time.Duration, f func()) {
	t.Helper()
	start := time.Now()
	f()
	if d := time.Since(start); d > bound {
		t.Fatalf("%s took %v, want at most %v", what, d, bound)
	}
}

// everyOp runs every operation a request path calls, each once, and
// returns their errors (WaitFor has none); with bound > 0 it fails t when one of them takes
// longer than bound.
func everyOp(t *testing.T, tier *redistier.Tier, bound time.Duration) []error {
	t.Helper()
	ctx := t.Context()
	k := key("fault")
	ops := []struct {
		name string
		run  func() error
	}{
		{"Get", func() error { _, _, err := tier.Get(ctx, k); return err }},
		{"Set", func() error { return tier.Set(ctx, k, []byte("v"), time.Minute) }},
		{"Lock", func() error {
			unlock, _, err := tier.Lock(ctx, k, time.Second)
			unlock()
			return err
		}},
		{"WaitFor", func() error { _, _ = tier.WaitFor(ctx, k, faultTimeout); return nil }},
		{"Pause", func() error { return tier.Pause(ctx, time.Now().Add(time.Second)) }},
		{"PausedUntil", func() error { _, err := tier.PausedUntil(ctx); return err }},
		{"InvalidatedAt", func() error { _, _, err := tier.InvalidatedAt(ctx, redistier.KindSession, "s"); return err }},
	}
	var errs []error
	for _, op := range ops {
		var err error
		if bound > 0 {
			within(t, op.name, bound, func() { err = op.run() })
		} else {
			err = op.run()
		}
		if op.name != "WaitFor" {
			errs = append(errs, err)
		}
	}
	return errs
}

// A hung Redis (SIGSTOP): every operation returns within a small multiple
// of Timeout, the breaker opens and then fails fast without the network,
// and after SIGCONT the Tier recovers by itself.
func TestHungRedisBreakerOpensAndRecovers(t *testing.T) {
	srv, env, k := storedValue(t, "warm", func(o *redistier.Options) { o.Timeout = faultTimeout })
	srv.Pause()
	failed := 0
	for i := range 20 {
		// Each operation (Lock includes its unlock) is bounded.
		for _, err := range everyOp(t, env.tier, 20*faultTimeout) {
			if err != nil {
				failed++
			}
		}
		if !env.tier.Healthy() {
			t.Logf("breaker open after %d rounds", i+1)
			break
		}
	}
	if env.tier.Healthy() {
		t.Fatal("the breaker did not open on a hung Redis")
	}
	if failed == 0 {
		t.Fatal("no operation failed on a hung Redis")
	}
	// Open: fast fails, no network.
	within(t, "a fast fail", 20*faultTimeout, func() {
		_, _, err := env.tier.Get(t.Context(), k)
		if !errors.Is(err, redistier.ErrUnavailable) {
			t.Fatalf("Get with the breaker open: %v, want ErrUnavailable", err)
		}
	})
	if env.obs.count("get/timeout")+env.obs.count("set/timeout") == 0 || env.obs.count("get/unavailable") == 0 {
		t.Fatalf("observed %v", env.obs.counts)
	}
	if !env.obs.sawState(redistier.BreakerOpen) {
		t.Fatal("no breaker transition to open observed")
	}
	srv.Resume()
	healthy(t, env.tier)
	mustGet(t, env.tier, k, []byte("v"))
	if !env.obs.sawState(redistier.BreakerHalfOpen) {
		t.Fatal("no half-open probe observed")
	}
	if !strings.Contains(env.log.String(), "circuit open") || !strings.Contains(env.log.String(), "reachable again") {
		t.Fatalf("log lacks the breaker warnings:\n%s", env.log.String())
	}
}

// Writes refused under maxmemory noeviction fail cleanly; reads go on and
// the breaker stays closed.
func TestOOMWritesFailCleanly(t *testing.T) {
	srv, env, k := storedValue(t, "before", nil)
	srv.ConfigSet("maxmemory-policy", "noeviction")
	srv.ConfigSet("maxmemory", "1")
	for range 10 {
		err := env.tier.Set(t.Context(), key("after"), []byte("v"), time.Minute)
		if err == nil || !strings.Contains(err.Error(), "OOM") {
			t.Fatalf("Set under maxmemory 1: %v, want an OOM error", err)
		}
		if _, _, err := env.tier.Lock(t.Context(), key("after"), time.Second); err == nil {
			t.Fatal("Lock under maxmemory 1 succeeded")
		}
	}
	mustGet(t, env.tier, k, []byte("v"))
	if !env.tier.Healthy() {
		t.Fatal("OOM opened the breaker")
	}
	if n := env.obs.count("set/rejected"); n != 10 {
		t.Fatalf("set/rejected = %d, want 10 (%v)", n, env.obs.counts)
	}
	srv.ConfigSet("maxmemory", "0")
	if err := env.tier.Set(t.Context(), key("after"), []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set after the limit was lifted: %v", err)
	}
}

// Killed connections and a restart that empties Redis: the Tier recovers
// on its own (a failed operation or two at most), and a restarted Redis is
// simply empty.
func TestKilledConnectionsAndEmptyRestartRecover(t *testing.T) {
	srv, env, k := storedValue(t, "k", nil)
	srv.KillClients("TYPE", "normal")
	testwait.For(t, "a Get after CLIENT KILL", func() bool {
		v, ok, err := env.tier.Get(t.Context(), k)
		return err == nil && ok && string(v) == "v"
	})

	srv.Restart()
	testwait.For(t, "the tier to work after the restart", func() bool {
		_, _, err := env.tier.Get(t.Context(), k)
		return err == nil && env.tier.Healthy()
	})
	mustMiss(t, env.tier, k) // restarted empty
	mustSet(t, env.tier, k, []byte("v2"))
	mustGet(t, env.tier, k, []byte("v2"))
	// Lock is the one write rueidis does not retry over a new connection
	// (SET NX is not idempotent): each connection broken by the restart
	// can fail it once, and the caller then goes to Ory alone.
	var unlock func()
	for attempt := 1; ; attempt++ {
		var ok bool
		var err error
		if unlock, ok, err = env.tier.Lock(t.Context(), k, time.Minute); ok {
			break
		}
		if err == nil || attempt == 3 {
			t.Fatalf("Lock attempt %d = %v, %v", attempt, ok, err)
		}
	}
	// Lua scripts are gone after the restart; they load again (EVALSHA, then EVAL).
	unlock()
	if _, ok, _ := env.tier.Lock(t.Context(), k, time.Minute); !ok {
		t.Fatal("unlock after the restart did not delete the lock")
	}
	if err := env.tier.Pause(t.Context(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// Redis down or hung (accepting connections, never answering) when New
// runs: New succeeds, operations fail fast, probes fail, Close returns,
// and once Redis is back (restarted, SIGCONT) the Tier connects.
func TestRedisSickAtStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		on, off func(*redistest.Server)
	}{
		{"down", (*redistest.Server).Stop, (*redistest.Server).Restart},
		{"hung", (*redistest.Server).Pause, (*redistest.Server).Resume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			tc.on(srv)
			dialTimeout := func(o *redistier.Options) { o.DialTimeout = 200 * time.Millisecond }
			env := newTier(t, srv, dialTimeout)
			for range 3 {
				within(t, "an operation with Redis "+tc.name, 20*testTimeout, func() {
					if _, _, err := env.tier.Get(t.Context(), key("k")); !errors.Is(err, redistier.ErrUnavailable) {
						t.Fatalf("Get with Redis %s: %v, want ErrUnavailable", tc.name, err)
					}
				})
			}
			testwait.For(t, "a probe to fail", func() bool {
				return env.obs.count("probe/error")+env.obs.count("probe/timeout") > 0
			})
			other := newTier(t, srv, dialTimeout)
			within(t, "Close with Redis "+tc.name, 10*time.Second, other.tier.Close)
			tc.off(srv)
			healthy(t, env.tier)
			mustMiss(t, env.tier, key("k"))
		})
	}
}

// A wrong password: New succeeds, operations fail fast and say why, nothing
// panics, and the password shows in no log (newTier's log check).
func TestWrongPasswordFailsFastAndClearly(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "right-password-value"})
	env := newTier(t, srv, func(o *redistier.Options) { o.Password = "wrong-password-value" })
	testwait.For(t, "a probe to fail", func() bool { return env.obs.count("probe/error") > 0 })
	for _, err := range everyOp(t, env.tier, 0) {
		if !errors.Is(err, redistier.ErrUnavailable) || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("operation with a wrong password: %v, want ErrUnavailable naming WRONGPASS", err)
		}
	}
	if _, err := env.tier.Invalidate(t.Context(), redistier.KindPurge, "", time.Now()); !errors.Is(err, redistier.ErrUnavailable) {
		t.Fatalf("Invalidate with a wrong password: %v", err)
	}
	if env.tier.Healthy() {
		t.Fatal("healthy with a wrong password")
	}
	if !strings.Contains(env.log.String(), "WRONGPASS") {
		t.Fatalf("log does not say why:\n%s", env.log.String())
	}

	right := newTier(t, srv, func(o *redistier.Options) { o.Password = "right-password-value" })
	healthy(t, right.tier)
	mustMiss(t, right.tier, key("k"))
}

// TLS with a client certificate and an ACL user, all from Options.
func TestTLSClientCertACLUser(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: true, ClientCerts: true, User: "ext-authz", UserPassword: "right-password-value"})
	env := healthyTier(t, srv, func(o *redistier.Options) {
		o.CAFile, o.CertFile, o.KeyFile = srv.CAFile, srv.CertFile, srv.KeyFile
		o.Username, o.Password = "ext-authz", "right-password-value"
	})
	mustSet(t, env.tier, key("k"), []byte("over TLS"))
	mustGet(t, env.tier, key("k"), []byte("over TLS"))

	// Without the client certificate the server refuses the handshake.
	noCert := newTier(t, srv, func(o *redistier.Options) {
		o.CAFile = srv.CAFile
		o.Username, o.Password = "ext-authz", "right-password-value"
	})
	testwait.For(t, "a probe to fail", func() bool { return noCert.obs.count("probe/error") > 0 })
	if _, _, err := noCert.tier.Get(t.Context(), key("k")); !errors.Is(err, redistier.ErrUnavailable) {
		t.Fatalf("Get without a client certificate: %v", err)
	}
}

// Something that is not Redis on the port: a server answering garbage and
// one that closes every connection at once. These are faults a real Redis
// cannot show, so a bare listener plays them. New succeeds, every
// operation fails fast with ErrUnavailable, nothing panics.
func TestNotRedisOnThePort(t *testing.T) {
	for name, serve := range map[string]func(net.Conn){
		"garbage": func(c net.Conn) {
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff*-1\r\n$x\r\n"))
			_, _ = io.Copy(io.Discard, c)
		},
		"closes": func(net.Conn) {},
	} {
		t.Run(name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			t.Cleanup(func() {
				l.Close()
				wg.Wait()
			})
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					wg.Go(func() {
						defer c.Close()
						_ = c.SetDeadline(time.Now().Add(2 * time.Second))
						serve(c)
					})
				}
			})
			env := newTier(t, nil, func(o *redistier.Options) { o.URL = "redis://" + l.Addr().String() })
			testwait.For(t, "a probe to fail", func() bool {
				return env.obs.count("probe/error")+env.obs.count("probe/timeout") > 0
			})
			for _, err := range everyOp(t, env.tier, 0) {
				if !errors.Is(err, redistier.ErrUnavailable) {
					t.Fatalf("operation against %s: %v, want ErrUnavailable", name, err)
				}
			}
			env.tier.Close()
		})
	}
}
