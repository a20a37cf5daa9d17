// Command noop is the baseline ext_authz server of `make bench`: every Check
// gets one prebuilt OK response (see internal/bench/noop), with --header and
// --remove the identity headers of a route's answer too. It listens on a
// loopback address only.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
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
	if !strings.HasPrefix(*addr, "127.0.0.1:") {
		return fmt.Errorf("--grpc-addr %q: loopback only", *addr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
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
