package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

func benchServer(b *testing.B, fake *fakeory.Fake) *authz.Server {
	b.Helper()
	s, err := bench.NewServer(fake.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// BenchmarkCheckCacheHit is the hot path: a warm session, no Ory call.
func BenchmarkCheckCacheHit(b *testing.B) {
	fake := fakeory.New()
	b.Cleanup(fake.Close)
	benchCacheHit(b, fake, benchServer(b, fake))
}

// BenchmarkCheckCacheHitRoutes200 is the hot path with a route table of
// 200 rules, the request's path (/api/orders) matching the last one: 200
// rules tried, the path in normal form (one reading).
func BenchmarkCheckCacheHitRoutes200(b *testing.B) {
	fake := fakeory.New()
	b.Cleanup(fake.Close)
	var yaml strings.Builder
	yaml.WriteString("rules:\n")
	for i := range 199 {
		fmt.Fprintf(&yaml, "  - {name: r%d, match: {host: h%d.example.org, path: {prefix: /svc%d/}}, on_missing: allow}\n", i, i, i)
	}
	yaml.WriteString("  - {name: api, match: {path: {prefix: /api/}}, tokenize_as: mesh}\n")
	tab, err := routes.Parse([]byte(yaml.String()))
	if err != nil {
		b.Fatal(err)
	}
	cfg := bench.Config()
	oc, err := ory.New(ory.Options{BaseURL: fake.URL, Timeout: cfg.WhoamiTimeout, MaxJWTBytes: config.MaxCredentialBytes})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(oc.Close)
	o := cfg.AuthzOptions(oc)
	o.Routes = staticTable{tab}
	s, err := authz.New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	benchCacheHit(b, fake, s)
}

func benchCacheHit(b *testing.B, fake *fakeory.Fake, s *authz.Server) {
	const sessions = 1000
	reqs := make([]*authv3.CheckRequest, sessions)
	for i := range reqs {
		reqs[i] = load.CheckRequest(fake.NewSession().CookiePair())
		if resp, err := s.Check(context.Background(), reqs[i]); err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatalf("warm-up: %v %v", resp, err)
		}
	}
	calls := fake.Calls()
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.Check(ctx, reqs[i%sessions]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)) * 7919
			for pb.Next() {
				if _, err := s.Check(ctx, reqs[i%sessions]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	if fake.Calls() != calls {
		b.Fatalf("cache hits called Ory %d times", fake.Calls()-calls)
	}
}

// BenchmarkCheckCoalescedMiss: 50 concurrent checks of one cold session
// per op, Ory answering in about 1ms; one whoami call per op.
func BenchmarkCheckCoalescedMiss(b *testing.B) {
	fake := fakeory.New()
	b.Cleanup(fake.Close)
	fake.SetHook(func(http.ResponseWriter, *http.Request) bool { time.Sleep(time.Millisecond); return false })
	s := benchServer(b, fake)
	const waiters = 50
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		req := load.CheckRequest(fake.NewSession().CookiePair())
		errs := make(chan error, waiters)
		for range waiters {
			go func() {
				resp, err := s.Check(ctx, req)
				if err == nil && resp.GetStatus().GetCode() != 0 {
					err = fmt.Errorf("status %v", resp.GetStatus())
				}
				errs <- err
			}()
		}
		for range waiters {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(fake.Calls())/float64(b.N), "whoami/op")
}
