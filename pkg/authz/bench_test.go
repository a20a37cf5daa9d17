package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
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
	benchCacheHit(b, fake, benchServer(b, fake), nil)
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
	benchCacheHit(b, fake, routesServer(b, fake, yaml.String()), nil)
}

// BenchmarkCheckCacheHitPolicy is the hot path on a route with a policy:
// internal/bench's PolicyRoutes, 200 rules of which the request matches
// the last, whose `authorize` expression ("admin" in claims.roles &&
// claims.sub == session.identity_id) runs on every hit and whose two
// identity headers (x-user-id, x-user-email) are merged into the answer,
// which also removes the table's third identity header. Before the timer
// it checks that the answer sets both headers from the JWT's claims and
// that a session without the role is denied on a cache hit too.
func BenchmarkCheckCacheHitPolicy(b *testing.B) {
	fake := fakeory.New()
	b.Cleanup(fake.Close)
	var roleless atomic.Pointer[fakeory.Session]
	fake.SetClaims(func(c map[string]any) {
		if s := roleless.Load(); s == nil || c["sub"] != s.IdentityID {
			c["roles"] = bench.PolicyRoles
		}
	})
	s := routesServer(b, fake, bench.PolicyRoutes())
	benchCacheHit(b, fake, s, func(b *testing.B, sessions []*fakeory.Session) {
		ctx := context.Background()
		sess := sessions[0]
		resp, err := s.Check(ctx, load.CheckRequest(sess.CookiePair()))
		if err != nil {
			b.Fatal(err)
		}
		// As Envoy reads it: the cached bytes and the identity part merged.
		wire, err := proto.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		var got authv3.CheckResponse
		if err := proto.Unmarshal(wire, &got); err != nil {
			b.Fatal(err)
		}
		set := map[string]string{}
		for _, h := range got.GetOkResponse().GetHeaders() {
			set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if got.GetStatus().GetCode() != 0 || !strings.HasPrefix(set["authorization"], "Bearer ") ||
			set[bench.PolicyUserID] != sess.IdentityID || set[bench.PolicyUserEmail] != sess.IdentityID+"@example.org" ||
			!slices.Equal(got.GetOkResponse().GetHeadersToRemove(), []string{bench.PolicyOtherHeader}) {
			b.Fatalf("policy hit: status %v, headers %v, removed %v; want OK with authorization, %s: %s, %s: %s@example.org, removing %s",
				got.GetStatus(), set, got.GetOkResponse().GetHeadersToRemove(), bench.PolicyUserID, sess.IdentityID, bench.PolicyUserEmail, sess.IdentityID, bench.PolicyOtherHeader)
		}
		// A session without the role: denied when it is fetched, and again
		// from the cache (the expression runs on every hit, not at fill).
		r := fake.NewSession()
		roleless.Store(r)
		req := load.CheckRequest(r.CookiePair())
		for i, want := range []int64{1, 0} {
			calls := fake.Calls()
			resp, err := s.Check(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied || resp.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_Forbidden {
				b.Fatalf("check %d of a session without the role: %v, want 403", i+1, resp)
			}
			if n := fake.Calls() - calls; n != want {
				b.Fatalf("check %d of a session without the role: %d whoami calls, want %d", i+1, n, want)
			}
		}
	})
}

// routesServer is the benchmark server with the route table yaml.
func routesServer(b *testing.B, fake *fakeory.Fake, yaml string) *authz.Server {
	b.Helper()
	tab, err := routes.Parse([]byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	s, err := bench.NewRoutesServer(fake.URL, tab)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// benchCacheHit fills s with 1000 sessions of fake, runs verify (when not
// nil) on them, and then times hits of those sessions, serial and parallel.
func benchCacheHit(b *testing.B, fake *fakeory.Fake, s *authz.Server, verify func(*testing.B, []*fakeory.Session)) {
	const sessions = 1000
	reqs := make([]*authv3.CheckRequest, sessions)
	ss := make([]*fakeory.Session, sessions)
	for i := range reqs {
		ss[i] = fake.NewSession()
		reqs[i] = load.CheckRequest(ss[i].CookiePair())
		if resp, err := s.Check(context.Background(), reqs[i]); err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatalf("warm-up: %v %v", resp, err)
		}
	}
	if verify != nil {
		verify(b, ss)
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
