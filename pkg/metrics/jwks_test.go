package metrics_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// TestJWKSObserver: the loads of the published JWKS, counted by result on
// /metrics, as serve wires them.
func TestJWKSObserver(t *testing.T) {
	m := metrics.New()
	priv, pub := testpki.KeySet(t, jwks.ES256, "k")
	file := filepath.Join(t.TempDir(), "jwks.public.json")
	put := func(b []byte) {
		t.Helper()
		testpki.ReplaceFile(t, file, b)
	}
	put(pub)
	p, err := jwkspub.New(jwkspub.Options{File: file, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	a := servertest.Start(t, server.Options{Authz: authv3.UnimplementedAuthorizationServer{}, Metrics: m.Handler(), JWKS: p})
	fetch := func() {
		t.Helper()
		resp, err := http.Get("http://" + a.HTTP + jwkspub.Path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	put(priv) // refused: the last good set stays
	fetch()
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	fetch()
	families := servertest.Metrics(t, a.HTTP)
	for result, want := range map[string]float64{jwkspub.ResultOK: 1, jwkspub.ResultRefused: 1, jwkspub.ResultUnreadable: 1} {
		if got := families.Value(t, "ory_ext_authz_jwks_loads_total", map[string]string{"result": result}); got != want {
			t.Errorf("ory_ext_authz_jwks_loads_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	m.ObserveJWKSLoad("bogus") // outside the fixed set: not counted, no new series
	if n := len(servertest.Metrics(t, a.HTTP)["ory_ext_authz_jwks_loads_total"].GetMetric()); n != len(jwkspub.Results()) {
		t.Errorf("%d series, want %d", n, len(jwkspub.Results()))
	}
}
