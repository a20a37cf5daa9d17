package dashboard_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	sdk "github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/ory-ext-authz/ory-ext-authz/internal/dashboard"
)

// Where the generated dashboard and the rules are committed.
var (
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "ory-ext-authz.json")
	alertsFile    = filepath.Join("..", "..", "deploy", "prometheus", "alerts.yaml")
)

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommittedDashboardIsCurrent fails when `make dashboard` would change
// deploy/grafana/ory-ext-authz.json.
func TestCommittedDashboardIsCurrent(t *testing.T) {
	want, err := dashboard.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, dashboardFile); !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run make dashboard and commit it", dashboardFile)
	}
}

// TestDashboardShape: the JSON reads back into the SDK's dashboard type
// (Grafana's schema, at the schema version the SDK emits), every panel and
// query uses the ${datasource} variable of type prometheus, the job,
// namespace and instance variables exist, ids are unique and every panel
// fits the 24-column grid.
func TestDashboardShape(t *testing.T) {
	b := read(t, dashboardFile)
	plugins.RegisterDefaultPlugins()
	var d sdk.Dashboard //nolint:staticcheck // the classic JSON on purpose (see dashboard.Build)
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("the dashboard does not read back into the SDK's type: %v", err)
	}
	if want := sdk.NewDashboard().SchemaVersion; d.SchemaVersion != want {
		t.Errorf("schemaVersion %d, want the SDK's %d", d.SchemaVersion, want)
	}
	if d.Uid == nil || *d.Uid != dashboard.UID {
		t.Errorf("uid %v, want %s", d.Uid, dashboard.UID)
	}

	var raw struct {
		ID         any `json:"id"`
		Templating struct {
			List []map[string]any `json:"list"`
		} `json:"templating"`
		Panels []map[string]any `json:"panels"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.ID != nil {
		t.Errorf("a top-level id %v: Grafana's import would try to overwrite that dashboard", raw.ID)
	}
	vars := map[string]map[string]any{}
	for _, v := range raw.Templating.List {
		vars[v["name"].(string)] = v
	}
	if v := vars["datasource"]; v == nil || v["type"] != "datasource" || v["query"] != "prometheus" {
		t.Errorf("no datasource variable of type prometheus: %v", v)
	}
	for _, name := range []string{"job", "namespace", "instance"} {
		v := vars[name]
		if v == nil || v["type"] != "query" || v["includeAll"] != true || v["allValue"] != ".*" {
			t.Errorf("variable %s: %v, want a query variable with All = .*", name, v)
			continue
		}
		if ds, _ := v["datasource"].(map[string]any); ds["uid"] != "${datasource}" {
			t.Errorf("variable %s does not query ${datasource}: %v", name, v["datasource"])
		}
	}
	ids := map[float64]bool{}
	for _, p := range raw.Panels {
		title, _ := p["title"].(string)
		id, _ := p["id"].(float64)
		if id == 0 || ids[id] {
			t.Errorf("panel %q: id %v missing or repeated", title, p["id"])
		}
		ids[id] = true
		grid, _ := p["gridPos"].(map[string]any)
		if x, w := grid["x"].(float64), grid["w"].(float64); w <= 0 || x+w > 24 {
			t.Errorf("panel %q: gridPos %v does not fit 24 columns", title, grid)
		}
		if p["type"] == "row" {
			continue
		}
		if ds, _ := p["datasource"].(map[string]any); ds["uid"] != "${datasource}" || ds["type"] != "prometheus" {
			t.Errorf("panel %q: datasource %v, want ${datasource}", title, p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no query", title)
		}
		for _, tg := range targets {
			tm := tg.(map[string]any)
			if ds, _ := tm["datasource"].(map[string]any); ds["uid"] != "${datasource}" {
				t.Errorf("panel %q query %v: datasource %v", title, tm["refId"], tm["datasource"])
			}
			expr, _ := tm["expr"].(string)
			for _, v := range []string{`job=~"$job"`, `namespace=~"$namespace"`, `instance=~"$instance"`} {
				if !strings.Contains(expr, v) {
					t.Errorf("panel %q query %v is not filtered by %s: %s", title, tm["refId"], v, expr)
				}
			}
		}
	}
}

// TestDashboardCoverage: the dashboard has a panel for each subject issue
// 17 asks for, seen through the metrics its queries name.
func TestDashboardCoverage(t *testing.T) {
	exprs, err := dashboard.PanelExprs(read(t, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	all := ""
	for _, e := range exprs {
		names, err := dashboard.MetricNames(e.PromQL)
		if err != nil {
			t.Fatalf("%s: %v", e.Where, err)
		}
		for _, n := range names {
			named[n] = true
		}
		all += e.PromQL + "\n"
	}
	for _, want := range []string{
		"ory_ext_authz_checks_total", "ory_ext_authz_check_duration_seconds_bucket",
		"ory_ext_authz_cache_lookups_total", "ory_ext_authz_cache_entries", "ory_ext_authz_cache_bytes",
		"ory_ext_authz_cache_max_bytes", "ory_ext_authz_cache_evictions_total",
		"ory_ext_authz_ory_requests_total", "ory_ext_authz_ory_inflight", "ory_ext_authz_ory_max_inflight",
		"ory_ext_authz_redis_operations_total", "ory_ext_authz_redis_breaker_state",
		"grpc_server_handled_total", "ory_ext_authz_ready", "ory_ext_authz_admin_invalidations_total",
	} {
		if !named[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
	for _, want := range []string{"sum by (decision, reason)", "histogram_quantile(0.5,", "histogram_quantile(0.99,", `result="refresh"`, "sum by (grpc_method, grpc_code)"} {
		if !strings.Contains(all, want) {
			t.Errorf("no query has %s", want)
		}
	}
}

// TestExpressionsParse: every PromQL expression of the dashboard and of the
// rules parses once the template variables are substituted, and names its
// metrics. (Whether the server exports them is checked against a real
// scrape in cmd/ory-ext-authz's TestObservabilityScrape.)
func TestExpressionsParse(t *testing.T) {
	d, err := dashboard.PanelExprs(read(t, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	r, err := dashboard.RuleExprs(read(t, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(d) < 30 || len(r) < 8 {
		t.Fatalf("%d dashboard and %d rule expressions: the files were not read", len(d), len(r))
	}
	for _, e := range append(d, r...) {
		names, err := dashboard.MetricNames(e.PromQL)
		if err != nil {
			t.Errorf("%s: %v", e.Where, err)
		} else if len(names) == 0 {
			t.Errorf("%s names no metric: %s", e.Where, e.PromQL)
		}
	}
}

// TestMetricNames: the parsing the checks above rely on, including what it
// must refuse.
func TestMetricNames(t *testing.T) {
	for _, tt := range []struct {
		name, promql string
		want         []string
		wantErr      string
	}{
		{"rate and ratio", `sum(rate(a_total{job=~"$job"}[$__rate_interval])) / sum(rate(b_total{instance=~"${instance}"}[5m]))`, []string{"a_total", "b_total"}, ""},
		{"histogram", `histogram_quantile(0.99, sum by (le) (rate(h_seconds_bucket[$__rate_interval])))`, []string{"h_seconds_bucket"}, ""},
		{"name matcher", `{__name__="up", job="x"} == 0 or up == 0`, []string{"up"}, ""},
		{"offset and subquery", `max_over_time(g[1h] offset 10m) > 2 * avg_over_time(g[1h:5m])`, []string{"g"}, ""},
		{"unknown variable", `rate(a_total{job=~"$jobs"}[5m])`, nil, "unknown template variables"},
		{"syntax error", `sum(rate(a_total[5m])`, nil, "parse"},
		{"no metric name", `{job="x"}`, nil, "no metric name"},
		{"regex metric name", `{__name__=~"a.*"}`, nil, "no metric name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dashboard.MetricNames(tt.promql)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("MetricNames = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	sels, err := dashboard.Selectors(`rate(a_total{job=~"$job", code=~"5..|error", result!="ok"}[5m])`)
	if err != nil || len(sels) != 1 {
		t.Fatalf("Selectors = %v, %v", sels, err)
	}
	for _, tt := range []struct {
		series map[string]string
		want   bool
	}{
		{map[string]string{"code": "503", "result": "miss"}, true},
		{map[string]string{"code": "error"}, true}, // result absent: "" != "ok"
		{map[string]string{"code": "200", "result": "miss"}, false},
		{map[string]string{"code": "503", "result": "ok"}, false},
	} {
		if got := sels[0].Matches(tt.series); got != tt.want {
			t.Errorf("Matches(%v) = %v, want %v (job is a target label, left out)", tt.series, got, tt.want)
		}
	}
	families := map[string]bool{"h_seconds": true, "a_total": false}
	for name, want := range map[string]string{"h_seconds_bucket": "h_seconds", "h_seconds_count": "h_seconds", "a_total": "a_total", "a_total_count": "", "nope": ""} {
		if got, ok := dashboard.Family(name, families); got != want || ok != (want != "") {
			t.Errorf("Family(%s) = %q %v, want %q", name, got, ok, want)
		}
	}
}
