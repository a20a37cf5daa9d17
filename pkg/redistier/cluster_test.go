package redistier_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// Against a real 3-node Redis Cluster: values and locks spread over the
// nodes, the reads that span slots (a rotation's two key names, an
// invalidation record and the purge), the pause, and sharded pub/sub
// whose receiver count covers every subscriber.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	url := func(o *redistier.Options) { o.URL = cl.URL() }
	rotating := func(o *redistier.Options) { url(o); o.Secrets = [][]byte{secretB, secretA} }
	a, b := healthyTier(t, cl.Nodes[0], url), healthyTier(t, cl.Nodes[0], rotating)

	const n = 30
	for i := range n {
		mustSet(t, a.tier, key(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i)))
	}
	perNode := []int{}
	for _, s := range cl.Nodes {
		perNode = append(perNode, len(redistest.Values(s.Dump())))
	}
	for i, c := range perNode {
		if c == 0 {
			t.Fatalf("node %d holds no values (%v): not a cluster spread", i, perNode)
		}
	}
	for i := range n {
		mustGet(t, b.tier, key(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i))) // previous secret's names
	}

	k := key("locked")
	unlock := mustLock(t, a.tier, k, time.Minute)
	if _, ok, _ := newTier(t, cl.Nodes[0], url).tier.Lock(t.Context(), k, time.Minute); ok {
		t.Fatal("second Lock acquired")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = a.tier.Set(t.Context(), k, []byte("filled"), time.Minute)
		unlock()
	}()
	if v, ok := a.tier.WaitFor(t.Context(), k, 10*time.Second); !ok || string(v) != "filled" {
		t.Fatalf("WaitFor = %q, %v", v, ok)
	}

	until := time.Now().Add(time.Minute)
	if err := a.tier.Pause(t.Context(), until); err != nil {
		t.Fatal(err)
	}
	if got, err := b.tier.PausedUntil(t.Context()); err != nil || got.After(until) || until.Sub(got) > 5*time.Second {
		t.Fatalf("PausedUntil = %v, %v", got, err)
	}

	subA, subB := subscribe(t, a.tier), subscribe(t, b.tier)
	subA.waitEvents(t, "restored")
	subB.waitEvents(t, "restored")
	at := time.Unix(1_800_000_000, 0)
	if got, err := b.tier.Invalidate(t.Context(), redistier.KindIdentity, "ident-1", at); err != nil || got != 2 {
		t.Fatalf("Invalidate = %d, %v; want 2 receivers", got, err)
	}
	for _, s := range []*subscriber{subA, subB} {
		testwait.Within(t, 5*time.Second, "the invalidation to arrive", func() bool { return len(s.got.all()) == 1 })
	}
	if _, err := a.tier.Invalidate(t.Context(), redistier.KindPurge, "", at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := b.tier.InvalidatedAt(t.Context(), redistier.KindIdentity, "ident-1"); err != nil || !ok || !got.Equal(at.Add(time.Second)) {
		t.Fatalf("InvalidatedAt = %v, %v, %v", got, ok, err)
	}
}
