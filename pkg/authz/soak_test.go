package authz_test

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

// soakEnv turns the soak on and sets its length.
const soakEnv = "ORY_EXT_AUTHZ_SOAK"

// TestSoak runs a bounded soak at a moderate rate (about 800 checks a second)
// over sessions whose JWTs expire every 12s, so that refresh-ahead, expiry
// and refills cycle many times. It logs heap and goroutine counts at the
// start and the end and fails if either keeps growing. It runs for
// ORY_EXT_AUTHZ_SOAK (a duration; make test, and so .ci/run, sets 2m) and
// is skipped without it, so that a developer's go test ./pkg/... stays short.
func TestSoak(t *testing.T) {
	v := os.Getenv(soakEnv)
	if v == "" {
		t.Skipf("%s not set: the soak runs in make test (%s=2m)", soakEnv, soakEnv)
	}
	length, err := time.ParseDuration(v)
	if err != nil || length <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 2m", soakEnv, v)
	}
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	fake.TTL = 12 * time.Second
	fake.Now = time.Now // the real clock: expiry happens during the soak
	fake.Forget = true
	// Info level: the debug log of every decision would grow the heap being
	// measured (and take long to scan for secrets).
	log, _ := logcapture.LoggerLevel(t, fake.Secrets, slog.LevelInfo)
	e := newEnvWithOry(t, fake, func(o *authz.Options) { o.ExpiryLeeway = 2 * time.Second; o.Logger = log })
	sessions := make([]*fakeory.Session, 300)
	for i := range sessions {
		sessions[i] = fake.NewSession()
	}

	measure := func() (heap uint64, goroutines int) {
		// Idle keep-alive connections to Ory come and go with the load;
		// close them so that only live work is counted.
		e.oc.Close()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, runtime.NumGoroutine()
	}
	ctx, cancel := context.WithTimeout(t.Context(), length)
	defer cancel()
	var checks, errs atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := w; ; i += 8 {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				s := sessions[i%len(sessions)]
				cctx, ccancel := context.WithTimeout(t.Context(), 5*time.Second)
				resp, err := e.client.Check(cctx, req(map[string]string{"cookie": s.CookiePair()}, nil))
				ccancel()
				checks.Add(1)
				if ctx.Err() == nil && (err != nil || resp.GetStatus().GetCode() != 0) {
					if errs.Add(1) <= 3 {
						t.Logf("check failed: %v %v", err, resp.GetStatus())
					}
				}
			}
		})
	}
	// The first quarter warms up: every session cached, a refresh cycle run.
	select {
	case <-time.After(length / 4):
	case <-ctx.Done():
	}
	heap0, gr0 := measure()
	t.Logf("soak start (after %v warm-up): heap %d KiB, %d goroutines", length/4, heap0>>10, gr0)
	<-ctx.Done()
	wg.Wait()
	heap1, gr1 := measure()
	calls := fake.Calls()
	t.Logf("soak end (%v): heap %d KiB, %d goroutines; %d checks, %d failed, %d Ory calls (%.2f per session per 12s ttl, with refresh-ahead at 9s and the first fill)",
		length, heap1>>10, gr1, checks.Load(), errs.Load(), calls, float64(calls)/float64(len(sessions))/(length.Seconds()/12))
	if errs.Load() > 0 {
		t.Errorf("%d checks failed", errs.Load())
	}
	if gr1 > gr0+16 {
		t.Errorf("goroutines grew from %d to %d", gr0, gr1)
	}
	if heap1 > heap0+heap0/2+8<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB", heap0>>10, heap1>>10)
	}
}
