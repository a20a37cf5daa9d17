package metrics_test

import (
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// scrapeRedis reads m's registry as /metrics serves it.
func scrapeRedis(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// series returns the metric of family name whose labels are exactly labels.
func series(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, mt := range f.GetMetric() {
		if len(mt.GetLabel()) != len(labels) {
			continue
		}
		all := true
		for _, l := range mt.GetLabel() {
			all = all && labels[l.GetName()] == l.GetValue()
		}
		if all {
			return mt
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

// TestRedisObserver: Metrics is the shared tier's Observer. Every (op,
// result) series and every breaker state exists from the start; an
// operation counts under its op and result and its duration goes to the
// op's histogram unless it failed fast; the breaker gauge is 1 for the
// current state only; values outside redistier's lists never make a series.
func TestRedisObserver(t *testing.T) {
	m := metrics.New()
	var obs redistier.Observer = m
	families := scrapeRedis(t, m)
	if n := len(families["ory_ext_authz_redis_operations_total"].GetMetric()); n != len(redistier.Ops())*len(redistier.Results()) {
		t.Fatalf("%d operation series, want every op x result pre-created", n)
	}
	for _, st := range redistier.BreakerStates() {
		if v := series(t, families, "ory_ext_authz_redis_breaker_state", map[string]string{"state": st}).GetGauge().GetValue(); v != 0 {
			t.Errorf("breaker %s = %v before any tier, want 0", st, v)
		}
	}

	obs.ObserveBreaker(redistier.BreakerOpen) // New's initial state
	obs.ObserveRedis(redistier.OpGet, redistier.ResultUnavailable, 0)
	obs.ObserveBreaker(redistier.BreakerHalfOpen)
	obs.ObserveRedis(redistier.OpProbe, redistier.ResultOK, 2*time.Millisecond)
	obs.ObserveBreaker(redistier.BreakerClosed)
	obs.ObserveRedis(redistier.OpGet, redistier.ResultHit, 300*time.Microsecond)
	obs.ObserveRedis(redistier.OpGet, redistier.ResultMiss, 200*time.Microsecond)
	obs.ObserveRedis(redistier.OpSet, redistier.ResultRejected, 100*time.Microsecond)
	obs.ObserveRedis(redistier.OpSet, "made-up", time.Millisecond)    // counts as an error
	obs.ObserveRedis("made-up", redistier.ResultOK, time.Millisecond) // not counted

	families = scrapeRedis(t, m)
	for _, tt := range []struct {
		op, result string
		want       float64
	}{
		{"get", "unavailable", 1}, {"get", "hit", 1}, {"get", "miss", 1}, {"probe", "ok", 1},
		{"set", "rejected", 1}, {"set", "error", 1}, {"lock", "busy", 0},
	} {
		got := series(t, families, "ory_ext_authz_redis_operations_total", map[string]string{"op": tt.op, "result": tt.result}).GetCounter().GetValue()
		if got != tt.want {
			t.Errorf("operations{op=%s,result=%s} = %v, want %v", tt.op, tt.result, got, tt.want)
		}
	}
	for op, want := range map[string]uint64{"get": 2, "set": 2, "probe": 1, "lock": 0} {
		h := series(t, families, "ory_ext_authz_redis_operation_duration_seconds", map[string]string{"op": op}).GetHistogram()
		if h.GetSampleCount() != want {
			t.Errorf("duration{op=%s} count %d, want %d (fast fails not observed)", op, h.GetSampleCount(), want)
		}
		if op == "get" && h.GetBucket()[0].GetUpperBound() >= 1e-3 {
			t.Errorf("first bucket %v: no sub-millisecond resolution", h.GetBucket()[0].GetUpperBound())
		}
	}
	for st, want := range map[string]float64{"closed": 1, "open": 0, "half_open": 0} {
		if v := series(t, families, "ory_ext_authz_redis_breaker_state", map[string]string{"state": st}).GetGauge().GetValue(); v != want {
			t.Errorf("breaker %s = %v, want %v", st, v, want)
		}
	}
	for _, mt := range families["ory_ext_authz_redis_operations_total"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetValue() == "made-up" {
				t.Errorf("a series for a value outside the fixed sets: %v", mt)
			}
		}
	}
}
