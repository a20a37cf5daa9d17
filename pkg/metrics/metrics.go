package metrics

import (
	"fmt"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// CacheStatser reports the token cache (*authz.Server).
type CacheStatser interface {
	CacheStats() tokencache.Stats
}

// InflightCounter reports the whoami calls in flight (*ory.Client).
type InflightCounter interface {
	Inflight() int
}

// Metrics implements authz.Observer, ory.Observer, server.PanicObserver,
// server.ReadinessObserver, admin.Observer, redistier.Observer and
// jwkspub.Observer.
type Metrics struct {
	reg            *prometheus.Registry
	checks         []prometheus.Counter // by authz.Reason
	checkDuration  prometheus.Histogram
	oryRequests    map[string]prometheus.Counter
	oryDuration    prometheus.Histogram
	grpc           *grpcprom.ServerMetrics
	panics         map[string]prometheus.Counter // by server.GRPCServers
	jwksLoads      map[string]prometheus.Counter // by jwkspub.Results
	routesOK       prometheus.Counter
	routesError    prometheus.Counter
	redis          redisMetrics
	ready          prometheus.Gauge
	cacheMaxBytes  prometheus.Gauge
	oryMaxInflight prometheus.Gauge
	invalidations  map[string]map[string]prometheus.Counter // by admin.Kinds, then admin.Results
}

// New builds the metrics and registers their collectors on a new private
// registry. The cache and Ory gauges, read at scrape time, are registered
// by ObserveCache and ObserveOry once those exist.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}

	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ory_ext_authz_checks_total",
		Help: "Checks answered, by decision (allow, deny, error) and reason.",
	}, []string{"decision", "reason"})
	for _, r := range authz.Reasons() {
		// Pre-created, so the hot path does one atomic add and every series
		// exists from the start (rate() needs them).
		m.checks = append(m.checks, checks.WithLabelValues(r.Decision(), r.String()))
	}
	m.checkDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ory_ext_authz_check_duration_seconds",
		Help:    "Time to answer a Check, from the request to the response.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 2.5, 14), // 10µs .. 1.5s
	})
	var oryRequests *prometheus.CounterVec
	oryRequests, m.oryRequests = labelled("ory_ext_authz_ory_requests_total",
		"whoami calls to Ory, by code: HTTP status, class, error, timeout, or rejected (not sent: in-flight cap or Retry-After).", "code", ory.CodeLabels)
	m.oryDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ory_ext_authz_ory_request_duration_seconds",
		Help:    "Duration of whoami calls to Ory.",
		Buckets: prometheus.ExponentialBuckets(1e-3, 2, 13), // 1ms .. 4s
	})
	var panics *prometheus.CounterVec
	panics, m.panics = labelled("ory_ext_authz_grpc_panics_total",
		"Panics in gRPC handlers, recovered and answered with Internal, by server (ext_authz, admin). Any is a bug.", "server", server.GRPCServers())
	var jwksLoads *prometheus.CounterVec
	jwksLoads, m.jwksLoads = labelled("ory_ext_authz_jwks_loads_total",
		"Loads of the --jwks-publish file with new content, by result: ok (served from now on), refused (a private or symmetric key, or no JWKS of public keys), unreadable; a refused or unreadable file keeps the previous keys served.", "result", jwkspub.Results())
	routesReloads, reloads := labelled("ory_ext_authz_routes_reloads_total",
		"Reloads of the --routes file with new content, by result: ok (the new table applies from now on), error (it does not read or load, or has on_missing: redirect without --login-url; the previous table stays).", "result", []string{"ok", "error"})
	m.routesOK, m.routesError = reloads["ok"], reloads["error"]
	m.ready = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ory_ext_authz_ready",
		Help: "1 while GET /readyz answers 200 (the listeners serve), 0 before and from the start of the shutdown.",
	})
	m.cacheMaxBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ory_ext_authz_cache_max_bytes",
		Help: "The bound of the token cache in bytes (--cache-max-bytes); 0 until set.",
	})
	m.oryMaxInflight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ory_ext_authz_ory_max_inflight",
		Help: "The cap on whoami calls in flight (--ory-max-inflight); 0 until set.",
	})
	invalidations := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ory_ext_authz_admin_invalidations_total",
		Help: "Calls of the admin API that end cached JWTs, by kind (session, identity, purge) and result: ok, invalid (refused: not an id), local_only (held on this replica only: the shared tier could not reach the others).",
	}, []string{"kind", "result"})
	m.invalidations = map[string]map[string]prometheus.Counter{}
	for _, k := range admin.Kinds() {
		m.invalidations[k] = map[string]prometheus.Counter{}
		for _, r := range admin.Results() {
			m.invalidations[k][r] = invalidations.WithLabelValues(k, r)
		}
	}
	m.grpc = grpcprom.NewServerMetrics()
	reg.MustRegister(m.redis.init()...)
	reg.MustRegister(
		checks, m.checkDuration, oryRequests, m.oryDuration, panics, jwksLoads, routesReloads,
		m.ready, m.cacheMaxBytes, m.oryMaxInflight, invalidations,
		m.grpc,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// labelled is a counter with one label whose series all exist from the
// start, one per value (rate() needs them, and the hot path then does one
// map read and one atomic add).
func labelled(name, help, label string, values []string) (*prometheus.CounterVec, map[string]prometheus.Counter) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
	series := make(map[string]prometheus.Counter, len(values))
	for _, v := range values {
		series[v] = vec.WithLabelValues(v)
	}
	return vec, series
}

// ObserveCache registers the token cache's lookups, entries and bytes, read
// from c at scrape time. Call it once, after the cache is built.
func (m *Metrics) ObserveCache(c CacheStatser) error {
	lookups := func(result string, f func(tokencache.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "ory_ext_authz_cache_lookups_total",
			Help:        "Token cache lookups by result: hit, miss, negative_hit (a remembered 401), refresh (a hit that started a background refresh), shared_hit (a miss answered from the shared tier, Redis; also counted as a miss).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(f(c.CacheStats())) })
	}
	return register(m.reg,
		lookups("hit", func(s tokencache.Stats) uint64 { return s.Hits }),
		lookups("miss", func(s tokencache.Stats) uint64 { return s.Misses }),
		lookups("negative_hit", func(s tokencache.Stats) uint64 { return s.NegativeHits }),
		lookups("refresh", func(s tokencache.Stats) uint64 { return s.Refreshes }),
		lookups("shared_hit", func(s tokencache.Stats) uint64 { return s.SharedHits }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ory_ext_authz_cache_evictions_total",
			Help: "Entries dropped from the token cache to make room for new ones while it held --cache-max-bytes (expired and invalidated entries are not counted). A steady rate means the bound is too small: those sessions ask Ory again.",
		}, func() float64 { return float64(c.CacheStats().Evictions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ory_ext_authz_cache_entries",
			Help: "Entries in the token cache (JWTs and remembered 401s).",
		}, func() float64 { return float64(c.CacheStats().Entries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ory_ext_authz_cache_bytes",
			Help: "Bytes of the entries in the token cache (bounded by --cache-max-bytes).",
		}, func() float64 { return float64(c.CacheStats().Bytes) }),
	)
}

// SetLimits reports the configured bounds the cache and Ory gauges are read
// against: the token cache's bytes (--cache-max-bytes) and the cap on
// whoami calls in flight (--ory-max-inflight).
func (m *Metrics) SetLimits(cacheMaxBytes int64, oryMaxInflight int) {
	m.cacheMaxBytes.Set(float64(cacheMaxBytes))
	m.oryMaxInflight.Set(float64(oryMaxInflight))
}

// ObserveReady implements server.ReadinessObserver.
func (m *Metrics) ObserveReady(ready bool) {
	if ready {
		m.ready.Set(1)
	} else {
		m.ready.Set(0)
	}
}

// ObserveInvalidation implements admin.Observer; a kind or result outside
// admin's lists is not counted.
func (m *Metrics) ObserveInvalidation(kind, result string) {
	if c, ok := m.invalidations[kind][result]; ok {
		c.Inc()
	}
}

// ObserveOry registers the gauge of whoami calls in flight, read from o at
// scrape time. Call it once, after the Ory client is built.
func (m *Metrics) ObserveOry(o InflightCounter) error {
	return register(m.reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ory_ext_authz_ory_inflight",
		Help: "whoami calls to Ory in flight (bounded by --ory-max-inflight).",
	}, func() float64 { return float64(o.Inflight()) }))
}

func register(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// ObserveCheck implements authz.Observer.
func (m *Metrics) ObserveCheck(r authz.Reason, d time.Duration) {
	if int(r) < len(m.checks) {
		m.checks[r].Inc()
	}
	m.checkDuration.Observe(d.Seconds())
}

// ObserveOryRequest implements ory.Observer.
func (m *Metrics) ObserveOryRequest(code string, d time.Duration) {
	c, ok := m.oryRequests[code]
	if !ok {
		c = m.oryRequests["error"]
	}
	c.Inc()
	if code != "rejected" {
		m.oryDuration.Observe(d.Seconds())
	}
}

// ObservePanic implements server.PanicObserver.
func (m *Metrics) ObservePanic(server string) {
	if c, ok := m.panics[server]; ok {
		c.Inc()
	}
}

// ObserveJWKSLoad implements jwkspub.Observer; a result outside
// jwkspub.Results is not counted.
func (m *Metrics) ObserveJWKSLoad(result string) {
	if c, ok := m.jwksLoads[result]; ok {
		c.Inc()
	}
}

// ObserveReload implements routes.Observer.
func (m *Metrics) ObserveReload(ok bool) {
	if ok {
		m.routesOK.Inc()
	} else {
		m.routesError.Inc()
	}
}

// GRPCServerOptions instrument a gRPC server with the standard gRPC server
// metrics (grpc_server_started_total, grpc_server_handled_total, ...).
func (m *Metrics) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.grpc.StreamServerInterceptor()),
	}
}

var (
	_ server.ReadinessObserver = (*Metrics)(nil)
	_ admin.Observer           = (*Metrics)(nil)
)

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
