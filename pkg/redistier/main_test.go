package redistier_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// TestMain fails the package if any test leaves a goroutine behind. One
// goroutine of rueidis is let go: when rueidis.NewClient fails (Redis down,
// a wrong password), the cluster client it tried first has scheduled a
// topology refresh that sleeps up to a second, even after Close, and then
// runs once against the closed connections (rueidis singleflight.go,
// call.DelayDo). It is bounded and not ours to stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"))
}

// Test secrets, each 32 bytes.
var (
	secretA = []byte("test-secret-A-0123456789abcdefgh")
	secretB = []byte("test-secret-B-0123456789abcdefgh")
)

// testTimeout is the per-operation timeout of most tests: far above a
// loopback round trip even under -race on a busy machine, so that only the
// fault tests see timeouts.
const testTimeout = 250 * time.Millisecond

// observer counts ObserveRedis calls by "op/result" and keeps the breaker
// states seen.
type observer struct {
	mu     sync.Mutex
	counts map[string]int
	states []string
}

func newObserver() *observer { return &observer{counts: map[string]int{}} }

func (o *observer) ObserveRedis(op, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[op+"/"+result]++
}

func (o *observer) ObserveBreaker(state string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.states = append(o.states, state)
}

func (o *observer) count(opResult string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[opResult]
}

func (o *observer) sawState(state string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.states {
		if s == state {
			return true
		}
	}
	return false
}

type tierEnv struct {
	tier *redistier.Tier
	obs  *observer
	log  *logcapture.Buffer
}

// newTier starts a Tier on srv (nil: edit sets the URL) as
// redistest.NewTier does, but with secretA, testTimeout, this test's
// observer and a log that must show no secret, edited by edit (healthy
// waits for it).
func newTier(t *testing.T, srv *redistest.Server, edit func(*redistier.Options)) tierEnv {
	t.Helper()
	obs := newObserver()
	log, buf := logcapture.Logger(t, func() []string {
		return []string{string(secretA), string(secretB), "wrong-password-value", "right-password-value"}
	})
	url := ""
	if srv != nil {
		url = srv.URL()
	}
	tier := redistest.NewTier(t, url, func(o *redistier.Options) {
		o.Secrets, o.Timeout = [][]byte{secretA}, testTimeout
		o.WarnEvery, o.Logger, o.Observer = time.Millisecond, log, obs
		if edit != nil {
			edit(o)
		}
	})
	return tierEnv{tier: tier, obs: obs, log: buf}
}

// healthy waits (bounded) until tier is healthy.
func healthy(t *testing.T, tier *redistier.Tier) {
	t.Helper()
	testwait.For(t, "the tier to become healthy", tier.Healthy)
}

// healthyTier is newTier, once healthy.
func healthyTier(t *testing.T, srv *redistest.Server, edit func(*redistier.Options)) tierEnv {
	t.Helper()
	env := newTier(t, srv, edit)
	healthy(t, env.tier)
	return env
}

// storedValue starts a redis-server and a healthy Tier on it (newTier's,
// edited by edit) that has stored "v" under key(name): where a fault test
// starts from.
func storedValue(t *testing.T, name string, edit func(*redistier.Options)) (*redistest.Server, tierEnv, [32]byte) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	env := healthyTier(t, srv, edit)
	k := key(name)
	mustSet(t, env.tier, k, []byte("v"))
	return srv, env, k
}

func key(s string) [32]byte {
	var k [32]byte
	copy(k[:], fmt.Sprintf("%-32s", s))
	return k
}

// mustSet stores v under k for a minute.
func mustSet(t *testing.T, tier *redistier.Tier, k [32]byte, v []byte) {
	t.Helper()
	if err := tier.Set(t.Context(), k, v, time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

// mustLock takes k's fill lock for ttl and returns its unlock.
func mustLock(t *testing.T, tier *redistier.Tier, k [32]byte, ttl time.Duration) (unlock func()) {
	t.Helper()
	unlock, ok, err := tier.Lock(t.Context(), k, ttl)
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v; want it acquired", ok, err)
	}
	return unlock
}

func mustGet(t *testing.T, tier *redistier.Tier, k [32]byte, want []byte) {
	t.Helper()
	v, ok, err := tier.Get(t.Context(), k)
	if err != nil || !ok || !bytes.Equal(v, want) {
		t.Fatalf("Get = %q, %v, %v; want %q, true, nil", v, ok, err, want)
	}
}

func mustMiss(t *testing.T, tier *redistier.Tier, k [32]byte) {
	t.Helper()
	v, ok, err := tier.Get(t.Context(), k)
	if err != nil || ok || v != nil {
		t.Fatalf("Get = %q, %v, %v; want a miss", v, ok, err)
	}
}
