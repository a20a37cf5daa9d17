package tokencache

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/testclock"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
)

// taggedOrigin mints values tagged with the session/identity of the request
// string "sid/iid".
type taggedOrigin struct {
	clk   *testclock.Clock
	calls atomic.Int64
	block chan struct{}
}

func (o *taggedOrigin) fetch(ctx context.Context, req string) (string, Meta, error) {
	n := o.calls.Add(1)
	if o.block != nil {
		select {
		case <-o.block:
		case <-ctx.Done():
			return "", Meta{}, ctx.Err()
		}
	}
	if sid, iid := taggedIDs(req); sid == "" || iid == "" {
		return "", Meta{}, fmt.Errorf("request %q is not \"sid iid\"", req)
	}
	now := o.clk.Now()
	return fmt.Sprintf("%s#%d", req, n), Meta{Expiry: now.Add(time.Minute), IssuedAt: now, Cost: 100}, nil
}

// taggedIDs reads the session and identity out of a value ("sid iid#n") or
// a request ("sid iid"): the cache's Config.IDs.
func taggedIDs(v string) (sid, iid string) {
	v, _, _ = strings.Cut(v, "#")
	sid, iid, _ = strings.Cut(v, " ")
	return sid, iid
}

func newTaggedCache(t *testing.T) (*Cache[string, string], *taggedOrigin, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	o := &taggedOrigin{clk: clk}
	c, err := New(Config[string, string]{
		MaxBytes: 1 << 20, Leeway: 5 * time.Second, NegativeTTL: 5 * time.Second, FetchTimeout: time.Second,
		Fetch: o.fetch, IDs: func(v string) ([]byte, []byte) { sid, iid := taggedIDs(v); return []byte(sid), []byte(iid) }, Classify: func(error) Outcome { return Transient }, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, o, clk
}

func TestInvalidate(t *testing.T) {
	type item struct {
		key Key
		req string
	}
	// Session s1 of identity i1 under two templates and two kinds; s2 also
	// of i1; s3 of i2.
	items := []item{
		{NewKey("mesh", 1, "tok1"), "s1 i1"}, {NewKey("mesh", 2, "cookie1"), "s1 i1"}, {NewKey("other", 2, "cookie1"), "s1 i1"},
		{NewKey("mesh", 2, "cookie2"), "s2 i1"}, {NewKey("mesh", 2, "cookie3"), "s3 i2"},
	}
	tests := []struct {
		name       string
		invalidate func(c *Cache[string, string])
		voided     []bool
	}{
		{"session", func(c *Cache[string, string]) { c.InvalidateSession("s1") }, []bool{true, true, true, false, false}},
		{"identity", func(c *Cache[string, string]) { c.InvalidateIdentity("i1") }, []bool{true, true, true, true, false}},
		{"purge", func(c *Cache[string, string]) { c.Purge() }, []bool{true, true, true, true, true}},
		{"unknown session", func(c *Cache[string, string]) { c.InvalidateSession("nope") }, []bool{false, false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, o, clk := newTaggedCache(t)
			first := map[Key]string{}
			for _, it := range items {
				v, _, err := c.Get(t.Context(), it.key, it.req)
				if err != nil {
					t.Fatal(err)
				}
				first[it.key] = v
			}
			clk.Advance(time.Millisecond)
			tt.invalidate(c)
			// Time moves on, as it does between an admin call and the next
			// request (a fetch in the very nanosecond of the invalidation
			// counts as before it).
			clk.Advance(time.Millisecond)
			for i, it := range items {
				v, src, err := c.Get(t.Context(), it.key, it.req)
				if err != nil {
					t.Fatal(err)
				}
				if voided := src == Miss && v != first[it.key]; voided != tt.voided[i] {
					t.Errorf("item %d (%s): voided = %v, want %v", i, it.req, voided, tt.voided[i])
				}
			}
			// The refilled entries are live again: no more calls.
			calls := o.calls.Load()
			for _, it := range items {
				if _, src, _ := c.Get(t.Context(), it.key, it.req); src != Hit {
					t.Errorf("%s: %v after refill, want a hit", it.req, src)
				}
			}
			if o.calls.Load() != calls {
				t.Error("hits after refill called the origin")
			}
		})
	}
}

// TestInvalidateDuringFlight: a fetch that started before the invalidation
// must not answer a request that came after it.
func TestInvalidateDuringFlight(t *testing.T) {
	c, o, clk := newTaggedCache(t)
	o.block = make(chan struct{})
	key := NewKey("mesh", 2, "c")
	first := make(chan string, 1)
	go func() {
		v, _, _ := c.Get(t.Context(), key, "s1 i1")
		first <- v
	}()
	testwait.For(t, "the fetch to reach the origin", func() bool { return o.calls.Load() == 1 })
	clk.Advance(time.Millisecond)
	c.InvalidateSession("s1")
	clk.Advance(time.Millisecond)
	second := make(chan string, 1)
	go func() {
		v, _, _ := c.Get(t.Context(), key, "s1 i1")
		second <- v
	}()
	// Let the second request join the flight, then release the flight.
	time.Sleep(20 * time.Millisecond)
	close(o.block)
	<-first // before the invalidation: either answer is right
	// The origin's first call started before the invalidation; the request
	// after it must get the answer of a later call.
	if v2 := <-second; v2 == "s1 i1#1" {
		t.Fatalf("the request after the invalidation got the pre-invalidation answer %q", v2)
	}
}

func TestRevocationRecordsBounded(t *testing.T) {
	r := newRevocations()
	r.observeLifetime(time.Minute)
	now := time.Unix(1_800_000_000, 0)
	for i := range maxRecords + 10 {
		r.session(fmt.Sprint(i), now.UnixNano())
	}
	if n := len(r.sessions); n > maxRecords {
		t.Fatalf("%d session records kept, want at most %d", n, maxRecords)
	}
	// Over the bound, the records collapsed into a purge: everything older is void.
	if !r.revoked(0, []byte("x"), []byte("y")) {
		t.Error("collapsed records did not void older entries")
	}
	// Records older than the longest lifetime are pruned.
	r2 := newRevocations()
	r2.observeLifetime(time.Minute)
	r2.session("old", now.UnixNano())
	later := now.Add(3 * time.Minute)
	r2.session("new", later.UnixNano())
	if _, ok := r2.sessions["old"]; ok || r2.count.Load() != 1 {
		t.Errorf("old record kept: %v, count %d", r2.sessions, r2.count.Load())
	}
}
