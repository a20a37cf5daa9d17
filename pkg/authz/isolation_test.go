package authz_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
)

// TestIsolationUnderLoad: 10,000 checks over 1,000 sessions from 64
// goroutines (run under -race in make test), with invalid credentials mixed
// in. Every answer carries its own session's identity or a denial; no JWT
// ever goes to another session.
func TestIsolationUnderLoad(t *testing.T) {
	e := newEnv(t)
	sessions := make([]*fakeory.Session, 1000)
	for i := range sessions {
		sessions[i] = e.ory.NewSession()
	}
	const checks, workers = 10000, 64
	var next, allowed, denied atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= checks {
					return
				}
				s := sessions[(i*7919)%int64(len(sessions))]
				var h map[string]string
				invalid := i%10 == 9
				switch {
				case invalid:
					h = map[string]string{"cookie": "ory_kratos_session=" + strings.ToUpper(s.Cookie)} // a near miss
				case i%3 == 0:
					h = map[string]string{"x-session-token": s.Token}
				case i%3 == 1:
					h = map[string]string{"authorization": "Bearer " + s.Token}
				default:
					h = map[string]string{"cookie": "a=b; " + s.CookiePair() + "; c=d"}
				}
				resp, err := e.client.Check(t.Context(), req(h, nil))
				if err != nil {
					fail("check %d: %v", i, err)
					continue
				}
				if invalid {
					if codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
						fail("check %d: invalid credential got %v", i, resp.GetStatus())
					}
					denied.Add(1)
					continue
				}
				hs := resp.GetOkResponse().GetHeaders()
				if resp.GetStatus().GetCode() != 0 || len(hs) != 1 {
					fail("check %d: %v", i, resp.GetStatus())
					continue
				}
				raw, _ := strings.CutPrefix(hs[0].GetHeader().GetValue(), "Bearer ")
				c := claimsOf(t, e.ory, raw)
				if c["sub"] != s.IdentityID || c["sid"] != s.ID {
					fail("check %d: session %s got the JWT of sub %v sid %v", i, s.ID, c["sub"], c["sid"])
				}
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("failures (first %d):\n%s", len(failures), strings.Join(failures, "\n"))
	}
	t.Logf("%d allowed, %d denied, %d Ory calls", allowed.Load(), denied.Load(), e.ory.Calls())
	if allowed.Load()+denied.Load() != checks {
		t.Fatalf("answered %d of %d", allowed.Load()+denied.Load(), checks)
	}
}
