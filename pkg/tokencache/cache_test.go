package tokencache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/testclock"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
)

var (
	errUnauth  = errors.New("401")
	errDown    = errors.New("ory down")
	errRefused = errors.New("403")
)

// origin is a fake fetch: it mints "tokens" valid for ttl from the clock and
// counts calls; err, when set, is returned instead.
type origin struct {
	clk   *testclock.Clock
	ttl   time.Duration
	calls atomic.Int64
	mu    sync.Mutex
	err   error
	gen   int
	block chan struct{} // when non-nil, fetches wait for it
}

func (o *origin) fetch(ctx context.Context, _ string) (int, Meta, error) {
	o.calls.Add(1)
	if o.block != nil {
		select {
		case <-o.block:
		case <-ctx.Done():
			return 0, Meta{}, ctx.Err()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, Meta{}, o.err
	}
	o.gen++
	now := o.clk.Now()
	return o.gen, Meta{Expiry: now.Add(o.ttl), IssuedAt: now, Cost: 500}, nil
}

func (o *origin) setErr(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = err
}

func classifyTest(err error) Outcome {
	switch {
	case errors.Is(err, errUnauth):
		return Negative
	case errors.Is(err, errRefused):
		return Final
	}
	return Transient
}

func newTestCache(t *testing.T, ttl time.Duration) (*Cache[string, int], *origin, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	o := &origin{clk: clk, ttl: ttl}
	c, err := New(Config[string, int]{
		MaxBytes: 1 << 20, Leeway: 5 * time.Second, NegativeTTL: 5 * time.Second, FetchTimeout: time.Second,
		Fetch: o.fetch, Classify: classifyTest, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, o, clk
}

func get(t *testing.T, c *Cache[string, int], key Key) (int, Source, error) {
	t.Helper()
	return c.Get(t.Context(), key, "req")
}

// waitCalls waits until the origin saw n calls (a background refresh runs
// on its own goroutine) and the cache's background work is done.
func waitCalls(t *testing.T, c *Cache[string, int], o *origin, n int64) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%d origin calls", n), func() bool { return o.calls.Load() >= n })
	c.wg.Wait()
}

// wantCalls fails t unless the origin saw exactly n calls; why, when not
// empty, says what they are.
func (o *origin) wantCalls(t *testing.T, n int64, why string) {
	t.Helper()
	if got := o.calls.Load(); got != n {
		if why != "" {
			why = " (" + why + ")"
		}
		t.Fatalf("origin calls = %d, want %d%s", got, n, why)
	}
}

func TestHitsUntilHardExpiry(t *testing.T) {
	c, o, clk := newTestCache(t, time.Minute)
	key := NewKey("mesh", 2, "ory_kratos_session=a")
	v, src, err := get(t, c, key)
	if err != nil || v != 1 || src != Miss {
		t.Fatalf("first get = %d %v %v", v, src, err)
	}
	// Soft expiry is exp - ttl/4 = 45s after issue; hits before it.
	for range 10 {
		clk.Advance(4 * time.Second) // up to 40s
		if v, src, err := get(t, c, key); err != nil || v != 1 || src != Hit {
			t.Fatalf("get at %v = %d %v %v, want a hit of 1", clk.Now(), v, src, err)
		}
	}
	o.wantCalls(t, 1, "before soft expiry")
	// Past the hard expiry (exp - leeway = 55s) with Ory down: nothing stale.
	o.setErr(errDown)
	clk.Advance(16 * time.Second) // 56s
	if _, _, err := get(t, c, key); !errors.Is(err, errDown) {
		t.Fatalf("get past hard expiry = %v, want the fetch error", err)
	}
	o.setErr(nil)
	if v, src, err := get(t, c, key); err != nil || src != Miss || v == 1 {
		t.Fatalf("get after recovery = %d %v %v, want a new value", v, src, err)
	}
}

func TestRefreshAhead(t *testing.T) {
	c, o, clk := newTestCache(t, time.Minute)
	key := NewKey("mesh", 2, "c")
	if _, _, err := get(t, c, key); err != nil {
		t.Fatal(err)
	}
	clk.Advance(46 * time.Second) // past soft expiry (45s), before hard (55s)
	// Many hits past the soft expiry: all served from the cache at once,
	// one background refresh in all.
	for range 50 {
		// 1 until the background refresh lands, 2 after; never a wait.
		if v, src, err := get(t, c, key); err != nil || src != Hit || (v != 1 && v != 2) {
			t.Fatalf("get past soft expiry = %d %v %v, want a hit", v, src, err)
		}
	}
	waitCalls(t, c, o, 2)
	if v, src, _ := get(t, c, key); v != 2 || src != Hit {
		t.Fatalf("after refresh got %d %v, want the refreshed value 2 as a hit", v, src)
	}
	o.wantCalls(t, 2, "one refresh")
}

func TestRefreshWhileOryDownKeepsServing(t *testing.T) {
	c, o, clk := newTestCache(t, time.Minute)
	key := NewKey("mesh", 2, "c")
	if _, _, err := get(t, c, key); err != nil {
		t.Fatal(err)
	}
	o.setErr(errDown)
	clk.Advance(46 * time.Second)
	if v, _, err := get(t, c, key); err != nil || v != 1 {
		t.Fatalf("get = %d %v, want the warm value", v, err)
	}
	waitCalls(t, c, o, 2)
	// Within the retry pause, hits do not call again.
	for range 20 {
		if v, _, err := get(t, c, key); err != nil || v != 1 {
			t.Fatalf("get = %d %v", v, err)
		}
	}
	o.wantCalls(t, 2, fmt.Sprintf("no retry within %v", refreshRetry))
	clk.Advance(refreshRetry)
	if _, _, err := get(t, c, key); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, c, o, 3)
	// Still serving the warm value until hard expiry.
	clk.Advance(7 * time.Second) // 54s
	if v, _, err := get(t, c, key); err != nil || v != 1 {
		t.Fatalf("get at 54s = %d %v, want the warm value", v, err)
	}
	clk.Advance(time.Second) // 55s: hard expiry
	c.wg.Wait()
	if _, _, err := get(t, c, key); !errors.Is(err, errDown) {
		t.Fatalf("get at hard expiry = %v, want an error", err)
	}
}

func TestRefreshRevokedDropsEntry(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{{"401", errUnauth}, {"403", errRefused}} {
		t.Run(tt.name, func(t *testing.T) {
			c, o, clk := newTestCache(t, time.Minute)
			key := NewKey("mesh", 2, "c")
			if _, _, err := get(t, c, key); err != nil {
				t.Fatal(err)
			}
			o.setErr(tt.err)
			clk.Advance(46 * time.Second)
			if _, src, _ := get(t, c, key); src != Hit {
				t.Fatal("want a hit that starts the refresh")
			}
			waitCalls(t, c, o, 2)
			if _, _, err := get(t, c, key); !errors.Is(err, tt.err) {
				t.Fatalf("get after a refused refresh = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestNegativeTTL(t *testing.T) {
	c, o, clk := newTestCache(t, time.Minute)
	key := NewKey("mesh", 2, "bad")
	o.setErr(errUnauth)
	for range 5 {
		if _, _, err := get(t, c, key); !errors.Is(err, errUnauth) {
			t.Fatalf("err = %v", err)
		}
	}
	o.wantCalls(t, 1, "")
	if _, src, _ := get(t, c, key); src != NegativeHit {
		t.Fatalf("source = %v, want NegativeHit", src)
	}
	clk.Advance(5 * time.Second)
	if _, _, err := get(t, c, key); !errors.Is(err, errUnauth) {
		t.Fatal(err)
	}
	o.wantCalls(t, 2, "after the negative TTL")
}

func TestTransientAndFinalNotRemembered(t *testing.T) {
	for _, err := range []error{errDown, errRefused} {
		c, o, _ := newTestCache(t, time.Minute)
		key := NewKey("mesh", 2, "x")
		o.setErr(err)
		for range 3 {
			_, _, _ = get(t, c, key)
		}
		if n := o.calls.Load(); n != 3 {
			t.Errorf("%v: origin calls = %d, want 3", err, n)
		}
	}
}

func TestShortLivedNotCached(t *testing.T) {
	c, o, _ := newTestCache(t, 3*time.Second) // less than the 5s leeway
	key := NewKey("mesh", 2, "x")
	for range 2 {
		if v, _, err := get(t, c, key); err != nil || v == 0 {
			t.Fatalf("get = %d %v, want the value forwarded", v, err)
		}
	}
	o.wantCalls(t, 2, "not cached")
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	c, o, _ := newTestCache(t, time.Minute)
	o.block = make(chan struct{})
	key := NewKey("mesh", 2, "x")
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { _, _, err := c.Get(ctx, key, "r"); first <- err }()
	waitCalls(t, c, o, 1)
	second := make(chan error, 1)
	go func() { _, _, err := c.Get(t.Context(), key, "r"); second <- err }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(o.block)
	if err := <-second; err != nil {
		t.Fatalf("other caller got %v, want the shared result", err)
	}
	o.wantCalls(t, 1, "")
}

func TestDigestMismatchIsMiss(t *testing.T) {
	c, o, _ := newTestCache(t, time.Minute)
	a := NewKey("mesh", 2, "a")
	if _, _, err := get(t, c, a); err != nil {
		t.Fatal(err)
	}
	// b collides with a in the 64-bit ristretto key but not in the digest.
	b := a
	b[31] ^= 1
	v, src, err := get(t, c, b)
	if err != nil || src != Miss || v == 1 {
		t.Fatalf("colliding key got %d %v %v, want a miss with its own value", v, src, err)
	}
	o.wantCalls(t, 2, "")
}

func TestNewKeyDistinct(t *testing.T) {
	keys := map[Key]string{}
	for _, in := range [][3]string{
		{"mesh", "\x01", "v"}, {"mesh", "\x02", "v"}, {"mesh2", "\x01", "v"}, {"mes", "\x01", "hv"}, {"mesh", "\x01", "v2"},
	} {
		k := NewKey(in[0], in[1][0], in[2])
		if prev, ok := keys[k]; ok {
			t.Fatalf("%q and %q share a key", in, prev)
		}
		keys[k] = in[0] + in[1] + in[2]
	}
}

// TestRefreshJitter: an entry filled on a miss gets its refresh-ahead point
// anywhere in FirstJitter of the time up to the soft expiry, so sessions
// filled together do not refresh together; an entry filled by a refresh
// keeps its phase, moved by at most RefreshJitter.
func TestRefreshJitter(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	o := &origin{clk: clk, ttl: time.Minute}
	c, err := New(Config[string, int]{
		MaxBytes: 16 << 20, Leeway: 5 * time.Second, FetchTimeout: time.Second,
		FirstJitter: 2.0 / 3, RefreshJitter: 0.05,
		Fetch: o.fetch, Classify: classifyTest, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const n = 300
	keys := make([]Key, n)
	// next is each entry's refresh-ahead point, as an offset from base.
	next := func(key Key, base time.Time) time.Duration {
		t.Helper()
		e, ok := c.store.Get(key.hash())
		if !ok {
			t.Fatalf("entry of %s not cached", key.Short())
		}
		return time.Duration(e.nextRefresh.Load() - base.UnixNano())
	}
	t0 := clk.Now()
	// A 1m JWT: soft expiry when a quarter is left, 45s after the fill.
	const soft = 45 * time.Second
	lo, hi := soft, time.Duration(0)
	for i := range keys {
		keys[i] = NewKey("mesh", 2, fmt.Sprintf("ory_kratos_session=%d", i))
		if _, src, err := get(t, c, keys[i]); err != nil || src != Miss {
			t.Fatalf("fill %d: %v %v", i, src, err)
		}
		d := next(keys[i], t0)
		if d < soft/3 || d > soft {
			t.Fatalf("first refresh-ahead point %s after the fill, want within [%s, %s]", d, soft/3, soft)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	// 300 uniform draws over 30s: the spread covers most of it.
	if lo > 20*time.Second || hi < 40*time.Second {
		t.Fatalf("first refresh-ahead points within [%s, %s]: not spread over [15s, 45s]", lo, hi)
	}
	// Every entry refreshes at its point (the hit that finds it due starts
	// the refresh); the new JWT's point is 45s on, less at most 5%.
	clk.Advance(soft)
	t1 := clk.Now()
	for _, k := range keys {
		if _, src, err := get(t, c, k); err != nil || src != Hit {
			t.Fatalf("hit: %v %v", src, err)
		}
	}
	waitCalls(t, c, o, 2*n)
	for _, k := range keys {
		if d := next(k, t1); d < soft-soft/20 || d > soft {
			t.Fatalf("refresh-ahead point after a refresh %s, want within [%s, %s]", d, soft-soft/20, soft)
		}
	}
}

// TestFetchPanic: a fetch that panics (on a miss, inside singleflight, and
// in a background refresh) fails that fetch as transient; the process lives,
// the warm entry keeps serving, nothing is cached, and the next fetch works.
func TestFetchPanic(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	var panicking atomic.Bool
	var calls atomic.Int64
	var logs strings.Builder
	var mu sync.Mutex
	c, err := New(Config[string, int]{
		MaxBytes: 1 << 20, Leeway: 5 * time.Second, FetchTimeout: time.Second, Now: clk.Now,
		Classify: classifyTest,
		Logger:   slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
		Fetch: func(context.Context, string) (int, Meta, error) {
			n := calls.Add(1)
			if panicking.Load() {
				panic("cannot parse cookie ory_kratos_session=SECRET")
			}
			return int(n), Meta{Expiry: clk.Now().Add(time.Minute), IssuedAt: clk.Now(), Cost: 8}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cold, warm := NewKey("mesh", 2, "cold"), NewKey("mesh", 2, "warm")
	if _, _, err := get(t, c, warm); err != nil {
		t.Fatal(err)
	}
	panicking.Store(true)
	if _, _, err := get(t, c, cold); !errors.Is(err, ErrFetchPanicked) {
		t.Fatalf("miss with a panicking fetch: err = %v, want ErrFetchPanicked", err)
	}
	// Past the refresh-ahead point: the hit serves and the background
	// refresh panics on its own goroutine.
	clk.Advance(50 * time.Second)
	before := calls.Load()
	if v, src, err := get(t, c, warm); err != nil || src != Hit || v != 1 {
		t.Fatalf("warm hit during a panicking refresh = %d %v %v", v, src, err)
	}
	c.WaitRefreshes()
	if calls.Load() != before+1 {
		t.Fatalf("fetch calls = %d, want one background refresh", calls.Load()-before)
	}
	panicking.Store(false)
	if v, src, err := get(t, c, cold); err != nil || src != Miss || v == 0 {
		t.Fatalf("after the panics: %d %v %v, want a fresh fetch", v, src, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "fetch panicked") || strings.Contains(logs.String(), "SECRET") {
		t.Fatalf("log must name the panic but not its value:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestEvictions: Stats.Evictions counts the entries dropped to make room
// while the cache is at MaxBytes, and nothing else: not the entries of a
// cache below its bound, nor those a Purge drops.
func TestEvictions(t *testing.T) {
	fill := func(t *testing.T, maxBytes int64, keys int) *Cache[string, int] {
		t.Helper()
		clk := testclock.New(time.Unix(1_800_000_000, 0))
		o := &origin{clk: clk, ttl: time.Minute}
		c, err := New(Config[string, int]{
			MaxBytes: maxBytes, Leeway: 5 * time.Second, FetchTimeout: time.Second,
			Fetch: o.fetch, Classify: classifyTest, Now: clk.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		for i := range keys {
			if _, _, err := get(t, c, NewKey("mesh", 2, fmt.Sprintf("s%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	t.Run("below the bound", func(t *testing.T) {
		c := fill(t, 1<<20, 50)
		c.Purge()
		if s := c.Stats(); s.Evictions != 0 {
			t.Errorf("Evictions = %d below the bound and after a purge, want 0", s.Evictions)
		}
	})
	t.Run("at the bound", func(t *testing.T) {
		const maxBytes = 32 << 10 // room for about 25 entries of 1.2 KiB
		c := fill(t, maxBytes, 200)
		s := c.Stats()
		if s.Evictions == 0 {
			t.Fatalf("no evictions after 200 entries in %d bytes: %+v", maxBytes, s)
		}
		if s.Bytes > maxBytes {
			t.Errorf("Bytes = %d over MaxBytes %d", s.Bytes, maxBytes)
		}
		c.Purge()
		if after := c.Stats().Evictions; after != s.Evictions {
			t.Errorf("a purge counted %d evictions", after-s.Evictions)
		}
	})
}
