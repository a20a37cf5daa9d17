package bench_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/noop"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// realServer runs the real Check server behind pkg/server's gRPC server, as
// `serve` does, and returns its address.
func realServer(tb testing.TB, fake *fakeory.Fake) string {
	tb.Helper()
	az, err := bench.NewServer(fake.URL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(az.Close) // after the server stopped
	return servertest.Start(tb, server.Options{Authz: az, ShutdownTimeout: time.Second}).GRPC
}

func noopServer(tb testing.TB, jwtBytes int) string {
	tb.Helper()
	l := servertest.Listen(tb)
	gs := noop.NewGRPCServer(jwtBytes, noop.Identity{})
	go func() { _ = gs.Serve(l) }()
	tb.Cleanup(gs.Stop)
	return l.Addr().String()
}

// BenchmarkGRPCCheck compares a cache hit of the real server with the no-op
// baseline over loopback gRPC, client and server in this process: 1000
// sessions, the browser headers of pkg/authz's benchmarks, parallel callers
// over two connections. Compare the two ns/op of one run, never across
// machines.
func BenchmarkGRPCCheck(b *testing.B) {
	fake := fakeory.New()
	b.Cleanup(fake.Close)
	const sessions = 1000
	reqs := make([]*authv3.CheckRequest, sessions)
	for i := range reqs {
		reqs[i] = load.CheckRequest(fake.NewSession().CookiePair())
	}
	realAddr := realServer(b, fake)
	s := fake.NewSession()
	jwt, err := fake.Mint(s, "mesh")
	if err != nil {
		b.Fatal(err)
	}
	noopAddr := noopServer(b, len(jwt))
	ctx := context.Background()
	for _, bc := range []struct{ name, addr string }{{"hit", realAddr}, {"noop", noopAddr}} {
		p, err := load.Dial(bc.addr, 2)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		for i, r := range reqs {
			if resp, err := p.Client(i).Check(ctx, r); err != nil || resp.GetStatus().GetCode() != 0 {
				b.Fatalf("%s warm-up: %v %v", bc.name, resp.GetStatus(), err)
			}
		}
		calls := fake.Calls()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(n.Add(1)) * 7919
				for pb.Next() {
					if _, err := p.Client(i).Check(ctx, reqs[i%sessions]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
		if fake.Calls() != calls {
			b.Fatalf("%s: cache hits called Ory %d times", bc.name, fake.Calls()-calls)
		}
	}
}

func TestNoopResponseShape(t *testing.T) {
	resp := noop.Response(550, noop.Identity{})
	h := resp.GetOkResponse().GetHeaders()
	if resp.GetStatus().GetCode() != 0 || len(h) != 1 || h[0].GetHeader().GetKey() != "authorization" ||
		len(h[0].GetHeader().GetValue()) != len("Bearer ")+550 || h[0].GetAppend().GetValue() {
		t.Fatalf("noop response = %v", resp)
	}
	if !resp.GetDynamicMetadata().GetFields()["cached"].GetBoolValue() {
		t.Error("noop metadata is not that of a cache hit")
	}
}

// TestNoopResponseIdentity: the identity headers follow authorization, in
// order, set (not appended) as the real server sets them.
func TestNoopResponseIdentity(t *testing.T) {
	id := noop.Identity{Headers: [][2]string{{"x-user-id", "u"}, {"x-user-email", "e"}}, Remove: []string{"x-user-aal"}}
	ok := noop.Response(550, id).GetOkResponse()
	hs := ok.GetHeaders()
	if len(hs) != 3 || hs[0].GetHeader().GetKey() != "authorization" || hs[1].GetHeader().GetKey() != "x-user-id" ||
		hs[2].GetHeader().GetValue() != "e" || hs[2].GetAppend().GetValue() || hs[2].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD ||
		!slices.Equal(ok.GetHeadersToRemove(), id.Remove) {
		t.Errorf("noop response with identity headers = %v", ok)
	}
}

// TestNoopMatchesPolicyAnswer: on the policy route (PolicyRoutes), the
// baseline built from the real server's answer (IdentityOf, as make bench
// does) sets the same headers with values of the same length, removes the
// same names, and is as large on the wire within a few bytes of framing
// (the real answer carries its cached part and its identity part as two
// ok_response occurrences).
func TestNoopMatchesPolicyAnswer(t *testing.T) {
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	fake.SetClaims(func(c map[string]any) { c["roles"] = bench.PolicyRoles })
	tab, err := routes.Parse([]byte(bench.PolicyRoutes()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tab.Rules()); n != bench.PolicyRules {
		t.Fatalf("PolicyRoutes has %d rules, want %d", n, bench.PolicyRules)
	}
	az, err := bench.NewRoutesServer(fake.URL, tab)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	s := fake.NewSession()
	req := load.CheckRequest(s.CookiePair())
	if _, err := az.Check(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	hit, err := az.Check(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := proto.Marshal(hit)
	if err != nil {
		t.Fatal(err)
	}
	var real authv3.CheckResponse
	if err := proto.Unmarshal(wire, &real); err != nil {
		t.Fatal(err)
	}
	id := noop.IdentityOf(&real)
	headers := func(r *authv3.CheckResponse) map[string]int {
		m := map[string]int{}
		for _, h := range r.GetOkResponse().GetHeaders() {
			m[h.GetHeader().GetKey()] = len(h.GetHeader().GetValue())
		}
		return m
	}
	got := headers(&real)
	if got[bench.PolicyUserID] != len(s.IdentityID) || got[bench.PolicyUserEmail] != len(s.IdentityID+"@example.org") ||
		!slices.Equal(id.Remove, []string{bench.PolicyOtherHeader}) {
		t.Fatalf("real answer: headers %v, removes %v", got, id.Remove)
	}
	jwt := strings.TrimPrefix(real.GetOkResponse().GetHeaders()[slices.IndexFunc(real.GetOkResponse().GetHeaders(), func(h *corev3.HeaderValueOption) bool {
		return h.GetHeader().GetKey() == "authorization"
	})].GetHeader().GetValue(), "Bearer ")
	base := noop.Response(len(jwt), id)
	if want := headers(base); !maps.Equal(got, want) {
		t.Errorf("baseline headers %v, real %v", want, got)
	}
	if !slices.Equal(base.GetOkResponse().GetHeadersToRemove(), real.GetOkResponse().GetHeadersToRemove()) {
		t.Errorf("baseline removes %v, real %v", base.GetOkResponse().GetHeadersToRemove(), real.GetOkResponse().GetHeadersToRemove())
	}
	if d := proto.Size(base) - len(wire); d < -16 || d > 16 {
		t.Errorf("baseline answer %d bytes, real %d", proto.Size(base), len(wire))
	}
	t.Logf("answer on the wire: real %d bytes, baseline %d", len(wire), proto.Size(base))
}
