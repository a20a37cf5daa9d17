package servertest

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Metrics scrapes /metrics on the HTTP listener at httpAddr.
func Metrics(t testing.TB, httpAddr string) Families {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// Value is the value of the first series of name whose labels include
// labels: a counter's or a gauge's value, a histogram's sample count. It
// fails t when there is no such series.
func (f Families) Value(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	if _, ok := f[name]; !ok {
		t.Fatalf("no metric %s on /metrics", name)
	}
	v, ok := f.Lookup(name, labels)
	if !ok {
		t.Fatalf("no %s%v on /metrics", name, labels)
	}
	return v
}

// Lookup is Value for a series that may be absent (not yet observed): ok
// tells whether there is one.
func (f Families) Lookup(name string, labels map[string]string) (v float64, ok bool) {
	for _, m := range f[name].GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, l := range m.GetLabel() {
			found = found || l.GetName() == k && l.GetValue() == v
		}
		if !found {
			return false
		}
	}
	return true
}
