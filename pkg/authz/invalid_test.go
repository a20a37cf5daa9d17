package authz_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// recorder counts what the metrics would count: checks by reason
// (authz.Observer) and whoami calls by code (ory.Observer).
type recorder struct {
	mu      sync.Mutex
	reasons map[string]int
	ory     map[string]int
}

func newRecorder() *recorder { return &recorder{reasons: map[string]int{}, ory: map[string]int{}} }

func (r *recorder) ObserveCheck(reason authz.Reason, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons[reason.String()]++
}

func (r *recorder) ObserveOryRequest(code string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ory[code]++
}

func (r *recorder) counts() (reasons, ory map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reasons, ory = map[string]int{}, map[string]int{}
	for k, v := range r.reasons {
		reasons[k] = v
	}
	for k, v := range r.ory {
		ory[k] = v
	}
	return reasons, ory
}

// TestInvalidCredential: a credential with bytes Go's HTTP client refuses to
// send (control bytes but tab) is an invalid session, in both of Envoy's
// header encodings: 401 through on_missing, counted as invalid_credential,
// never sent to Ory, never counted as an Ory failure. Before, the client's
// refusal looked like an unreachable Ory: gRPC Unavailable, which Envoy's
// failure_mode_allow turns into an allow.
func TestInvalidCredential(t *testing.T) {
	// secret is the part of each credential a log line must not show.
	const secret = "MTcinvalidcredentialpart"
	tests := []struct {
		name    string
		headers map[string]string
	}{
		{"DEL in token header", map[string]string{"x-session-token": "ory_st_" + secret + "\x7f"}},
		{"SOH in session cookie", map[string]string{"cookie": "theme=dark; ory_kratos_session=" + secret + "\x01x"}},
		{"US after Bearer ory_st_", map[string]string{"authorization": "Bearer ory_st_" + secret + "\x1f"}},
	}
	for _, tt := range tests {
		for _, raw := range []bool{false, true} {
			name := tt.name + " in headers"
			if raw {
				name = tt.name + " in header_map"
			}
			t.Run(name, func(t *testing.T) {
				rec := newRecorder()
				fake := fakeory.New()
				t.Cleanup(fake.Close)
				e := newEnvFull(t, fake, func(o *ory.Options) { o.Observer = rec }, func(o *authz.Options) { o.Observer = rec })
				build := func(ext map[string]string) *authv3.CheckRequest {
					r := req(tt.headers, ext)
					if !raw {
						return r
					}
					var kv [][2]string
					for k, v := range r.GetAttributes().GetRequest().GetHttp().GetHeaders() {
						kv = append(kv, [2]string{k, v})
					}
					return rawReq(kv, ext)
				}
				// Errors, not fatal: the counts below say where the
				// credential went when the answer is wrong.
				if resp, err := check(t, e, build(nil)); err != nil {
					t.Errorf("Check: %v, want a 401 denial", err)
				} else if d := deniedStatus(t, resp, codes.Unauthenticated, http.StatusUnauthorized); !strings.Contains(d.GetBody(), `"unauthenticated"`) {
					t.Errorf("body = %q", d.GetBody())
				}
				// on_missing applies as to any invalid session.
				if resp, err := check(t, e, build(map[string]string{"on_missing": "allow"})); err != nil {
					t.Errorf("on_missing=allow: Check: %v, want OK untouched", err)
				} else if resp.GetStatus().GetCode() != int32(codes.OK) || len(resp.GetOkResponse().GetHeaders()) != 0 {
					t.Errorf("on_missing=allow: got %v, want OK untouched", resp)
				}
				if n := fake.Calls(); n != 0 {
					t.Errorf("Ory calls = %d, want 0", n)
				}
				if calls, failures := e.oc.Stats(); calls != 0 || failures != 0 {
					t.Errorf("Ory client stats: %d calls, %d failures; want none", calls, failures)
				}
				if st := e.az.CacheStats(); st.Misses != 0 || st.NegativeHits != 0 {
					t.Errorf("cache stats %+v: the credential reached the cache", st)
				}
				reasons, oryCodes := rec.counts()
				if reasons["invalid_credential"] != 1 || reasons["allow_missing"] != 1 || len(reasons) != 2 {
					t.Errorf("checks by reason = %v, want invalid_credential 1, allow_missing 1", reasons)
				}
				if len(oryCodes) != 0 {
					t.Errorf("whoami calls by code = %v, want none", oryCodes)
				}
				logs := e.logs.String()
				if !strings.Contains(logs, "no valid session") || !strings.Contains(logs, credential.ErrInvalid.Error()) {
					t.Error("no denial line naming the invalid credential")
				}
				if strings.Contains(logs, secret) {
					t.Error("the log holds the credential")
				}
				if strings.Contains(logs, "Ory unavailable") {
					t.Error("logged as an Ory outage")
				}
			})
		}
	}
}
