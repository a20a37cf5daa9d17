package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/dashboard"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// Environment variables read by TestObservabilityScrape.
const (
	// envPromtool names the promtool binary (make test: bin/promtool,
	// built by make promtool from the pinned module).
	envPromtool = "PROMTOOL_BIN"
	// envRequirePromtool set to "1" makes a missing promtool fail the test
	// instead of skipping its promtool part.
	envRequirePromtool = "ORY_EXT_AUTHZ_REQUIRE_PROMTOOL"
)

// prometheusMetrics are the series Prometheus makes for every target
// itself; no target exports them.
var prometheusMetrics = []string{"up"}

// TestObservabilityScrape runs `serve` with the shared tier on a real
// redis-server and the admin API, makes a known sequence of checks and
// admin calls (a miss, a hit, a denial, a 401, an Ory error, a Redis fill,
// an invalidation), scrapes /metrics and checks that every series selector
// of the Grafana dashboard and of the alerting rules selects something the
// server exported (matchers on job, namespace and instance left out:
// Prometheus adds those). Then promtool check metrics must find nothing
// wrong with the scrape.
func TestObservabilityScrape(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	args := []string{"--cache-max-bytes", "8388608", "--ory-max-inflight", "16"}
	// The Redis series exist (at 0) without the tier too, so without a
	// redis-server (and without ORY_EXT_AUTHZ_REQUIRE_REDIS=1, which makes
	// redistest fail instead) the rest still runs.
	var srv *redistest.Server
	if haveRedis() {
		srv = redistest.Start(t, redistest.Options{})
		args = append(args, "--redis-url", srv.URL(), "--redis-secret-file", secretFile(t, "obs-test-secret-0123456789abcdefgh"), "--redis-timeout", "500ms")
	} else {
		t.Log("no redis-server: the sequence runs without the shared tier")
	}
	s := startServe(t, fake, args...)
	client := authv3.NewAuthorizationClient(servertest.Dial(t, s.grpcAddr))
	check := func(headers map[string]string) (codes.Code, error) {
		t.Helper()
		resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: headers},
		}}})
		return codes.Code(resp.GetStatus().GetCode()), err
	}
	if srv != nil {
		waitTierConnected(t, s.httpAddr)
	}
	sess := fake.NewSession()
	if checkCached(t, client, sess) {
		t.Fatal("the first check was cached")
	}
	if srv != nil {
		// The fill writes to Redis after answering.
		testwait.For(t, "the fill in Redis", func() bool { return len(redistest.Values(srv.Dump())) > 0 })
	}
	if !checkCached(t, client, sess) {
		t.Fatal("the second check was not a hit")
	}
	if c, err := check(map[string]string{}); err != nil || c != codes.Unauthenticated {
		t.Fatalf("no credential: %v %v, want Unauthenticated", c, err)
	}
	if c, err := check(map[string]string{"cookie": "ory_kratos_session=bad"}); err != nil || c != codes.Unauthenticated {
		t.Fatalf("bad cookie: %v %v, want Unauthenticated", c, err)
	}
	fake.SetHook(fakeory.Status(502, ""))
	if _, err := check(map[string]string{"x-session-token": "ory_st_unknown"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Ory 502: %v, want Unavailable", err)
	}
	fake.SetHook(nil)
	admin := adminv1.NewAdminClient(servertest.Dial(t, s.adminAddr))
	if _, err := admin.InvalidateSession(t.Context(), &adminv1.InvalidateSessionRequest{SessionId: sess.ID}); err != nil {
		t.Fatalf("InvalidateSession: %v", err)
	}

	_, raw := servertest.Do(t, http.MethodGet, "http://"+s.httpAddr+"/metrics", nil)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	// The sequence shows on the scrape (else the check below proves little).
	f := servertest.Families(families)
	for _, tt := range []struct {
		name   string
		labels map[string]string
	}{
		{"ory_ext_authz_checks_total", map[string]string{"reason": "fresh"}},
		{"ory_ext_authz_checks_total", map[string]string{"reason": "cached"}},
		{"ory_ext_authz_checks_total", map[string]string{"reason": "no_credential"}},
		{"ory_ext_authz_checks_total", map[string]string{"reason": "ory_unavailable"}},
		{"ory_ext_authz_ory_requests_total", map[string]string{"code": "502"}},
		{"ory_ext_authz_admin_invalidations_total", map[string]string{"kind": "session", "result": "ok"}},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "Unavailable"}},
		{"ory_ext_authz_ready", nil},
	} {
		if v := f.Value(t, tt.name, tt.labels); v < 1 {
			t.Errorf("%s%v = %v after the sequence, want at least 1", tt.name, tt.labels, v)
		}
	}
	if srv != nil {
		if v := f.Value(t, "ory_ext_authz_redis_operations_total", map[string]string{"op": "set", "result": "ok"}); v < 1 {
			t.Errorf("no Redis set after the fill: %v", v)
		}
	}
	for name, want := range map[string]float64{"ory_ext_authz_cache_max_bytes": 8 << 20, "ory_ext_authz_ory_max_inflight": 16} {
		if v := f.Value(t, name, nil); v != want {
			t.Errorf("%s = %v, want the flag's %v", name, v, want)
		}
	}

	t.Run("dashboard and rules", func(t *testing.T) {
		root := filepath.Join("..", "..")
		db, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "ory-ext-authz.json"))
		if err != nil {
			t.Fatal(err)
		}
		rules, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		exprs, err := dashboard.PanelExprs(db)
		if err != nil {
			t.Fatal(err)
		}
		re, err := dashboard.RuleExprs(rules)
		if err != nil {
			t.Fatal(err)
		}
		checkSelectors(t, families, append(exprs, re...))
	})

	t.Run("promtool check metrics", func(t *testing.T) {
		bin := os.Getenv(envPromtool)
		if bin == "" {
			if os.Getenv(envRequirePromtool) == "1" {
				t.Fatalf("%s is not set and %s=1: run make promtool (bin/promtool)", envPromtool, envRequirePromtool)
			}
			t.Skipf("no promtool: set %s (make promtool builds bin/promtool)", envPromtool)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "check", "metrics")
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.CombinedOutput()
		t.Logf("promtool check metrics on %d bytes of /metrics:\n%s", len(raw), out)
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})
}

// haveRedis tells whether redistest can start a redis-server, or must
// (ORY_EXT_AUTHZ_REQUIRE_REDIS=1: redistest then fails without one).
func haveRedis() bool {
	if os.Getenv(redistest.EnvRequire) == "1" || os.Getenv(redistest.EnvBinary) != "" {
		return true
	}
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// checkSelectors fails t for each selector of exprs that selects no series
// of families (histograms count with their _bucket, _sum and _count).
func checkSelectors(t *testing.T, families map[string]*dto.MetricFamily, exprs []dashboard.Expr) {
	t.Helper()
	histograms := map[string]bool{}
	for name, f := range families {
		histograms[name] = f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY
	}
	n := 0
	for _, e := range exprs {
		sels, err := dashboard.Selectors(e.PromQL)
		if err != nil {
			t.Errorf("%s: %v", e.Where, err)
			continue
		}
		for _, sel := range sels {
			n++
			if slices.Contains(prometheusMetrics, sel.Name) {
				continue
			}
			family, ok := dashboard.Family(sel.Name, histograms)
			if !ok {
				t.Errorf("%s: the server exports no %s", e.Where, sel.Name)
				continue
			}
			found := false
			for _, m := range families[family].GetMetric() {
				ls := map[string]string{}
				for _, l := range m.GetLabel() {
					ls[l.GetName()] = l.GetValue()
				}
				found = found || sel.Matches(ls)
			}
			if !found {
				t.Errorf("%s: no series of %s on /metrics matches %v", e.Where, sel.Name, sel.Matchers)
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d selectors checked: were the files read?", n)
	}
	t.Logf("%d selectors of %d expressions checked", n, len(exprs))
}
