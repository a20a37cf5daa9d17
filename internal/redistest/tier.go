package redistest

import (
	"strings"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// Secret is the shared-tier secret of the tiers Tier starts.
var Secret = []byte("redistest-secret-0123456789abcdef")

// Tier starts a redistier.Tier as NewTier does and waits until it has
// connected, so that a test's first operation reaches Redis.
func Tier(t testing.TB, url string, edit func(*redistier.Options)) *redistier.Tier {
	t.Helper()
	tier := NewTier(t, url, edit)
	testwait.For(t, "the tier to connect to Redis", tier.Healthy)
	return tier
}

// NewTier starts a redistier.Tier on url (a Server's or Cluster's URL)
// with Secret, a timeout generous for a loaded test machine and short
// reconnect backoffs, closed when the test ends; edit, if not nil, changes
// the options first. It does not wait for the tier to connect: for tests
// of a Redis that is down, hung or refuses the tier.
func NewTier(t testing.TB, url string, edit func(*redistier.Options)) *redistier.Tier {
	t.Helper()
	o := redistier.Options{
		URL: url, Secrets: [][]byte{Secret}, Timeout: 500 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
	if edit != nil {
		edit(&o)
	}
	tier, err := redistier.New(t.Context(), o)
	if err != nil {
		t.Fatalf("redistest: redistier.New: %v", err)
	}
	t.Cleanup(tier.Close)
	return tier
}

// Values are the names in dump (a Server's or Cluster's Dump) of the
// values tiers stored: they end in "}v" (pkg/redistier's key names).
func Values(dump map[string][]byte) []string {
	var out []string
	for k := range dump {
		if strings.HasSuffix(k, "}v") {
			out = append(out, k)
		}
	}
	return out
}
