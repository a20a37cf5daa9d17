package main

import (
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/trace"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// wire builds the request path from the configuration: the Ory client, the
// Check server over it, and the metrics of both, registered once each
// exists. The flags become authz options in config.AuthzOptions, which the
// tests and benchmarks that run the server as serve does share.
func wire(cfg config.Config, transport http.RoundTripper, m *metrics.Metrics, oryTracer, authzTracer trace.Tracer, log *slog.Logger) (*ory.Client, *authz.Server, error) {
	oc, err := ory.New(ory.Options{
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
		return nil, nil, err
	}
	opts := cfg.AuthzOptions(oc)
	opts.Observer, opts.Tracer, opts.Logger = m, authzTracer, log
	az, err := authz.New(opts)
	if err == nil {
		err = m.ObserveOry(oc)
	}
	if err == nil {
		err = m.ObserveCache(az)
	}
	if err != nil {
		if az != nil {
			az.Close()
		}
		oc.Close()
		return nil, nil, err
	}
	return oc, az, nil
}
