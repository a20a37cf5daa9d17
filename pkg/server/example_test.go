package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// Run serves an ext_authz server (here one that answers nothing) with its
// probes, until the context ends; then it drains and returns.
func ExampleRun() {
	grpcL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	httpL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{
			GRPC: grpcL, HTTP: httpL,
			Authz:           authv3.UnimplementedAuthorizationServer{},
			ShutdownTimeout: time.Second,
		})
	}()
	// Run serves from the moment it is called; the listeners exist already.
	resp, err := http.Get("http://" + httpL.Addr().String() + "/readyz")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	fmt.Printf("%d %s", resp.StatusCode, body)
	stop()
	fmt.Println(<-done)
	// Output:
	// 200 ok
	// <nil>
}
