package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tracing"
)

// serve builds everything from the configuration and runs until ctx is done.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	tp, shutdownTracing, err := tracing.Setup(ctx, getenv, version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	var oryTracer, authzTracer trace.Tracer
	if tp != nil {
		oryTracer, authzTracer = tp.Tracer("ory-ext-authz/ory"), tp.Tracer("ory-ext-authz/authz")
	}
	transport, err := ory.NewTransport(cfg.OryCAFile)
	if err != nil {
		return fmt.Errorf("--ory-ca-file: %w", err)
	}
	m := metrics.New()
	jwks, err := publishJWKS(cfg, m, log)
	if err != nil {
		return err
	}
	w, err := wire(ctx, cfg, transport, m, oryTracer, authzTracer, log)
	if err != nil {
		return err
	}
	// After server.Run has returned: nothing calls the Check server any more.
	defer w.Close()
	if w.routes != nil {
		// Reloads the route table until serve returns.
		rctx, stopRoutes := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.routes.Run(rctx)
		}()
		defer func() {
			stopRoutes()
			<-done
		}()
	}
	az := w.authz
	var lc net.ListenConfig
	gl, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	hl, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		_ = gl.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}
	grpcOpts := m.GRPCServerOptions()
	if cfg.TLSCert != "" {
		tc, err := server.NewTLSConfig(server.TLSFiles{Cert: cfg.TLSCert, Key: cfg.TLSKey, ClientCA: cfg.TLSClientCA}, log)
		if err != nil {
			_ = gl.Close()
			_ = hl.Close()
			return err
		}
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tc)))
	}
	adm, err := listenAdmin(ctx, cfg, az, w.ory, m, log)
	if err != nil {
		_ = gl.Close()
		_ = hl.Close()
		return err
	}
	var fl net.Listener
	if cfg.ForwardAuthAddr != "" {
		if fl, err = lc.Listen(ctx, "tcp", cfg.ForwardAuthAddr); err != nil {
			_ = gl.Close()
			_ = hl.Close()
			if adm.listener != nil {
				_ = adm.listener.Close()
			}
			return fmt.Errorf("--forward-auth-addr: %w", err)
		}
	}
	log.Info("ory-ext-authz starting", "tls", cfg.TLSCert != "", "mtls", cfg.TLSClientCA != "", "tracing", tp != nil, "version", version, "ory_url", cfg.OryURL, "tokenize_as", cfg.TokenizeAs, "on_missing", string(cfg.OnMissing), "pass_client_authorization", cfg.PassClientAuthorization, "shared_tier", w.tier != nil, "routes", cfg.Routes)
	return server.Run(ctx, server.Options{
		GRPC:            gl,
		HTTP:            hl,
		Authz:           az,
		ShutdownDelay:   cfg.ShutdownDelay,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          log,
		GRPCOptions:     grpcOpts,
		Metrics:         m.Handler(),
		JWKS:            jwks,
		// Run recovers panics on both gRPC servers; m counts them.
		Panics: m,
		// ory_ext_authz_ready follows /readyz.
		Readiness: m,
		// The admin API gets a gRPC server of its own, never grpcOpts' one.
		Admin:            adm.listener,
		RegisterAdmin:    adm.register,
		AdminGRPCOptions: adm.opts,
		// Forward-auth: the same decisions over HTTP, on its own listener.
		ForwardAuth:        fl,
		ForwardAuthHandler: az.ForwardAuth(authz.ForwardAuthOptions{TrustedProxies: cfg.TrustedProxies}),
	})
}

// publishJWKS returns the handler of --jwks-publish, or nil when it is off.
// It fails when the file cannot be read or is refused: a server that was
// asked to publish keys never starts without them, nor with a private key.
func publishJWKS(cfg config.Config, m *metrics.Metrics, log *slog.Logger) (http.Handler, error) {
	if cfg.JWKSPublish == "" {
		return nil, nil
	}
	p, err := jwkspub.New(jwkspub.Options{File: cfg.JWKSPublish, Logger: log, Observer: m})
	if errors.Is(err, jwkspub.ErrPrivateKey) {
		// Most likely the file Kratos' jwks_url points at.
		return nil, fmt.Errorf("--jwks-publish: %w; publish its public keys instead: ory-ext-authz jwks public %s > public.json", err, cfg.JWKSPublish)
	}
	if err != nil {
		return nil, fmt.Errorf("--jwks-publish: %w", err)
	}
	keys := p.Keys()
	kids := make([]string, 0, len(keys.Keys))
	for _, k := range keys.Keys {
		kids = append(kids, k.KeyID)
	}
	log.Info("publishing the JWKS", "file", cfg.JWKSPublish, "path", jwkspub.Path, "kids", kids, "max_age", jwkspub.DefaultMaxAge.String())
	return p, nil
}

func newLogger(cfg config.Config, w io.Writer) (*slog.Logger, error) {
	level, err := config.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}
