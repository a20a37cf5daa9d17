// Package servertest runs pkg/server in tests: on fresh 127.0.0.1 listeners,
// stopped (and checked) when the test ends.
package servertest

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// Addrs are the addresses a started server listens on.
type Addrs struct {
	GRPC, HTTP string
	// Admin is empty unless the options registered an admin API.
	Admin string
	// ForwardAuth is empty unless the options have a ForwardAuthHandler.
	ForwardAuth string
}

// Start runs server.Run with o on new loopback listeners (o.GRPC and o.HTTP
// are set here, o.Admin when o.RegisterAdmin is set and o.ForwardAuth, unless
// given, when o.ForwardAuthHandler is; a zero
// ShutdownTimeout becomes 5s) and returns their addresses. At cleanup it
// stops the server and fails t if Run returned an error. Cleanups registered
// before Start run after the server stopped.
func Start(t testing.TB, o server.Options) Addrs {
	t.Helper()
	o.GRPC, o.HTTP = Listen(t), Listen(t)
	var a Addrs
	if o.RegisterAdmin != nil {
		o.Admin = Listen(t)
		a.Admin = o.Admin.Addr().String()
	}
	if o.ForwardAuthHandler != nil {
		if o.ForwardAuth == nil {
			o.ForwardAuth = Listen(t)
		}
		a.ForwardAuth = o.ForwardAuth.Addr().String()
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	// Not t.Context(): it is cancelled before cleanups run, and the cleanup
	// wants to see Run return.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	})
	a.GRPC, a.HTTP = o.GRPC.Addr().String(), o.HTTP.Addr().String()
	return a
}

// Listen returns a TCP listener on a free 127.0.0.1 port.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// FreeAddr returns a 127.0.0.1 address that was free a moment ago, for a
// program that opens its own listeners from flags (serve). Prefer Listen
// where a listener can be handed over: another process may take the port in
// between.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l := Listen(t)
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// Dial returns a plaintext gRPC connection to addr, closed at cleanup.
func Dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Do sends an HTTP request of method to url with the headers h and returns
// the response and its whole body (closed).
func Do(t testing.TB, method, url string, h map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
