// Package server runs the listeners of ory-ext-authz: the gRPC server (ext_authz,
// grpc.health.v1 and reflection) and the HTTP server (liveness, readiness), and
// shuts them down in the order Envoy needs: health turns NOT_SERVING first, then
// in-flight checks finish, then the listeners close.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Options configure Run.
type Options struct {
	// GRPC and HTTP are the listeners; Run closes them.
	GRPC, HTTP net.Listener
	Authz      authv3.AuthorizationServer
	// ShutdownDelay is how long NOT_SERVING is reported before the
	// listeners stop accepting.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// GRPCOptions are added to the gRPC server's options (TLS credentials,
	// interceptors).
	GRPCOptions []grpc.ServerOption
	// Metrics, when set, is served at GET /metrics on the HTTP listener.
	Metrics http.Handler
	// Admin, when set, is the listener of a separate gRPC server on which
	// RegisterAdmin registers the admin API. The admin API is never
	// registered on the ext_authz server.
	Admin            net.Listener
	RegisterAdmin    func(*grpc.Server)
	AdminGRPCOptions []grpc.ServerOption
}

// authzService is the service name health reports for, next to "" (the whole server).
const authzService = "envoy.service.auth.v3.Authorization"

// Run serves until ctx is done, then shuts down gracefully and returns nil;
// it returns an error if a listener fails.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := append([]grpc.ServerOption{
		// Envoy keeps long-lived HTTP/2 connections and may ping them.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}, o.GRPCOptions...)
	gs := grpc.NewServer(opts...)
	hs := health.NewServer()
	authv3.RegisterAuthorizationServer(gs, o.Authz)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authzService, healthpb.HealthCheckResponse_SERVING)

	var ready atomic.Bool
	ready.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 3)
	go func() { errc <- serveErr("grpc", gs.Serve(o.GRPC)) }()
	go func() { errc <- serveErr("http", hsrv.Serve(o.HTTP)) }()
	var as *grpc.Server
	adminAddr := ""
	if o.Admin != nil {
		as = grpc.NewServer(o.AdminGRPCOptions...)
		if o.RegisterAdmin != nil {
			o.RegisterAdmin(as)
		}
		reflection.Register(as)
		adminAddr = o.Admin.Addr().String()
		go func() { errc <- serveErr("admin", as.Serve(o.Admin)) }()
	}
	log.Info("serving", "grpc_addr", o.GRPC.Addr().String(), "http_addr", o.HTTP.Addr().String(), "admin_addr", adminAddr)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: health is NOT_SERVING", "delay", o.ShutdownDelay.String(), "timeout", o.ShutdownTimeout.String())
	case runErr = <-errc:
		log.Error("listener failed, shutting down", "error", runErr.Error())
	}

	// Tell Envoy's health checks and Kubernetes first, so traffic moves away
	// while this server still answers.
	ready.Store(false)
	hs.Shutdown()
	if o.ShutdownDelay > 0 {
		time.Sleep(o.ShutdownDelay)
	}
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	timer := time.NewTimer(o.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		log.Warn("in-flight requests did not finish within the shutdown timeout; closing them")
		gs.Stop()
		<-done
	}
	if as != nil {
		as.Stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := hsrv.Shutdown(sctx); err != nil {
		_ = hsrv.Close()
	}
	log.Info("stopped")
	return runErr
}

func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s listener: %w", name, err)
}
