package redistier_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// Through a real sentinel: the Tier finds the master by name, and after a
// failover it writes to the promoted replica, with no error for longer
// than the failover takes and no restart.
func TestSentinelFailover(t *testing.T) {
	// No 5 s wait before the replica's first sync.
	master := redistest.Start(t, redistest.Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	replica := redistest.Start(t, redistest.Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port())}})
	testwait.Within(t, 15*time.Second, "the replica to sync", func() bool {
		info, _ := replica.Do("INFO", "replication").ToString()
		return strings.Contains(info, "master_link_status:up")
	})
	sentinel := redistest.StartSentinel(t, master, 1)
	env := healthyTier(t, master, func(o *redistier.Options) {
		o.URL = fmt.Sprintf("redis://%s?master_set=%s", sentinel.Addr(), redistest.SentinelMaster)
	})
	mustSet(t, env.tier, key("before"), []byte("v1"))
	mustGet(t, env.tier, key("before"), []byte("v1"))
	testwait.For(t, "the write to reach the replica", func() bool {
		n, _ := replica.Do("DBSIZE").AsInt64()
		return n == 1
	})

	// NOGOODSLAVE until the sentinel has heard from the replica itself.
	testwait.Within(t, 30*time.Second, "the sentinel to accept the failover", func() bool {
		c := sentinel.Client()
		return c.Do(t.Context(), c.B().Arbitrary("SENTINEL", "FAILOVER", redistest.SentinelMaster).Build()).Error() == nil
	})
	testwait.Within(t, 30*time.Second, "the replica to be promoted", func() bool {
		role, _ := replica.Do("ROLE").ToArray()
		s, _ := role[0].ToString()
		return s == "master"
	})
	testwait.Within(t, 30*time.Second, "a write to reach the promoted replica", func() bool {
		if err := env.tier.Set(t.Context(), key("after"), []byte("v2"), time.Minute); err != nil {
			return false
		}
		n, _ := replica.Do("DBSIZE").AsInt64()
		return n == 2
	})
	mustGet(t, env.tier, key("before"), []byte("v1"))
	mustGet(t, env.tier, key("after"), []byte("v2"))
}
