package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// TestReadiness: ory_ext_authz_ready is 0 before the server runs, 1 while
// /readyz answers 200, and 0 again once the shutdown has begun (scraped
// during the shutdown delay, while /readyz answers 503).
func TestReadiness(t *testing.T) {
	m := metrics.New()
	if v := series(t, scrapeRedis(t, m), "ory_ext_authz_ready", nil).GetGauge().GetValue(); v != 0 {
		t.Fatalf("ready = %v before the server runs, want 0", v)
	}
	gl, hl := servertest.Listen(t), servertest.Listen(t)
	httpAddr := hl.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{
			GRPC: gl, HTTP: hl, Authz: authv3.UnimplementedAuthorizationServer{}, Metrics: m.Handler(),
			Readiness: m, ShutdownDelay: 2 * time.Second, ShutdownTimeout: 5 * time.Second,
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	}()
	status := func() int {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	testwait.For(t, "readyz 200", func() bool { return status() == http.StatusOK })
	if v := servertest.Metrics(t, httpAddr).Value(t, "ory_ext_authz_ready", nil); v != 1 {
		t.Errorf("ready = %v while /readyz answers 200, want 1", v)
	}
	cancel()
	testwait.For(t, "readyz 503", func() bool { return status() == http.StatusServiceUnavailable })
	if v := servertest.Metrics(t, httpAddr).Value(t, "ory_ext_authz_ready", nil); v != 0 {
		t.Errorf("ready = %v while shutting down, want 0", v)
	}
}

// invalidator is an admin.Cache whose invalidations fail with err.
type invalidator struct{ err error }

func (c *invalidator) Invalidate(context.Context, string, string) (int64, error) { return 1, c.err }
func (c *invalidator) CacheStats() tokencache.Stats                              { return tokencache.Stats{Evictions: 7} }
func (c *invalidator) Stats() (uint64, uint64)                                   { return 0, 0 }

// TestAdminInvalidations: every (kind, result) series exists from the
// start; an invalidation counts as ok, invalid (a refused id) or
// local_only (the shared tier did not carry it).
func TestAdminInvalidations(t *testing.T) {
	m := metrics.New()
	cache := &invalidator{}
	api, err := admin.New(admin.Options{Cache: cache, Ory: cache, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	families := scrapeRedis(t, m)
	if n := len(families["ory_ext_authz_admin_invalidations_total"].GetMetric()); n != len(admin.Kinds())*len(admin.Results()) {
		t.Fatalf("%d series, want every kind x result pre-created", n)
	}
	ctx := t.Context()
	const sid = "8f14e45f-ceea-467f-a0e6-b5b1c7c1e3a1"
	_, _ = api.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: sid})
	_, _ = api.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: ""})
	_, _ = api.InvalidateIdentity(ctx, &adminv1.InvalidateIdentityRequest{IdentityId: "ory_st_notanid"})
	cache.err = errors.New("redis down")
	_, _ = api.InvalidateIdentity(ctx, &adminv1.InvalidateIdentityRequest{IdentityId: sid})
	_, _ = api.Purge(ctx, &adminv1.PurgeRequest{})
	m.ObserveInvalidation("bogus", admin.ResultOK) // outside the lists: not counted

	families = scrapeRedis(t, m)
	for _, tt := range []struct {
		kind, result string
		want         float64
	}{
		{"session", "ok", 1}, {"session", "invalid", 1}, {"session", "local_only", 0},
		{"identity", "ok", 0}, {"identity", "invalid", 1}, {"identity", "local_only", 1},
		{"purge", "ok", 0}, {"purge", "local_only", 1},
	} {
		got := series(t, families, "ory_ext_authz_admin_invalidations_total", map[string]string{"kind": tt.kind, "result": tt.result}).GetCounter().GetValue()
		if got != tt.want {
			t.Errorf("invalidations{kind=%s,result=%s} = %v, want %v", tt.kind, tt.result, got, tt.want)
		}
	}
	if n := len(families["ory_ext_authz_admin_invalidations_total"].GetMetric()); n != len(admin.Kinds())*len(admin.Results()) {
		t.Errorf("%d series after a value outside the lists", n)
	}
}

// TestLimitsAndEvictions: the configured bounds are exported as gauges
// (0 until SetLimits), and the cache's evictions as a counter.
func TestLimitsAndEvictions(t *testing.T) {
	m := metrics.New()
	families := scrapeRedis(t, m)
	for _, name := range []string{"ory_ext_authz_cache_max_bytes", "ory_ext_authz_ory_max_inflight"} {
		if v := series(t, families, name, nil).GetGauge().GetValue(); v != 0 {
			t.Errorf("%s = %v before SetLimits, want 0", name, v)
		}
	}
	m.SetLimits(96<<20, 48)
	if err := m.ObserveCache(&invalidator{}); err != nil {
		t.Fatal(err)
	}
	families = scrapeRedis(t, m)
	for name, want := range map[string]float64{"ory_ext_authz_cache_max_bytes": 96 << 20, "ory_ext_authz_ory_max_inflight": 48} {
		if v := series(t, families, name, nil).GetGauge().GetValue(); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := series(t, families, "ory_ext_authz_cache_evictions_total", nil).GetCounter().GetValue(); v != 7 {
		t.Errorf("evictions = %v, want the cache's 7", v)
	}
}
