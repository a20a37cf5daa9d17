package metrics_test

import (
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// TestScrape runs a known sequence of checks through the real server and
// asserts the counts on /metrics.
func TestScrape(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	m := metrics.New()
	oc, err := ory.New(ory.Options{BaseURL: fake.URL, Timeout: 2 * time.Second, Observer: m, MaxInflight: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	cfg := config.Default()
	cfg.TokenizeAs, cfg.WhoamiTimeout = "mesh", 2*time.Second
	opts := cfg.AuthzOptions(oc)
	opts.Observer = m
	az, err := authz.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close) // after the server stopped
	if err := m.ObserveOry(oc); err != nil {
		t.Fatal(err)
	}
	if err := m.ObserveCache(az); err != nil {
		t.Fatal(err)
	}
	if err := m.ObserveCache(az); err == nil {
		t.Fatal("a second ObserveCache registered the cache series twice")
	}
	addrs := servertest.Start(t, server.Options{Authz: az, Metrics: m.Handler(), GRPCOptions: m.GRPCServerOptions()})
	client := authv3.NewAuthorizationClient(servertest.Dial(t, addrs.GRPC))
	check := func(headers map[string]string) {
		t.Helper()
		_, _ = client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: headers},
		}}})
	}
	s := fake.NewSession()
	check(map[string]string{"cookie": s.CookiePair()})           // fresh, Ory 200
	check(map[string]string{"cookie": s.CookiePair()})           // cached
	check(map[string]string{"cookie": s.CookiePair()})           // cached
	check(map[string]string{})                                   // no_credential
	check(map[string]string{"cookie": "ory_kratos_session=bad"}) // invalid_session, Ory 401
	check(map[string]string{"cookie": "ory_kratos_session=bad"}) // invalid_session, negative hit
	fake.SetHook(fakeory.Status(502, ""))
	check(map[string]string{"x-session-token": "ory_st_unknown"}) // ory_unavailable, Ory 502

	families := servertest.Metrics(t, addrs.HTTP)
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		return families.Value(t, name, labels)
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ory_ext_authz_checks_total", map[string]string{"decision": "allow", "reason": "fresh"}, 1},
		{"ory_ext_authz_checks_total", map[string]string{"decision": "allow", "reason": "cached"}, 2},
		{"ory_ext_authz_checks_total", map[string]string{"decision": "deny", "reason": "no_credential"}, 1},
		{"ory_ext_authz_checks_total", map[string]string{"decision": "deny", "reason": "invalid_session"}, 2},
		{"ory_ext_authz_checks_total", map[string]string{"decision": "error", "reason": "ory_unavailable"}, 1},
		{"ory_ext_authz_checks_total", map[string]string{"decision": "deny", "reason": "forbidden"}, 0},
		{"ory_ext_authz_check_duration_seconds", nil, 7},
		{"ory_ext_authz_cache_lookups_total", map[string]string{"result": "hit"}, 2},
		{"ory_ext_authz_cache_lookups_total", map[string]string{"result": "miss"}, 3},
		{"ory_ext_authz_cache_lookups_total", map[string]string{"result": "negative_hit"}, 1},
		{"ory_ext_authz_cache_lookups_total", map[string]string{"result": "refresh"}, 0},
		{"ory_ext_authz_cache_lookups_total", map[string]string{"result": "shared_hit"}, 0}, // no shared tier
		{"ory_ext_authz_redis_breaker_state", map[string]string{"state": "closed"}, 0},      // no shared tier: all 0
		{"ory_ext_authz_cache_entries", nil, 2},                                             // the JWT and the remembered 401
		{"ory_ext_authz_ory_requests_total", map[string]string{"code": "200"}, 1},
		{"ory_ext_authz_ory_requests_total", map[string]string{"code": "401"}, 1},
		{"ory_ext_authz_ory_requests_total", map[string]string{"code": "502"}, 1},
		{"ory_ext_authz_ory_request_duration_seconds", nil, 3},
		{"ory_ext_authz_ory_inflight", nil, 0},
		{"ory_ext_authz_grpc_panics_total", map[string]string{"server": "ext_authz"}, 0}, // pre-created
		{"ory_ext_authz_grpc_panics_total", map[string]string{"server": "admin"}, 0},
		{"ory_ext_authz_jwks_loads_total", map[string]string{"result": "refused"}, 0}, // pre-created, no --jwks-publish
		{"ory_ext_authz_routes_reloads_total", map[string]string{"result": "ok"}, 0},  // pre-created, no --routes
		{"ory_ext_authz_routes_reloads_total", map[string]string{"result": "error"}, 0},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "OK"}, 6},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "Unavailable"}, 1},
	} {
		if got := value(tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if value("ory_ext_authz_cache_bytes", nil) <= 0 {
		t.Error("cache bytes not reported")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := families[name]; !ok {
			t.Errorf("no runtime metric %s", name)
		}
	}
	// Every label value of our metrics comes from the fixed sets.
	fixed := map[string]bool{"allow": true, "deny": true, "error": true, "hit": true, "miss": true, "negative_hit": true, "refresh": true}
	for _, r := range authz.Reasons() {
		fixed[r.String()] = true
	}
	for _, c := range ory.CodeLabels {
		fixed[c] = true
	}
	for _, n := range server.GRPCServers() {
		fixed[n] = true
	}
	fixed["shared_hit"] = true
	for _, list := range [][]string{redistier.Ops(), redistier.Results(), redistier.BreakerStates(), jwkspub.Results(), admin.Kinds(), admin.Results()} {
		for _, v := range list {
			fixed[v] = true
		}
	}
	for name, f := range families {
		if !strings.HasPrefix(name, "ory_ext_authz_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() != "le" && !fixed[l.GetValue()] {
					t.Errorf("%s has label %s=%q outside the fixed sets", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}
