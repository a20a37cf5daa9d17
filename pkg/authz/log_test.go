package authz_test

import (
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

// TestDenialLogs: denial lines carry the request ids and the key hash, a
// flood of them is rate-limited, and the next line says how many were
// dropped. Every decision is logged at debug.
func TestDenialLogs(t *testing.T) {
	e := newEnv(t, func(o *authz.Options) { o.LogRate = 1 }) // burst 5
	for i := range 50 {
		r := req(map[string]string{"cookie": "ory_kratos_session=bad" + strings.Repeat("x", i), "x-request-id": "rid-flood"}, nil)
		mustCheck(t, e, r)
	}
	var denials, decisions int
	for _, m := range logcapture.Records(t, e.logs.String()) {
		switch m["msg"] {
		case "no valid session":
			denials++
			if m["x_request_id"] != "rid-flood" || m["request_id"] != "req-1" || len(m["key"].(string)) != 12 {
				t.Errorf("denial line without the request ids and key hash: %v", m)
			}
		case "decision":
			decisions++
			if m["level"] != "DEBUG" || m["decision"] != "deny" || m["reason"] != "invalid_session" {
				t.Errorf("decision line: %v", m)
			}
		}
	}
	if denials < 1 || denials > 6 {
		t.Errorf("%d denial lines for 50 denials at 1/s burst 5, want the burst only", denials)
	}
	if decisions != 50 {
		t.Errorf("%d debug decision lines, want 50", decisions)
	}
	// The drop is reported on the next line that gets through.
	testwait.For(t, "a token for the next line", func() bool {
		mustCheck(t, e, req(map[string]string{"cookie": "ory_kratos_session=later"}, nil))
		return strings.Contains(e.logs.String(), `"dropped_log_lines"`)
	})
}
