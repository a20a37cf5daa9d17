package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
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
	// The metrics read the cache and the Ory client at scrape time; both are
	// built below, after the metrics they report to.
	var az *authz.Server
	var oryClient *ory.Client
	m := metrics.New(metrics.Sources{
		CacheStats:  func() tokencache.Stats { return az.CacheStats() },
		OryInflight: func() int { return oryClient.Inflight() },
	})
	oryClient, err = ory.New(ory.Options{
		Observer:    m,
		Tracer:      oryTracer,
		BaseURL:     cfg.OryURL,
		HTTPClient:  &http.Client{Transport: transport},
		Timeout:     cfg.WhoamiTimeout,
		MaxJWTBytes: config.MaxCredentialBytes,
		MaxInflight: cfg.OryMaxInflight,
		UserAgent:   "ory-ext-authz/" + version,
	})
	if err != nil {
		return err
	}
	defer oryClient.Close()
	azOpts := authz.OptionsFor(cfg, oryClient)
	azOpts.Observer, azOpts.Tracer, azOpts.Logger = m, authzTracer, log
	az, err = authz.New(azOpts)
	if err != nil {
		return err
	}
	defer az.Close()
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
	adm, err := listenAdmin(ctx, cfg, az, oryClient, log)
	if err != nil {
		_ = gl.Close()
		_ = hl.Close()
		return err
	}
	log.Info("ory-ext-authz starting", "tls", cfg.TLSCert != "", "mtls", cfg.TLSClientCA != "", "tracing", tp != nil, "version", version, "ory_url", cfg.OryURL, "tokenize_as", cfg.TokenizeAs, "on_missing", string(cfg.OnMissing), "pass_client_authorization", cfg.PassClientAuthorization)
	return server.Run(ctx, server.Options{
		GRPC:            gl,
		HTTP:            hl,
		Authz:           az,
		ShutdownDelay:   cfg.ShutdownDelay,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          log,
		GRPCOptions:     grpcOpts,
		Metrics:         m.Handler(),
		// The admin API gets a gRPC server of its own, never grpcOpts' one.
		Admin:            adm.listener,
		RegisterAdmin:    adm.register,
		AdminGRPCOptions: adm.opts,
	})
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
