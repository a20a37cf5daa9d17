// Command noop is the baseline ext_authz server of `make bench`: every Check
// gets one prebuilt OK response (see internal/bench/noop), with --header and
// --remove the identity headers of a route's answer too. With --http-addr
// it is the forward-auth baseline instead: an HTTP server answering every
// request 200 with the headers of a /auth hit (noop.NewHTTPServer). It
// listens on a loopback address only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/noop"
)

func main() { bench.Main("noop", run) }

func run() error {
	addr := flag.String("grpc-addr", "127.0.0.1:0", "loopback listen address")
	httpAddr := flag.String("http-addr", "", "serve the HTTP forward-auth baseline on this loopback address instead of gRPC")
	jwtBytes := flag.Int("jwt-bytes", 520, "length of the JWT in the authorization header")
	var id noop.Identity
	flag.Func("header", "name=value: an identity header the answer also sets (repeatable, in order)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want name=value")
		}
		id.Headers = append(id.Headers, [2]string{k, v})
		return nil
	})
	flag.Func("remove", "a header name the answer removes (headers_to_remove; repeatable)", func(s string) error {
		id.Remove = append(id.Remove, s)
		return nil
	})
	flag.Parse()
	if *httpAddr != "" {
		addr = httpAddr
	}
	if !strings.HasPrefix(*addr, "127.0.0.1:") {
		return fmt.Errorf("listen address %q: loopback only", *addr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *httpAddr != "" {
		return serveHTTP(ctx, *addr, *jwtBytes)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	gs := noop.NewGRPCServer(*jwtBytes, id)
	go func() {
		<-ctx.Done()
		gs.Stop()
	}()
	fmt.Fprintf(os.Stderr, "noop serving on %s\n", l.Addr())
	return gs.Serve(l)
}

// serveHTTP serves the forward-auth baseline on addr until ctx is done.
func serveHTTP(ctx context.Context, addr string, jwtBytes int) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	hs := noop.NewHTTPServer(jwtBytes)
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	fmt.Fprintf(os.Stderr, "noop serving HTTP on %s\n", l.Addr())
	if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
