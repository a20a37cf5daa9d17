package tokencache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testclock"
)

// replicas starts a redis-server and builds n caches, as n replicas would
// run them, sharing one origin (Ory) and, each through its own connection,
// that server.
func replicas(t *testing.T, n int) (*redistest.Server, []*Cache[string, string], *taggedOrigin, *testclock.Clock) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	clk := testclock.New(time.Now())
	o := &taggedOrigin{clk: clk}
	return srv, moreReplicas(t, n, srv.URL(), o), o, clk
}

// moreReplicas adds replicas of the same origin (and its clock).
func moreReplicas(t *testing.T, n int, url string, o *taggedOrigin) []*Cache[string, string] {
	t.Helper()
	clk := o.clk
	var cs []*Cache[string, string]
	for range n {
		c, err := New(Config[string, string]{
			MaxBytes: 1 << 20, Leeway: 5 * time.Second, FetchTimeout: 2 * time.Second,
			FirstJitter: 2.0 / 3, RefreshJitter: 0.05, // as pkg/authz sets them
			Fetch: o.fetch, Classify: func(error) Outcome { return Transient }, Now: clk.Now,
			IDs:         func(v string) ([]byte, []byte) { sid, iid := taggedIDs(v); return []byte(sid), []byte(iid) },
			Shared:      redistest.Tier(t, url, nil),
			EncodeValue: func(v string) []byte { return []byte(v) },
			DecodeValue: func(b []byte) (string, error) { return string(b), nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		cs = append(cs, c)
	}
	return cs
}

// TestSharedColdStorm: concurrent misses of the same sessions on three
// replicas make exactly one origin call per session, and every replica
// answers with that one value.
func TestSharedColdStorm(t *testing.T) {
	_, cs, o, _ := replicas(t, 3)
	const sessions = 40
	var wg sync.WaitGroup
	got := make([][]string, sessions)
	var mu sync.Mutex
	for i := range sessions {
		for _, c := range cs {
			for range 3 {
				wg.Go(func() {
					req := fmt.Sprintf("s%d i%d", i, i)
					v, _, err := c.Get(t.Context(), NewKey("mesh", 2, req), req)
					if err != nil {
						t.Errorf("session %d: %v", i, err)
					}
					mu.Lock()
					got[i] = append(got[i], v)
					mu.Unlock()
				})
			}
		}
	}
	wg.Wait()
	if n := o.calls.Load(); n != sessions {
		t.Fatalf("origin calls = %d for %d sessions over 3 replicas, want one per session", n, sessions)
	}
	for i, vs := range got {
		for _, v := range vs {
			if v != vs[0] {
				t.Fatalf("session %d: replicas answered %q", i, vs)
			}
		}
	}
	var shared uint64
	for _, c := range cs {
		shared += c.Stats().SharedHits
	}
	if shared == 0 {
		t.Fatal("no replica counted a shared hit")
	}
}

// TestSharedRefresh: once one replica refreshed a session, another one
// reaching its own refresh point takes the newer value from the tier
// instead of asking the origin.
func TestSharedRefresh(t *testing.T) {
	_, cs, o, clk := replicas(t, 2)
	a, b := cs[0], cs[1]
	req := "s1 i1"
	key := NewKey("mesh", 2, req)
	first, _, _ := a.Get(t.Context(), key, req)
	if v, src, _ := b.Get(t.Context(), key, req); v != first || src != Miss || o.calls.Load() != 1 {
		t.Fatalf("b's first get = %q %v after %d origin calls, want a's value from the tier", v, src, o.calls.Load())
	}
	// Past every refresh point (at most three quarters of a minute).
	clk.Advance(46 * time.Second)
	if _, src, _ := a.Get(t.Context(), key, req); src != Hit {
		t.Fatalf("a at the refresh point: %v, want a hit that refreshes", src)
	}
	a.WaitRefreshes()
	if o.calls.Load() != 2 {
		t.Fatalf("origin calls = %d, want a's refresh", o.calls.Load())
	}
	if _, src, _ := b.Get(t.Context(), key, req); src != Hit {
		t.Fatalf("b at the refresh point: %v, want a hit", src)
	}
	b.WaitRefreshes()
	if n := o.calls.Load(); n != 2 {
		t.Fatalf("origin calls = %d: b's refresh asked the origin although a had refreshed", n)
	}
	v, _, _ := b.Get(t.Context(), key, req)
	if v == first {
		t.Fatalf("b still serves %q after its refresh, want a's newer value", v)
	}
}

// TestSharedInvalidationRecords: a value in the tier fetched before an
// invalidation, recorded in the tier by another replica or received here,
// is never served; a value fetched after it is.
func TestSharedInvalidationRecords(t *testing.T) {
	srv, cs, o, clk := replicas(t, 2)
	a, b := cs[0], cs[1]
	tier := redistest.Tier(t, srv.URL(), nil)
	get := func(c *Cache[string, string], req string) Source {
		t.Helper()
		_, src, err := c.Get(t.Context(), NewKey("mesh", 2, req), req)
		if err != nil {
			t.Fatal(err)
		}
		return src
	}
	get(a, "s1 i1")
	get(a, "s2 i2")
	clk.Advance(2 * clockSkew)
	// Recorded in the tier only (another replica, or before b started).
	if _, err := tier.Invalidate(context.Background(), SharedSession, "s1", clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := tier.Invalidate(context.Background(), SharedIdentity, "i2", clk.Now()); err != nil {
		t.Fatal(err)
	}
	// Past the clock skew margin, so that what b fetches now counts as
	// fetched after the invalidations.
	clk.Advance(2 * clockSkew)
	before := o.calls.Load()
	get(b, "s1 i1")
	get(b, "s2 i2")
	if n := o.calls.Load() - before; n != 2 {
		t.Fatalf("b asked the origin %d times, want 2: both values in the tier predate invalidations", n)
	}
	// A third replica takes b's values from the tier.
	c := moreReplicas(t, 1, srv.URL(), o)
	before = o.calls.Load()
	get(c[0], "s1 i1")
	if o.calls.Load() != before {
		t.Fatal("a value fetched after the invalidation was not taken from the tier")
	}
	// A local invalidation (received from any replica) voids what the
	// tier holds from before it too.
	clk.Advance(2 * clockSkew)
	c[0].InvalidateSession("s2")
	c[0].store.Clear()
	before = o.calls.Load()
	get(c[0], "s2 i2")
	if o.calls.Load() != before+1 {
		t.Fatal("a value in the tier older than a local invalidation was served")
	}
}

// TestSharedTierDown: with the tier's Redis stopped, or hung (SIGSTOP),
// misses go to the origin and succeed; the tier never fails a Get.
func TestSharedTierDown(t *testing.T) {
	srv, cs, o, _ := replicas(t, 1)
	c := cs[0]
	calls := &countingShared{Shared: c.cfg.Shared}
	c.cfg.Shared = calls
	for i, fault := range []struct {
		name        string
		do, recover func()
	}{
		{"hung", srv.Pause, srv.Resume},
		{"stopped", srv.Stop, srv.Restart},
	} {
		fault.do()
		req := fmt.Sprintf("s%d i%d", i, i)
		before := o.calls.Load()
		if _, src, err := c.Get(t.Context(), NewKey("mesh", 2, req), req); err != nil || src != Miss {
			t.Fatalf("%s: Get = %v %v, want a miss answered by the origin", fault.name, src, err)
		}
		if o.calls.Load() != before+1 {
			t.Fatalf("%s: origin not asked", fault.name)
		}
		// One read of the tier, which failed: no lock, no wait, no write,
		// so a sick Redis costs a check one --redis-timeout at most.
		if n := calls.n.Swap(0); n != 1 {
			t.Fatalf("%s: the fill made %d calls to the sick tier, want 1", fault.name, n)
		}
		fault.recover()
	}
}

// countingShared counts the calls to a Shared tier.
type countingShared struct {
	Shared
	n atomic.Int64
}

func (s *countingShared) Get(ctx context.Context, key [32]byte) ([]byte, bool, error) {
	s.n.Add(1)
	return s.Shared.Get(ctx, key)
}

func (s *countingShared) Set(ctx context.Context, key [32]byte, v []byte, ttl time.Duration) error {
	s.n.Add(1)
	return s.Shared.Set(ctx, key, v, ttl)
}

func (s *countingShared) Lock(ctx context.Context, key [32]byte, ttl time.Duration) (func(), bool, error) {
	s.n.Add(1)
	return s.Shared.Lock(ctx, key, ttl)
}

func (s *countingShared) WaitFor(ctx context.Context, key [32]byte, bound time.Duration) ([]byte, bool) {
	s.n.Add(1)
	return s.Shared.WaitFor(ctx, key, bound)
}

// TestVoidLocalKeepsTheTier: a replica that lost its subscription voids
// what it holds, but still takes from the tier a value fetched before
// (checked against the tier's records, which it did not miss): a new or
// resubscribed replica is not blind to the tier.
func TestVoidLocalKeepsTheTier(t *testing.T) {
	_, cs, o, clk := replicas(t, 2)
	a, b := cs[0], cs[1]
	req := "s1 i1"
	key := NewKey("mesh", 2, req)
	if _, _, err := a.Get(t.Context(), key, req); err != nil {
		t.Fatal(err)
	}
	if _, src, _ := b.Get(t.Context(), key, req); src != Hit && o.calls.Load() != 1 {
		t.Fatalf("b: %v after %d origin calls", src, o.calls.Load())
	}
	clk.Advance(time.Millisecond)
	b.VoidLocal()
	if _, src, _ := b.Get(t.Context(), key, req); src != Miss {
		t.Fatalf("b after VoidLocal: %v, want a miss of its own cache", src)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin calls = %d: after VoidLocal the value in the tier was not taken", n)
	}
}

// TestSharedKeepsTheRefreshPhase: a value taken from the tier keeps the
// refresh point the replica that fetched it chose (moved earlier by the
// small refresh jitter at most), instead of drawing a first-fill jitter of
// its own: otherwise each replica would refresh early in turn, and the
// tier would hold nothing newer for them (more whoami calls per ttl).
func TestSharedKeepsTheRefreshPhase(t *testing.T) {
	_, cs, _, clk := replicas(t, 2)
	a, b := cs[0], cs[1]
	for i := range 20 {
		req := fmt.Sprintf("s%d i%d", i, i)
		key := NewKey("mesh", 2, req)
		if _, _, err := a.Get(t.Context(), key, req); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.Get(t.Context(), key, req); err != nil {
			t.Fatal(err)
		}
		ea, _ := a.lookup(key)
		eb, _ := b.lookup(key)
		sa, sb := ea.nextRefresh.Load(), eb.nextRefresh.Load()
		left := sa - clk.Now().UnixNano()
		if sb > sa || sb < sa-left/20-1 {
			t.Fatalf("session %d: b refreshes %v after now, a %v: b must keep a's phase within the refresh jitter",
				i, time.Duration(sb-clk.Now().UnixNano()), time.Duration(left))
		}
	}
}
