package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
)

const redisPassword = "cmd-redis-Pa55-w0rd"

// secretFile writes a shared-tier secret (with the newline echo adds).
func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "redis-secret")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitTierConnected waits until serve's shared tier has connected: serve
// is ready before it (Redis is never a dependency of serving), and until
// then the breaker fails every operation fast, so a fill in that window
// does not reach Redis.
func waitTierConnected(t *testing.T, httpAddr string) {
	t.Helper()
	testwait.For(t, "the shared tier connected", func() bool {
		v, ok := servertest.Metrics(t, httpAddr).Lookup("ory_ext_authz_redis_breaker_state", map[string]string{"state": "closed"})
		return ok && v == 1
	})
}

// TestServeSharedTier runs `serve` with the --redis-* flags: with a
// password only in the URL it fills Redis (sealed: no key or value holds
// the JWT) and logs one line saying the tier is on, with the URL
// redacted; with Redis down it still gets ready and answers checks, the
// breaker reported open; a secret file that is too short stops it before
// it listens, naming the flag.
func TestServeSharedTier(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	secret := secretFile(t, "cmd-test-secret-0123456789abcdefgh")

	t.Run("password in the URL", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{Password: redisPassword})
		url := "redis://:" + redisPassword + "@" + srv.Addr()
		// A Redis timeout far above a loopback round trip under -race on a
		// busy machine (as internal/integration uses): with the default 50ms the fill's first read could
		// time out, and a fill that cannot read Redis does not write it.
		s := startServe(t, fake, "--redis-url", url, "--redis-secret-file", secret, "--redis-timeout", "500ms")
		client := authv3.NewAuthorizationClient(servertest.Dial(t, s.grpcAddr))
		waitTierConnected(t, s.httpAddr)
		sess := fake.NewSession()
		if checkCached(t, client, sess) {
			t.Fatal("the first check was cached")
		}
		// The fill writes to Redis after answering; wait for the value.
		testwait.For(t, "a value in Redis", func() bool { return len(redistest.Values(srv.Dump())) > 0 })
		for k, v := range srv.Dump() {
			for _, secret := range fake.Secrets() {
				if secret != "" && (strings.Contains(k, secret) || strings.Contains(string(v), secret)) {
					t.Errorf("Redis key %q holds a credential or JWT in clear", k)
				}
			}
		}
		logs := s.logs.String()
		if !strings.Contains(logs, "shared tier (Redis) on") || !strings.Contains(logs, `redis://:xxxxx@`+srv.Addr()) {
			t.Errorf("no startup line with the redacted URL:\n%s", logs)
		}
		if strings.Contains(logs, redisPassword) {
			t.Errorf("the log shows the Redis password:\n%s", logs)
		}
		m := scrape(t, s.httpAddr)
		for _, series := range []string{
			`ory_ext_authz_redis_breaker_state{state="closed"} 1`,
			`ory_ext_authz_redis_operations_total{op="set",result="ok"} 1`,
			`ory_ext_authz_cache_lookups_total{result="shared_hit"} 0`,
		} {
			if !strings.Contains(m, series+"\n") {
				t.Errorf("/metrics has no %s", series)
			}
		}
	})

	t.Run("Redis down", func(t *testing.T) {
		// A port nothing listens on: startServe waits for /readyz, so
		// serve is ready without Redis.
		s := startServe(t, fake, "--redis-url", "redis://"+servertest.FreeAddr(t), "--redis-secret-file", secret)
		client := authv3.NewAuthorizationClient(servertest.Dial(t, s.grpcAddr))
		sess := fake.NewSession()
		if checkCached(t, client, sess) || !checkCached(t, client, sess) {
			t.Fatal("want a fill from Ory, then a hit")
		}
		if m := scrape(t, s.httpAddr); !strings.Contains(m, `ory_ext_authz_redis_breaker_state{state="closed"} 0`+"\n") {
			t.Errorf("the breaker is reported closed with Redis down:\n%s", m)
		}
	})

	t.Run("help", func(t *testing.T) {
		code, _, errOut := runCLI(t, "serve", "--help")
		for _, flag := range []string{"redis-url", "redis-secret-file", "redis-previous-secret-file", "redis-timeout", "redis-username", "redis-password-file", "redis-ca-file", "redis-cert-file", "redis-key-file"} {
			if code != 0 || !strings.Contains(errOut, "--"+flag+" (ORY_EXT_AUTHZ_") {
				t.Errorf("serve --help (exit %d) does not list --%s", code, flag)
			}
		}
		if !strings.Contains(errOut, "ORY_EXT_AUTHZ_REDIS_PASSWORD") {
			t.Error("serve --help does not name ORY_EXT_AUTHZ_REDIS_PASSWORD")
		}
	})

	t.Run("short secret", func(t *testing.T) {
		serveRefused(t, append(serveRefusedArgs(t), "--redis-url", "redis://127.0.0.1:1", "--redis-secret-file", secretFile(t, "short")),
			nil, "--redis-secret-file: ", "holds 5 bytes")
	})
}
