package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/checktest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// TestOryFaults covers every fault of a failing Ory with the fake: the
// answer of Check, a log line, nothing cached, warm entries serving until
// their hard expiry, and recovery on the first request once Ory is healthy.
// Goroutine leaks are checked for the whole package in TestMain.
func TestOryFaults(t *testing.T) {
	tests := []struct {
		name string
		// fault breaks Ory; heal repairs it.
		fault func(t *testing.T, f *fakeory.Fake)
		heal  func(t *testing.T, f *fakeory.Fake)
		want  codes.Code
		log   string // a log line says this
		// backoff: Ory asked us to pause, so the second check must not
		// reach it, and recovery needs the pause to pass.
		backoff time.Duration
		// unreachable: the calls never reach the fake to be counted.
		unreachable bool
	}{
		{name: "slow beyond the whoami timeout", fault: hook(fakeory.Slow(5 * time.Second)), want: codes.Unavailable, log: "timeout"},
		{name: "connection refused", fault: func(_ *testing.T, f *fakeory.Fake) { f.Down() }, heal: func(t *testing.T, f *fakeory.Fake) {
			if err := f.Up(); err != nil {
				t.Fatal(err)
			}
		}, want: codes.Unavailable, log: "connection refused", unreachable: true},
		{name: "connection reset mid-answer", fault: hook(fakeory.Reset), want: codes.Unavailable, log: "Ory unavailable"},
		{name: "500", fault: hook(fakeory.Status(500, "")), want: codes.Unavailable, log: "HTTP 500"},
		{name: "502", fault: hook(fakeory.Status(502, "")), want: codes.Unavailable, log: "HTTP 502"},
		{name: "429 with Retry-After", fault: hook(fakeory.Status(429, "3")), want: codes.Unavailable, log: "HTTP 429", backoff: 3 * time.Second},
		{name: "200 not JSON", fault: hook(fakeory.Body("<html>maintenance</html>")), want: codes.Unavailable, log: "unreadable answer"},
		{name: "200 without tokenized", fault: hook(fakeory.Body(`{"id":"x","active":true}`)), want: codes.Unavailable, log: "no tokenized JWT"},
		{name: "JWT without exp", fault: claims(func(c map[string]any) { delete(c, "exp") }), want: codes.Internal, log: "without exp"},
		{name: "JWT already expired", fault: claims(func(c map[string]any) { c["exp"] = c["iat"].(int64) - 60 }), want: codes.Internal, log: "set a ttl on the template"},
		{name: "JWT over 16 KiB", fault: claims(func(c map[string]any) { c["pad"] = strings.Repeat("x", 17<<10) }), want: codes.Unavailable, log: "exceeds 16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakeory.New()
			t.Cleanup(fake.Close)
			e := newEnvFull(t, fake, func(o *ory.Options) { o.Timeout = 300 * time.Millisecond })
			warm, cold := fake.NewSession(), fake.NewSession()
			warmReq := req(map[string]string{"cookie": warm.CookiePair()}, nil)
			coldReq := req(map[string]string{"cookie": cold.CookiePair()}, nil)
			warmJWT := checktest.BearerJWT(t, mustCheck(t, e, warmReq))

			tt.fault(t, fake)
			before := fake.Calls()
			for i := range 2 {
				if _, err := check(t, e, coldReq); status.Code(err) != tt.want {
					t.Fatalf("check %d: err = %v, want gRPC %v", i, err, tt.want)
				}
			}
			// Nothing was cached: the second check asked Ory again, unless
			// Ory asked for a pause.
			wantCalls := int64(2)
			switch {
			case tt.unreachable:
				wantCalls = 0
			case tt.backoff > 0:
				wantCalls = 1
			}
			if got := fake.Calls() - before; got != wantCalls {
				t.Errorf("Ory calls during the fault = %d, want %d", got, wantCalls)
			}
			if !strings.Contains(e.logs.String(), tt.log) {
				t.Errorf("no log line says %q; log:\n%s", tt.log, e.logs.String())
			}
			// The warm entry serves through the fault, also past its
			// refresh-ahead point (45s of 60s), until its hard expiry (55s).
			if got := checktest.BearerJWT(t, mustCheck(t, e, warmReq)); got != warmJWT {
				t.Error("warm entry not served during the fault")
			}
			e.clock.Advance(50 * time.Second)
			if got := checktest.BearerJWT(t, mustCheck(t, e, warmReq)); got != warmJWT {
				t.Error("warm entry not served past its refresh-ahead point during the fault")
			}
			e.az.WaitRefreshes()
			e.clock.Advance(5 * time.Second)
			if _, err := check(t, e, warmReq); status.Code(err) == codes.OK {
				t.Error("warm entry served past its hard expiry")
			}

			if tt.heal != nil {
				tt.heal(t, fake)
			} else {
				fake.SetHook(nil)
				fake.SetClaims(nil)
			}
			e.clock.Advance(tt.backoff)
			if c := claimsOf(t, fake, checktest.BearerJWT(t, mustCheck(t, e, coldReq))); c["sub"] != cold.IdentityID {
				t.Errorf("after recovery sub = %v", c["sub"])
			}
			if c := claimsOf(t, fake, checktest.BearerJWT(t, mustCheck(t, e, warmReq))); c["sub"] != warm.IdentityID {
				t.Errorf("after recovery sub = %v", c["sub"])
			}
		})
	}
}

func hook(h func(http.ResponseWriter, *http.Request) bool) func(*testing.T, *fakeory.Fake) {
	return func(_ *testing.T, f *fakeory.Fake) { f.SetHook(h) }
}

func claims(c func(map[string]any)) func(*testing.T, *fakeory.Fake) {
	return func(_ *testing.T, f *fakeory.Fake) { f.SetClaims(c) }
}

// TestOryMaxInflight: with a cap of 2 and a stuck Ory, misses over the cap
// wait a quarter of the whoami timeout for a slot, then fail with
// Unavailable instead of queueing without bound (the two calls in flight
// get no answer, so Ory is not making progress).
func TestOryMaxInflight(t *testing.T) {
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	fake.SetHook(func(_ http.ResponseWriter, r *http.Request) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	})
	e := newEnvFull(t, fake, func(o *ory.Options) { o.MaxInflight = 2; o.Timeout = 4 * time.Second })
	held := make(chan error, 2)
	for range 2 {
		s := fake.NewSession()
		go func() {
			_, err := check(t, e, req(map[string]string{"cookie": s.CookiePair()}, nil))
			held <- err
		}()
	}
	testwait.For(t, "2 calls in flight at Ory", func() bool { return fake.Calls() == 2 })
	over := make(chan error, 5)
	for range 5 {
		s := fake.NewSession()
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, err := e.client.Check(ctx, req(map[string]string{"cookie": s.CookiePair()}, nil))
			over <- err
		}()
	}
	for range 5 {
		if err := <-over; status.Code(err) != codes.Unavailable {
			t.Fatalf("check over the cap: err = %v, want Unavailable", err)
		}
	}
	if fake.Calls() != 2 || fake.MaxConcurrent() != 2 {
		t.Errorf("Ory saw %d calls, %d at once; want 2 and 2", fake.Calls(), fake.MaxConcurrent())
	}
	once.Do(func() { close(release) })
	for range 2 {
		if err := <-held; err != nil {
			t.Errorf("held check: %v", err)
		}
	}
}

// TestOryMaxInflightDrains: with a cap of 2 and an Ory that answers every
// call, slowly, a burst of misses longer than the cap's patience (a quarter
// of the whoami timeout) drains: every check is allowed, Ory never sees more
// than 2 calls at once.
func TestOryMaxInflightDrains(t *testing.T) {
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	fake.SetHook(fakeory.Slow(150 * time.Millisecond))
	// Patience 250ms; 12 sessions over 2 slots take 6 x 150ms = 900ms,
	// within the 2s fetch timeout.
	e := newEnvFull(t, fake, func(o *ory.Options) { o.MaxInflight = 2; o.Timeout = time.Second })
	const n = 12
	errs := make(chan error, n)
	for range n {
		s := fake.NewSession()
		go func() {
			resp, err := check(t, e, req(map[string]string{"cookie": s.CookiePair()}, nil))
			if err == nil && resp.GetStatus().GetCode() != 0 {
				err = fmt.Errorf("status %v", resp.GetStatus())
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("check in the burst: %v", err)
		}
	}
	if fake.Calls() != n || fake.MaxConcurrent() != 2 {
		t.Errorf("Ory saw %d calls, %d at once; want %d and 2", fake.Calls(), fake.MaxConcurrent(), n)
	}
}
