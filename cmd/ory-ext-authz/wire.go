package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/trace"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// wired is the request path serve runs: the Ory client, the Check server
// over it and, with --redis-url, the tier both share with the other
// replicas.
type wired struct {
	ory   *ory.Client
	authz *authz.Server
	tier  *redistier.Tier // nil without --redis-url
	// routes keeps the --routes table current once Run; nil without it.
	routes *routes.Watcher
}

// Close closes the Check server (its refreshes and its subscription to
// invalidations), then the Ory client, then the tier they both used. Call
// it once the servers have stopped.
func (w wired) Close() {
	if w.authz != nil {
		w.authz.Close()
	}
	if w.ory != nil {
		w.ory.Close()
	}
	if w.tier != nil {
		w.tier.Close()
	}
}

// wire builds the request path from the configuration: the route table
// (with --routes), the shared tier (with --redis-url), the Ory client, the
// Check server over them, and the
// metrics of all three, registered once each exists. The flags become
// options in config.AuthzOptions and config.RedisOptions, which the tests
// and benchmarks that run the server as serve does share.
//
// Redis is never a dependency of starting or serving: redistier.New fails
// only on bad options, and with Redis down every operation fails fast
// while the tier keeps connecting in the background.
func wire(ctx context.Context, cfg config.Config, transport http.RoundTripper, m *metrics.Metrics, oryTracer, authzTracer trace.Tracer, log *slog.Logger) (w wired, err error) {
	defer func() {
		if err != nil {
			w.Close()
			w = wired{}
		}
	}()
	if cfg.Routes != "" {
		hasLogin := cfg.LoginURL != ""
		w.routes, err = routes.NewWatcher(cfg.Routes, routes.WatcherOptions{
			Logger: log, Observer: m,
			// At start and on every reload: a table with a setting the
			// Check path does not enforce yet is refused, never ignored.
			Accept: func(t *routes.Table) error { return authz.CheckTable(t, hasLogin) },
		})
		if err != nil {
			return w, fmt.Errorf("--routes: %w", err)
		}
		log.Info("route table loaded", "file", cfg.Routes, "rules", len(w.routes.Table().Rules()))
	}
	ro, shared, err := cfg.RedisOptions()
	if err != nil {
		return w, err
	}
	if shared {
		ro.Logger, ro.Observer = log, m
		if w.tier, err = redistier.New(ctx, ro); err != nil {
			return w, fmt.Errorf("shared tier (--redis-url): %w", err)
		}
		log.Info("shared tier (Redis) on: an L1 miss asks Redis before Ory, invalidations reach every replica",
			"redis_url", cfg.RedisURL.String(), "redis_timeout", cfg.RedisTimeout.String(),
			"previous_secret", cfg.RedisPreviousSecretFile != "",
			"invalidation_ttl", ro.InvalidationTTL.String())
	}
	oo := ory.Options{
		Observer:    m,
		Tracer:      oryTracer,
		BaseURL:     cfg.OryURL,
		HTTPClient:  &http.Client{Transport: transport},
		Timeout:     cfg.WhoamiTimeout,
		MaxJWTBytes: config.MaxCredentialBytes,
		MaxInflight: cfg.OryMaxInflight,
		UserAgent:   "ory-ext-authz/" + version,
	}
	// Only a real tier: a nil *Tier in an interface would not be nil.
	if w.tier != nil {
		oo.SharedPause = w.tier
	}
	if w.ory, err = ory.New(oo); err != nil {
		return w, err
	}
	opts := cfg.AuthzOptions(w.ory)
	opts.Observer, opts.Tracer, opts.Logger = m, authzTracer, log
	if w.tier != nil {
		opts.Shared = w.tier
	}
	// Only a real watcher, as for the tier.
	if w.routes != nil {
		opts.Routes = w.routes
	}
	if w.authz, err = authz.New(opts); err != nil {
		return w, err
	}
	m.SetLimits(cfg.CacheMaxBytes, cfg.OryMaxInflight)
	if err = m.ObserveOry(w.ory); err != nil {
		return w, err
	}
	return w, m.ObserveCache(w.authz)
}
