package tokencache

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRevocationConcurrent: an invalidation that has returned voids every
// entry whose fetch started before it, whatever other invalidations and
// purges run at the same time. (Found while building the admin API: with
// clock timestamps taken before the lock, a slower concurrent call could
// store an older time over a newer record; epochs taken under the lock
// cannot.)
func TestRevocationConcurrent(t *testing.T) {
	c, _, _ := newTaggedCache(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				switch (i + w) % 3 {
				case 0:
					c.InvalidateSession("s1")
				case 1:
					c.InvalidateIdentity(fmt.Sprint("other", i))
				default:
					c.Purge()
				}
			}
		})
	}
	for i := range 300 {
		key := NewKey("mesh", 2, fmt.Sprint("cookie", i))
		if _, _, err := c.Get(t.Context(), key, "s1 i1"); err != nil {
			t.Fatal(err)
		}
		c.InvalidateSession("s1")
		// The entry fetched before that returned must be void now.
		if _, src, _ := c.Get(t.Context(), key, "s1 i1"); src != Miss {
			t.Fatalf("round %d: the entry fetched before InvalidateSession returned was a %v", i, src)
		}
	}
	close(stop)
	wg.Wait()
}

// TestRevocationClockStep: a wall clock that steps back (NTP step, VM
// resume) must not make an invalidation miss entries fetched before it;
// revocation order does not depend on the clock.
func TestRevocationClockStep(t *testing.T) {
	c, _, clk := newTaggedCache(t)
	key := NewKey("mesh", 2, "cookie1")
	before, src, err := c.Get(t.Context(), key, "s1 i1")
	if err != nil || src != Miss {
		t.Fatalf("fill: %v %v", src, err)
	}
	clk.Advance(-2 * time.Second) // the wall clock steps back
	c.InvalidateSession("s1")
	if v, src, _ := c.Get(t.Context(), key, "s1 i1"); v == before {
		t.Errorf("after InvalidateSession returned, the JWT fetched before it was served (%v %q)", src, v)
	}
}
