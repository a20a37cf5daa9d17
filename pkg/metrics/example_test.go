package metrics_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
)

// The metrics observe checks (authz.Observer) and whoami calls
// (ory.Observer) and are served by Handler on a private registry.
func ExampleMetrics_Handler() {
	m := metrics.New()
	m.ObserveCheck(authz.ReasonCached, 50*time.Microsecond)
	m.ObserveCheck(authz.ReasonCached, 70*time.Microsecond)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, `ory_ext_authz_checks_total{decision="allow",reason="cached"}`) {
			fmt.Println(line)
		}
	}
	// Output: ory_ext_authz_checks_total{decision="allow",reason="cached"} 2
}
