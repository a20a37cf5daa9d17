package bench_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/noop"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
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
	gs := noop.NewGRPCServer(jwtBytes)
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
	resp := noop.Response(550)
	h := resp.GetOkResponse().GetHeaders()
	if resp.GetStatus().GetCode() != 0 || len(h) != 1 || h[0].GetHeader().GetKey() != "authorization" ||
		len(h[0].GetHeader().GetValue()) != len("Bearer ")+550 || h[0].GetAppend().GetValue() {
		t.Fatalf("noop response = %v", resp)
	}
	if !resp.GetDynamicMetadata().GetFields()["cached"].GetBoolValue() {
		t.Error("noop metadata is not that of a cache hit")
	}
}
