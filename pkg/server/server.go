package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
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
	// JWKS, when set (a *jwkspub.Publisher), is served at GET jwkspub.Path
	// on the HTTP listener, and on no other listener.
	JWKS http.Handler
	// Admin, when set, is the listener of a separate gRPC server on which
	// RegisterAdmin registers the admin API. The admin API is never
	// registered on the ext_authz server.
	Admin            net.Listener
	RegisterAdmin    func(*grpc.Server)
	AdminGRPCOptions []grpc.ServerOption
	// ForwardAuth, when set, is the listener of a separate HTTP server
	// serving ForwardAuthHandler (authz.Server.ForwardAuth: /auth and
	// /envoy/), with the HTTP listener's timeouts. Probes and metrics stay
	// on HTTP.
	ForwardAuth        net.Listener
	ForwardAuthHandler http.Handler
	// Timeouts of the listeners; zero fields are the defaults.
	Timeouts Timeouts
	// Panics, when set, counts the panics recovered on each gRPC server.
	Panics PanicObserver
	// Readiness, when set, sees what GET /readyz answers: ready once the
	// listeners serve, not ready from the start of the shutdown.
	Readiness ReadinessObserver
}

// ReadinessObserver sees the readiness GET /readyz reports (pkg/metrics).
type ReadinessObserver interface {
	ObserveReady(ready bool)
}

// The gRPC servers Run starts, as PanicObserver and the logs name them.
const (
	ExtAuthzServer = "ext_authz"
	AdminServer    = "admin"
)

// GRPCServers lists the names of the gRPC servers, for metrics that
// pre-create a series per server.
func GRPCServers() []string { return []string{ExtAuthzServer, AdminServer} }

// PanicObserver sees each panic recovered in a gRPC handler (pkg/metrics).
type PanicObserver interface {
	ObservePanic(server string)
}

// Defaults of Timeouts.
const (
	// DefaultHTTPReadHeaderTimeout bounds reading a request's headers
	// (slowloris).
	DefaultHTTPReadHeaderTimeout = 5 * time.Second
	// DefaultHTTPReadTimeout bounds reading a whole request; probes and
	// scrapes are bodiless GETs.
	DefaultHTTPReadTimeout = 10 * time.Second
	// DefaultHTTPWriteTimeout bounds a response, from the end of its
	// request's headers. Generous: a /metrics scrape can be large and the
	// scraper slow; Prometheus' own scrape_timeout is 10s by default.
	DefaultHTTPWriteTimeout = time.Minute
	// DefaultHTTPIdleTimeout closes a keep-alive connection idle for this
	// long. Above the usual scrape intervals (15s-60s), so Prometheus
	// reuses its connection.
	DefaultHTTPIdleTimeout = 2 * time.Minute
	// DefaultGRPCMaxConnectionIdle: a gRPC connection with no call for this
	// long gets a graceful GOAWAY (NO_ERROR); Envoy opens a new one when it
	// needs it. Pings do not count as calls.
	DefaultGRPCMaxConnectionIdle = 5 * time.Minute
	// DefaultGRPCKeepaliveMinTime is the shortest interval at which a
	// client may ping, with or without calls in flight; faster pings get
	// GOAWAY ENHANCE_YOUR_CALM (too_many_pings) after grpc-go's three
	// strikes. Envoy's connection_keepalive interval is set by operators,
	// commonly 10s-30s (deploy/envoy uses 30s), and its jitter only adds to
	// it; grpc-go clients never ping more often than every 10s. 5s leaves
	// those a margin of two or more, while a ping flood stays bounded.
	DefaultGRPCKeepaliveMinTime = 5 * time.Second
)

// Timeouts of the listeners. A zero field means its Default* constant.
type Timeouts struct {
	// HTTP listener: http.Server's ReadHeaderTimeout, ReadTimeout,
	// WriteTimeout and IdleTimeout.
	HTTPReadHeader, HTTPRead, HTTPWrite, HTTPIdle time.Duration
	// GRPCMaxConnectionIdle is keepalive.ServerParameters.MaxConnectionIdle
	// of both gRPC servers (ext_authz and admin).
	GRPCMaxConnectionIdle time.Duration
	// GRPCKeepaliveMinTime is keepalive.EnforcementPolicy.MinTime of both
	// gRPC servers; pings without calls in flight are permitted.
	GRPCKeepaliveMinTime time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.HTTPReadHeader, DefaultHTTPReadHeaderTimeout)
	def(&t.HTTPRead, DefaultHTTPReadTimeout)
	def(&t.HTTPWrite, DefaultHTTPWriteTimeout)
	def(&t.HTTPIdle, DefaultHTTPIdleTimeout)
	def(&t.GRPCMaxConnectionIdle, DefaultGRPCMaxConnectionIdle)
	def(&t.GRPCKeepaliveMinTime, DefaultGRPCKeepaliveMinTime)
	return t
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
	to := o.Timeouts.withDefaults()
	// Both gRPC servers: Envoy keeps long-lived HTTP/2 connections and may
	// ping them without a call in flight (connection_keepalive), which must
	// not earn a GOAWAY; a connection nobody uses is closed gracefully
	// rather than held forever. Callers' options come after, so they win.
	keep := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: to.GRPCKeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: to.GRPCMaxConnectionIdle}),
	}
	gs := grpc.NewServer(slices.Concat(keep, o.GRPCOptions, newRecoverer(ExtAuthzServer, log, o.Panics).options())...)
	hs := health.NewServer()
	authv3.RegisterAuthorizationServer(gs, o.Authz)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authzService, healthpb.HealthCheckResponse_SERVING)

	var ready atomic.Bool
	setReady := func(r bool) {
		ready.Store(r)
		if o.Readiness != nil {
			o.Readiness.ObserveReady(r)
		}
	}
	setReady(true)
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
	if o.JWKS != nil {
		mux.Handle("GET "+jwkspub.Path, o.JWKS)
	}
	// Every phase of a connection is bounded, an idle keep-alive one too.
	hsrv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: to.HTTPReadHeader,
		ReadTimeout:       to.HTTPRead,
		WriteTimeout:      to.HTTPWrite,
		IdleTimeout:       to.HTTPIdle,
	}

	errc := make(chan error, 4)
	go func() { errc <- serveErr("grpc", gs.Serve(o.GRPC)) }()
	go func() { errc <- serveErr("http", hsrv.Serve(o.HTTP)) }()
	var as *grpc.Server
	adminAddr := ""
	if o.Admin != nil {
		as = grpc.NewServer(slices.Concat(keep, o.AdminGRPCOptions, newRecoverer(AdminServer, log, o.Panics).options())...)
		if o.RegisterAdmin != nil {
			o.RegisterAdmin(as)
		}
		reflection.Register(as)
		adminAddr = o.Admin.Addr().String()
		go func() { errc <- serveErr("admin", as.Serve(o.Admin)) }()
	}
	var fsrv *http.Server
	forwardAddr := ""
	if o.ForwardAuth != nil && o.ForwardAuthHandler != nil {
		fsrv = &http.Server{
			Handler:           o.ForwardAuthHandler,
			ReadHeaderTimeout: to.HTTPReadHeader,
			ReadTimeout:       to.HTTPRead,
			WriteTimeout:      to.HTTPWrite,
			IdleTimeout:       to.HTTPIdle,
		}
		forwardAddr = o.ForwardAuth.Addr().String()
		go func() { errc <- serveErr("forward-auth", fsrv.Serve(o.ForwardAuth)) }()
	}
	log.Info("serving", "grpc_addr", o.GRPC.Addr().String(), "http_addr", o.HTTP.Addr().String(), "admin_addr", adminAddr, "forward_auth_addr", forwardAddr)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: health is NOT_SERVING", "delay", o.ShutdownDelay.String(), "timeout", o.ShutdownTimeout.String())
	case runErr = <-errc:
		log.Error("listener failed, shutting down", "error", runErr.Error())
	}

	// Tell Envoy's health checks and Kubernetes first, so traffic moves away
	// while this server still answers.
	setReady(false)
	hs.Shutdown()
	if o.ShutdownDelay > 0 {
		time.Sleep(o.ShutdownDelay)
	}
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		if fsrv != nil {
			// Its requests in flight finish, as the gRPC ones do.
			_ = fsrv.Shutdown(context.Background())
		}
		close(done)
	}()
	timer := time.NewTimer(o.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		log.Warn("in-flight requests did not finish within the shutdown timeout; closing them")
		gs.Stop()
		if fsrv != nil {
			_ = fsrv.Close()
		}
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
