package redistier_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

type invalidation struct {
	kind, id string
	at       time.Time
}

// subscriber runs Subscribe on a Tier and records what its callbacks saw.
type subscriber struct {
	got    record[invalidation]
	events record[string] // "lost", "restored"
	done   chan struct{}
}

// record is what a callback appended, read by the test meanwhile.
type record[T any] struct {
	mu   sync.Mutex
	list []T
}

func (r *record[T]) add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, v)
}

func (r *record[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.list...)
}

func subscribe(t *testing.T, tier *redistier.Tier) *subscriber {
	t.Helper()
	s := &subscriber{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer close(s.done)
		tier.Subscribe(ctx,
			func(kind, id string, at time.Time) { s.got.add(invalidation{kind, id, at}) },
			func() { s.events.add("lost") },
			func() { s.events.add("restored") })
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// waitEvents waits until the events seen are want (in order).
func (s *subscriber) waitEvents(t *testing.T, want ...string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("subscription events: %q", s.events.all())
		}
	}()
	testwait.Within(t, 15*time.Second, "subscription events "+strings.Join(want, ","), func() bool {
		got := s.events.all()
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("subscription events %q, want %q", got, want)
			}
		}
		return true
	})
}

func TestInvalidateReachesEverySubscriber(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b, admin := healthyTier(t, srv, nil), healthyTier(t, srv, nil), healthyTier(t, srv, nil)
	subA, subB := subscribe(t, a.tier), subscribe(t, b.tier)
	subA.waitEvents(t, "restored")
	subB.waitEvents(t, "restored")

	at := time.Unix(1_800_000_000, 123456789)
	n, err := admin.tier.Invalidate(t.Context(), redistier.KindSession, "sess-1", at)
	if err != nil || n != 2 {
		t.Fatalf("Invalidate = %d, %v; want 2 receivers", n, err)
	}
	want := invalidation{redistier.KindSession, "sess-1", at}
	for name, s := range map[string]*subscriber{"a": subA, "b": subB} {
		testwait.Within(t, 5*time.Second, name+" to get the invalidation", func() bool { return len(s.got.all()) == 1 })
		if got := s.got.all()[0]; got.kind != want.kind || got.id != want.id || !got.at.Equal(want.at) {
			t.Fatalf("%s got %+v, want %+v", name, got, want)
		}
	}
	// The record is readable by every replica, and keeps the latest time.
	for _, e := range []tierEnv{a, b} {
		got, ok, err := e.tier.InvalidatedAt(t.Context(), redistier.KindSession, "sess-1")
		if err != nil || !ok || !got.Equal(at) {
			t.Fatalf("InvalidatedAt = %v, %v, %v; want %v", got, ok, err, at)
		}
	}
	if _, err := b.tier.Invalidate(t.Context(), redistier.KindSession, "sess-1", at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := a.tier.InvalidatedAt(t.Context(), redistier.KindSession, "sess-1"); !got.Equal(at) {
		t.Fatalf("an older invalidation moved the record back to %v", got)
	}
	// Nothing recorded for another id, until a purge covers everything.
	if _, ok, err := a.tier.InvalidatedAt(t.Context(), redistier.KindIdentity, "ident-9"); ok || err != nil {
		t.Fatalf("InvalidatedAt(identity) = %v, %v; want none", ok, err)
	}
	purge := at.Add(time.Minute)
	if n, err := a.tier.Invalidate(t.Context(), redistier.KindPurge, "", purge); err != nil || n != 2 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	for _, q := range []struct{ kind, id string }{{redistier.KindIdentity, "ident-9"}, {redistier.KindSession, "sess-1"}, {redistier.KindPurge, ""}} {
		if got, ok, err := b.tier.InvalidatedAt(t.Context(), q.kind, q.id); err != nil || !ok || !got.Equal(purge) {
			t.Fatalf("InvalidatedAt(%s) after purge = %v, %v, %v; want %v", q.kind, got, ok, err, purge)
		}
	}
	testwait.Within(t, 5*time.Second, "the purge to reach b", func() bool { return len(subB.got.all()) == 3 })
	if got := subB.got.all()[2]; got.kind != redistier.KindPurge || got.id != "" {
		t.Fatalf("b got %+v", got)
	}

	// A forged message is dropped; the subscription carries on.
	srv.Do("PUBLISH", redistier.DefaultChannel, "not a sealed message")
	if _, err := admin.tier.Invalidate(t.Context(), redistier.KindIdentity, "ident-2", at); err != nil {
		t.Fatal(err)
	}
	testwait.Within(t, 5*time.Second, "the next invalidation to reach a", func() bool { return len(subA.got.all()) == 4 })
	if got := subA.got.all()[3]; got.id != "ident-2" {
		t.Fatalf("a got %+v after a forged message", got)
	}
	if a.obs.count("message/forged") != 1 {
		t.Fatalf("observed %v", a.obs.counts)
	}
}

// A killed subscription connection and a restarted Redis both show as
// onLost then onRestored, and invalidations flow again afterwards.
func TestSubscriptionLossAndRestore(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	sub, pub := healthyTier(t, srv, nil), healthyTier(t, srv, nil)
	s := subscribe(t, sub.tier)
	s.waitEvents(t, "restored")

	if n := srv.KillClients("TYPE", "pubsub"); n != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub killed %d, want 1", n)
	}
	s.waitEvents(t, "restored", "lost", "restored")

	srv.Restart()
	s.waitEvents(t, "restored", "lost", "restored", "lost", "restored")

	healthy(t, pub.tier)
	testwait.For(t, "an invalidation to get through after the restart", func() bool {
		n, err := pub.tier.Invalidate(t.Context(), redistier.KindSession, "after-restart", time.Now())
		return err == nil && n == 1
	})
	testwait.Within(t, 5*time.Second, "the subscriber to get it", func() bool { return len(s.got.all()) >= 1 })
}

// Close ends a running Subscribe.
func TestCloseEndsSubscribe(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := healthyTier(t, srv, nil)
	s := subscribe(t, env.tier)
	s.waitEvents(t, "restored")
	env.tier.Close()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe still running 10s after Close")
	}
}
