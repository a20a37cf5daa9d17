package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/checktest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/procgroup"
	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// redisTimeout is --redis-timeout here: far above a loopback round trip
// under -race on a busy machine, so that only the fault tests see
// timeouts and a count of whoami calls is exact.
const redisTimeout = 500 * time.Millisecond

// faultBound is the liveness bound of one check while Redis is sick. It is
// generous on purpose: no performance assertion, only that nothing hangs
// on Redis (a check makes a few Redis operations, each bounded by
// redisTimeout, before the breaker opens and they fail at once).
const faultBound = 5 * time.Second

// redisSecret is the shared-tier secret of every replica of a test.
const redisSecret = "integration-redis-secret-0123456789abcdef"

// replica is one ory-ext-authz server sharing Redis with the others.
type replica struct {
	name     string
	client   authv3.AuthorizationClient
	admin    adminv1.AdminClient
	httpAddr string
	logs     *logcapture.Buffer
	tier     *redistier.Tier // in-process replicas only
}

// replicaSet is replicas in front of one Kratos, through one recording
// proxy (so that whoami calls are counted over all of them), sharing one
// redis-server.
type replicaSet struct {
	k     *kratosdev.Kratos
	redis *redistest.Server
	proxy *whoamiProxy
	// secrets are what neither a log nor Redis may hold: cookies, tokens,
	// JWTs. ids are what Redis may not hold in clear either, but logs may
	// (the admin API logs the ids it invalidates).
	secrets, ids *secrets
	list         []*replica
	secretFile   string
	// routes, when set, is the route table of in-process replicas.
	routes *routes.Table
}

func newReplicaSet(t *testing.T, k *kratosdev.Kratos, srv *redistest.Server) *replicaSet {
	t.Helper()
	rs := &replicaSet{k: k, redis: srv, proxy: newWhoamiProxy(t, k.PublicURL()), secrets: &secrets{}, ids: &secrets{}}
	rs.secretFile = filepath.Join(t.TempDir(), "redis-secret")
	if err := os.WriteFile(rs.secretFile, []byte(redisSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs.secrets.add(redisSecret)
	return rs
}

// config is the configuration of an in-process replica: serve's, with the
// shared tier on.
func (rs *replicaSet) config(t *testing.T, edit func(*config.Config)) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.OryURL, cfg.TokenizeAs, cfg.WhoamiTimeout = rs.proxy.URL(), kratosdev.MeshTemplate, callTimeout
	cfg.RedisURL, cfg.RedisSecretFile, cfg.RedisTimeout = config.RedactedURL(rs.redis.URL()), rs.secretFile, redisTimeout
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startInProcess adds n replicas wired as serve wires them (the options
// from config.AuthzOptions and config.RedisOptions, the tier as the Check
// server's shared tier and the Ory client's shared pause, the metrics as
// its Observer), each on its own loopback listeners with the admin API.
func (rs *replicaSet) startInProcess(t *testing.T, n int, edit func(*config.Config)) {
	t.Helper()
	for range n {
		r := &replica{name: fmt.Sprintf("replica %d", len(rs.list))}
		cfg := rs.config(t, edit)
		log, logs := logcapture.Logger(t, rs.secrets.all)
		r.logs = logs
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log, last lines:\n%s", r.name, tail(logs.String(), 30))
			}
		})
		m := metrics.New()
		ro, _, err := cfg.RedisOptions()
		if err != nil {
			t.Fatal(err)
		}
		ro.Logger, ro.Observer = log, m
		if r.tier, err = redistier.New(t.Context(), ro); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.tier.Close) // last: after the server and the Ory client
		oc, err := ory.New(ory.Options{
			BaseURL: cfg.OryURL, Timeout: cfg.WhoamiTimeout, MaxJWTBytes: config.MaxCredentialBytes,
			MaxInflight: cfg.OryMaxInflight, Observer: m, SharedPause: r.tier, UserAgent: "ory-ext-authz/integration-test",
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(oc.Close)
		opts := cfg.AuthzOptions(oc)
		opts.Logger, opts.Observer, opts.Shared = log, m, r.tier
		if rs.routes != nil {
			opts.Routes = staticRoutes{rs.routes}
		}
		az, err := authz.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(az.Close) // after the server stopped
		if err := m.ObserveCache(az); err != nil {
			t.Fatal(err)
		}
		api, err := admin.New(admin.Options{Cache: az, Ory: oc, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		addrs := servertest.Start(t, server.Options{Authz: az, Logger: log, Metrics: m.Handler(), RegisterAdmin: func(gs *grpc.Server) { api.Register(gs) }})
		r.client = authv3.NewAuthorizationClient(servertest.Dial(t, addrs.GRPC))
		r.admin = adminv1.NewAdminClient(servertest.Dial(t, addrs.Admin))
		r.httpAddr = addrs.HTTP
		rs.list = append(rs.list, r)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// buildServer builds cmd/ory-ext-authz into a temporary directory, as
// `make build` does. Not with -race: the in-process replicas run the same
// code under the race detector; the binary is here to prove the flags and
// the wiring of serve itself.
func buildServer(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the server: %v", err)
	}
	out := filepath.Join(t.TempDir(), "ory-ext-authz")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", out, "./cmd/ory-ext-authz")
	cmd.Dir = kratostest.Root(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ory-ext-authz: %v\n%s", err, b)
	}
	return out
}

// startBinary adds a replica that is the real program: `ory-ext-authz
// serve` as a child process with args and only env in its environment, in
// front of the proxy. It is stopped with SIGTERM when the test ends and
// must exit 0; its log is checked for secrets.
func (rs *replicaSet) startBinary(t *testing.T, bin string, args []string, env map[string]string) {
	t.Helper()
	r := &replica{name: fmt.Sprintf("replica %d (serve)", len(rs.list)), logs: &logcapture.Buffer{}}
	grpcAddr, adminAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
	r.httpAddr = servertest.FreeAddr(t)
	full := append([]string{"serve", "--ory-url", rs.proxy.URL(), "--tokenize-as", kratosdev.MeshTemplate,
		"--grpc-addr", grpcAddr, "--http-addr", r.httpAddr, "--admin-addr", adminAddr, "--log-level", "debug"}, args...)
	cmd := exec.Command(bin, full...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	p, err := procgroup.Start(cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log, last lines:\n%s", r.name, tail(r.logs.String(), 30))
		}
		if err := p.Stop(20 * time.Second); err != nil {
			t.Errorf("%s: %v; log:\n%s", r.name, err, r.logs.String())
		}
		logcapture.AssertNoSecrets(t, r.logs.String(), rs.secrets.all())
	})
	testwait.Within(t, 20*time.Second, r.name+" ready", func() bool {
		select {
		case <-p.Exited():
			t.Fatalf("%s exited: %v; log:\n%s", r.name, p.Err(), r.logs.String())
		default:
		}
		resp, err := http.Get("http://" + r.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	r.client = authv3.NewAuthorizationClient(servertest.Dial(t, grpcAddr))
	r.admin = adminv1.NewAdminClient(servertest.Dial(t, adminAddr))
	rs.list = append(rs.list, r)
}

// metric reads one series from r's /metrics (see servertest.Families.Value):
// 0 while the series is absent.
func (r *replica) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := servertest.Metrics(t, r.httpAddr).Lookup(name, labels)
	return v
}

// redisOps is the count of one operation result on the replica.
func (r *replica) redisOps(t *testing.T, op, result string) float64 {
	t.Helper()
	return r.metric(t, "ory_ext_authz_redis_operations_total", map[string]string{"op": op, "result": result})
}

// clockSkew is pkg/tokencache's margin for replicas' clocks: a value in
// Redis fetched less than this after an invalidation a replica knows of
// (a purge included) is not taken by that replica.
const clockSkew = time.Second

// waitShared waits until every replica uses the tier (the breaker closed)
// and has subscribed to invalidations, and Redis counts them all as
// subscribers. A replica voids its cache when its subscription comes up
// and takes no value from Redis fetched within clockSkew after that, so
// tests that count whoami calls start only once that has passed.
func (rs *replicaSet) waitShared(t *testing.T) {
	t.Helper()
	for _, r := range rs.list {
		testwait.Within(t, 20*time.Second, r.name+" subscribed with the breaker closed", func() bool {
			return r.metric(t, "ory_ext_authz_redis_breaker_state", map[string]string{"state": "closed"}) == 1 &&
				r.redisOps(t, redistier.OpSubscribe, redistier.ResultOK) >= 1
		})
	}
	testwait.Within(t, 20*time.Second, "every replica a subscriber in Redis", func() bool {
		reply, err := rs.redis.Do("PUBSUB", "NUMSUB", redistier.DefaultChannel).ToArray()
		if err != nil || len(reply) != 2 {
			return false
		}
		n, err := reply[1].AsInt64()
		return err == nil && n == int64(len(rs.list))
	})
	waitUntil(t, time.Now().Add(clockSkew+100*time.Millisecond))
}

// session is one Kratos session and how ory-ext-authz presents it to
// Kratos, for counting whoami calls.
type session struct {
	headers       map[string]string
	header, value string // what the proxy sees
	sid           string
}

// login logs u in: a browser session (cookie) or a native one (token).
func (rs *replicaSet) login(t *testing.T, u user, browser bool) session {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	login, header := rs.k.APILogin, "X-Session-Token"
	if browser {
		login, header = rs.k.BrowserLoginSession, "Cookie"
	}
	value, sid, err := login(ctx, u.email, password)
	if err != nil {
		t.Fatal(err)
	}
	if browser {
		rs.secrets.addCookie(value) // the cookie's value too
	} else {
		rs.secrets.add(value)
	}
	rs.ids.add(sid)
	return session{headers: map[string]string{strings.ToLower(header): value}, header: header, value: value, sid: sid}
}

// calls counts the whoami calls of s that reached Kratos.
func (rs *replicaSet) calls(s session) int { return rs.proxy.CallsWith(s.header, s.value) }

// check sends one Check of s to r within timeout.
func (r *replica) check(t *testing.T, s session, timeout time.Duration) (*authv3.CheckResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return r.client.Check(ctx, checkRequest(s.headers, nil))
}

// allow checks s on r within timeout and requires the JWT; it returns it
// and whether it came from r's own cache.
func (rs *replicaSet) allow(t *testing.T, r *replica, s session, timeout time.Duration) (raw string, cached bool) {
	t.Helper()
	start := time.Now()
	resp, err := r.check(t, s, timeout)
	if err != nil {
		t.Fatalf("%s: Check after %v: %v", r.name, time.Since(start), err)
	}
	raw = checktest.BearerJWT(t, resp)
	rs.secrets.add(raw)
	return raw, metadata(resp)["cached"] == true
}

// assertRedisClean scans every key and value in Redis for the credentials,
// JWTs (and their parts) and ids the test used: everything there is keyed
// by an HMAC and sealed, so none may appear in clear.
func (rs *replicaSet) assertRedisClean(t *testing.T) {
	t.Helper()
	dump := rs.redis.Dump()
	if len(redistest.Values(dump)) == 0 {
		t.Error("Redis holds no value: the replicas did not use it")
	}
	for _, s := range append(rs.secrets.all(), rs.ids.all()...) {
		probes := []string{s}
		for _, part := range strings.Split(s, ".") {
			if len(part) >= 16 {
				probes = append(probes, part)
			}
		}
		if _, value, ok := strings.Cut(s, "="); ok && len(value) >= 16 {
			probes = append(probes, value)
		}
		for k, v := range dump {
			for _, p := range probes {
				if strings.Contains(k, p) || strings.Contains(string(v), p) {
					t.Errorf("Redis key %q (or its value) holds a secret in clear (%d bytes starting %.6q)", k, len(s), s)
				}
			}
		}
	}
}

// TestReplicasColdStorm: three real `ory-ext-authz serve` processes,
// configured through the --redis-* flags and the environment (an ACL user
// in ORY_EXT_AUTHZ_REDIS_USERNAME, its password in
// ORY_EXT_AUTHZ_REDIS_PASSWORD), share one redis-server. A cold storm of
// 100 sessions (cookies and session tokens), each checked three times at
// once on every replica, costs Kratos exactly one whoami call per session,
// and every check of a session gets the same JWT, whichever replica
// answered. The other replicas' answers are shared hits on /metrics.
// Nothing in Redis afterwards holds a cookie, token, JWT or id in clear.
func TestReplicasColdStorm(t *testing.T) {
	t.Parallel()
	redistest.Binary(t) // skip (or fail) before Kratos starts
	const sessions, perReplica, redisUser, redisPassword = 100, 3, "oea", "integration-redis-Pa55"
	k := kratostest.Start(t, kratosdev.Options{})
	srv := redistest.Start(t, redistest.Options{User: redisUser, UserPassword: redisPassword})
	rs := newReplicaSet(t, k, srv)
	rs.secrets.add(redisPassword)
	bin := buildServer(t)
	for range 3 {
		// The whoami timeout is long so that under this load (every call
		// of the storm at once, -race on a shared machine) no waiter gives
		// up on the fill lock's holder: they wait half of it.
		rs.startBinary(t, bin, []string{"--whoami-timeout", "20s", "--redis-url", srv.URL(), "--redis-secret-file", rs.secretFile, "--redis-timeout", "1s"},
			map[string]string{"ORY_EXT_AUTHZ_REDIS_USERNAME": redisUser, config.EnvRedisPassword: redisPassword})
	}
	rs.waitShared(t)
	for _, r := range rs.list {
		if logs := r.logs.String(); !strings.Contains(logs, "shared tier (Redis) on") || !strings.Contains(logs, srv.URL()) {
			t.Errorf("%s did not log that the shared tier is on:\n%s", r.name, logs)
		}
	}

	// One login at a time: Kratos' in-memory SQLite refuses concurrent ones.
	u := newUser(t, k, "storm")
	ss := make([]session, sessions)
	for i := range ss {
		ss[i] = rs.login(t, u, i%2 == 0)
	}

	var wg sync.WaitGroup
	jwts := make([][]string, sessions)
	var mu sync.Mutex
	start := make(chan struct{})
	for i, s := range ss {
		for _, r := range rs.list {
			for range perReplica {
				wg.Go(func() {
					<-start
					resp, err := r.check(t, s, 30*time.Second)
					jwt := ""
					if err == nil && resp.GetStatus().GetCode() == 0 && len(resp.GetOkResponse().GetHeaders()) == 1 {
						jwt = strings.TrimPrefix(resp.GetOkResponse().GetHeaders()[0].GetHeader().GetValue(), "Bearer ")
					} else {
						t.Errorf("session %d on %s: %v %v", i, r.name, resp.GetStatus(), err)
					}
					mu.Lock()
					jwts[i] = append(jwts[i], jwt)
					mu.Unlock()
				})
			}
		}
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, s := range ss {
		rs.secrets.add(jwts[i]...)
		if n := rs.calls(s); n != 1 {
			t.Errorf("session %d: %d whoami calls over 3 replicas, want 1", i, n)
		}
		for _, j := range jwts[i] {
			if j != jwts[i][0] {
				t.Errorf("session %d: the replicas answered with different JWTs", i)
				break
			}
		}
	}
	if n := len(rs.proxy.Calls()); n != sessions {
		t.Errorf("%d whoami calls for %d sessions, want %d", n, sessions, sessions)
	}
	var shared, sets float64
	for _, r := range rs.list {
		shared += r.metric(t, "ory_ext_authz_cache_lookups_total", map[string]string{"result": "shared_hit"})
		sets += r.redisOps(t, redistier.OpSet, redistier.ResultOK)
	}
	// Per session, the replica that asked Kratos wrote the JWT to Redis
	// and the two others took it from there.
	if sets != sessions || shared < 2*sessions {
		t.Errorf("%v values written to Redis and %v shared hits over the replicas, want %d and at least %d", sets, shared, sessions, 2*sessions)
	}
	rs.assertRedisClean(t)
}

// TestReplicasInvalidation: three replicas share a session's JWT (one
// whoami call); Kratos revokes it and every replica still serves it from
// its cache. InvalidateSession on replica A answers replicas=3; once B and
// C have the message, their next check asks Kratos again and is denied
// 401, and so is A's. A control session, revoked but not invalidated, is
// still served everywhere, and the tier's value of the invalidated session
// (fetched before the invalidation) is never taken again.
func TestReplicasInvalidation(t *testing.T) {
	t.Parallel()
	redistest.Binary(t) // skip (or fail) before Kratos starts
	k := kratostest.Start(t, kratosdev.Options{})
	rs := newReplicaSet(t, k, redistest.Start(t, redistest.Options{}))
	rs.startInProcess(t, 3, nil)
	rs.waitShared(t)
	a, b, c := rs.list[0], rs.list[1], rs.list[2]
	u := newUser(t, k, "ivan")
	s, control := rs.login(t, u, true), rs.login(t, u, false)
	rs.ids.add(u.id)

	for _, x := range []session{s, control} {
		raw, _ := rs.allow(t, a, x, callTimeout)
		for _, r := range []*replica{b, c} {
			if got, cached := rs.allow(t, r, x, callTimeout); got != raw || cached {
				t.Fatalf("%s: same JWT %v, cached %v; want A's JWT through Redis", r.name, got == raw, cached)
			}
		}
		if n := rs.calls(x); n != 1 {
			t.Fatalf("%d whoami calls for a session checked on 3 replicas, want 1", n)
		}
	}
	for _, x := range []session{s, control} {
		if err := k.RevokeSession(t.Context(), x.sid); err != nil {
			t.Fatal(err)
		}
	}
	kratosSays401(t, k, "Cookie", s.value)
	for _, r := range rs.list {
		for _, x := range []session{s, control} {
			if _, cached := rs.allow(t, r, x, callTimeout); !cached {
				t.Fatalf("%s: a revoked session not yet invalidated is not served from the cache", r.name)
			}
		}
	}

	messages := make([]float64, len(rs.list))
	for i, r := range rs.list {
		messages[i] = r.redisOps(t, redistier.OpMessage, redistier.ResultOK)
	}
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	resp, err := a.admin.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: s.sid})
	if err != nil {
		t.Fatalf("InvalidateSession on A: %v", err)
	}
	if resp.GetReplicas() != 3 {
		t.Errorf("InvalidateSession: replicas=%d, want 3", resp.GetReplicas())
	}
	// Pub/sub delivers asynchronously: wait until B and C counted the
	// message (it is applied right after it is counted).
	for i, r := range rs.list {
		testwait.For(t, r.name+" receiving the invalidation", func() bool {
			return r.redisOps(t, redistier.OpMessage, redistier.ResultOK) > messages[i]
		})
	}
	for i, r := range []*replica{b, c, a} {
		resp, err := r.check(t, s, callTimeout)
		denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
		if n := rs.calls(s); n != 2+i {
			t.Errorf("after %s's check: %d whoami calls, want %d (each replica asks Kratos again)", r.name, n, 2+i)
		}
	}
	for _, r := range rs.list {
		if _, cached := rs.allow(t, r, control, callTimeout); !cached {
			t.Errorf("%s: the control session is no longer served from the cache", r.name)
		}
	}
	if n := rs.calls(control); n != 1 {
		t.Errorf("%d whoami calls for the control session, want 1", n)
	}
	rs.assertRedisClean(t)
}

// TestReplicasInvalidateRedisDown: with Redis stopped, InvalidateSession
// on replica A fails with UNAVAILABLE (it could not reach the others) and
// still holds on A: A's next check asks Kratos and is denied. B, which
// lost its subscription with Redis, has voided its cache (it cannot know
// what it missed) and asks Kratos too.
func TestReplicasInvalidateRedisDown(t *testing.T) {
	t.Parallel()
	redistest.Binary(t) // skip (or fail) before Kratos starts
	k := kratostest.Start(t, kratosdev.Options{})
	srv := redistest.Start(t, redistest.Options{})
	rs := newReplicaSet(t, k, srv)
	rs.startInProcess(t, 3, nil)
	rs.waitShared(t)
	a, b := rs.list[0], rs.list[1]
	s := rs.login(t, newUser(t, k, "judy"), true)
	for _, r := range rs.list {
		rs.allow(t, r, s, callTimeout)
	}
	if n := rs.calls(s); n != 1 {
		t.Fatalf("%d whoami calls, want 1", n)
	}
	rs.assertRedisClean(t) // before Redis goes away
	if err := k.RevokeSession(t.Context(), s.sid); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	start := time.Now()
	_, err := a.admin.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: s.sid})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "applied on this replica only") {
		t.Fatalf("InvalidateSession with Redis down: %v, want UNAVAILABLE saying it holds on this replica only", err)
	}
	if d := time.Since(start); d > faultBound {
		t.Errorf("InvalidateSession took %v with Redis down", d)
	}
	resp, err := a.check(t, s, faultBound)
	denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)

	testwait.Within(t, 20*time.Second, "B noticing the lost subscription", func() bool {
		return strings.Contains(b.logs.String(), "invalidation subscription lost")
	})
	resp, err = b.check(t, s, faultBound)
	denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
}

// TestReplicasRedisFaults: three replicas share a Redis that fails in one
// way per subtest. While it does, checks of warm sessions (cached before
// the fault) and cold ones keep being answered with their JWT on every
// replica, each within faultBound; after it is over, the tier recovers on
// its own: a new session checked on A is then taken from Redis by B and C
// without another whoami call. Redis never holds a secret in clear.
func TestReplicasRedisFaults(t *testing.T) {
	t.Parallel()
	redistest.Binary(t) // skip (or fail) before Kratos starts
	k := kratostest.Start(t, kratosdev.Options{})
	const password, otherPassword = "integration-redis-right-Pa55", "integration-redis-other-Pa55"
	killClients := func(srv *redistest.Server) {
		srv.KillClients("TYPE", "normal")
		srv.KillClients("TYPE", "pubsub")
	}
	logged := func(text string) func(*testing.T, *replica) bool {
		return func(_ *testing.T, r *replica) bool { return strings.Contains(r.logs.String(), text) }
	}
	counted := func(result string) func(*testing.T, *replica) bool {
		return func(t *testing.T, r *replica) bool {
			for _, op := range redistier.Ops() {
				if r.redisOps(t, op, result) > 0 {
					return true
				}
			}
			return false
		}
	}
	faults := []struct {
		name    string
		opts    redistest.Options
		edit    func(*config.Config)
		on, off func(*redistest.Server)
		// felt tells that the fault reached the replica, so that the
		// subtest is not passing by missing it.
		felt func(*testing.T, *replica) bool
	}{
		{name: "SIGSTOP", on: (*redistest.Server).Pause, off: (*redistest.Server).Resume, felt: counted(redistier.ResultTimeout)},
		{
			name: "maxmemory 1 noeviction",
			on: func(srv *redistest.Server) {
				srv.ConfigSet("maxmemory-policy", "noeviction")
				srv.ConfigSet("maxmemory", "1")
			},
			off:  func(srv *redistest.Server) { srv.ConfigSet("maxmemory", "0") },
			felt: counted(redistier.ResultRejected),
		},
		{name: "CLIENT KILL", on: killClients, felt: logged("invalidation subscription lost")},
		{name: "restart", on: (*redistest.Server).Restart, felt: logged("invalidation subscription lost")},
		{
			// The password changes in Redis (the replicas' is now wrong)
			// and every connection must authenticate again; then it is
			// changed back.
			name: "wrong password",
			opts: redistest.Options{Password: password},
			edit: func(c *config.Config) { c.RedisPassword = password },
			on: func(srv *redistest.Server) {
				srv.ConfigSet("requirepass", otherPassword)
				killClients(srv)
			},
			off:  func(srv *redistest.Server) { srv.ConfigSet("requirepass", password) },
			felt: logged("WRONGPASS"),
		},
	}
	u := newUser(t, k, "kim")
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			srv := redistest.Start(t, f.opts)
			rs := newReplicaSet(t, k, srv)
			rs.secrets.add(password, otherPassword)
			rs.startInProcess(t, 3, f.edit)
			rs.waitShared(t)
			a := rs.list[0]
			warm := []session{rs.login(t, u, true), rs.login(t, u, false)}
			cold := []session{rs.login(t, u, true), rs.login(t, u, false)}
			for _, s := range warm {
				for _, r := range rs.list {
					rs.allow(t, r, s, callTimeout)
				}
				if n := rs.calls(s); n != 1 {
					t.Fatalf("before the fault: %d whoami calls for a warm session, want 1", n)
				}
			}

			f.on(srv)
			for _, s := range append(warm, cold...) {
				for _, r := range rs.list {
					start := time.Now()
					rs.allow(t, r, s, faultBound)
					if d := time.Since(start); d > faultBound {
						t.Errorf("%s: a check took %v during the fault", r.name, d)
					}
				}
			}
			if !f.felt(t, a) {
				t.Errorf("%s did not notice the fault", a.name)
			}
			if f.off != nil {
				f.off(srv)
			}

			for _, r := range rs.list {
				testwait.Within(t, 30*time.Second, r.name+"'s tier healthy again", r.tier.Healthy)
			}
			// Values reach Redis again: B and C take A's JWT from it. For
			// clockSkew after its subscription is back a replica takes no
			// value from Redis and asks Kratos itself; hence a new session
			// per attempt.
			testwait.Within(t, 30*time.Second, "a session shared through Redis again", func() bool {
				s := rs.login(t, u, false)
				raw, _ := rs.allow(t, a, s, faultBound)
				same := true
				for _, r := range rs.list[1:] {
					got, _ := rs.allow(t, r, s, faultBound)
					same = same && got == raw
				}
				return same && rs.calls(s) == 1
			})
			rs.assertRedisClean(t)
		})
	}
}

// staticRoutes is a route table that never changes.
type staticRoutes struct{ t *routes.Table }

func (s staticRoutes) Table() *routes.Table { return s.t }

// TestReplicasRoutesIdentityHeaders: a replica that reads a session's JWT
// from Redis, filled by another replica's whoami, answers with the route's
// identity headers from the JWT's claims and enforces its authorize rule
// as the filling one does; Kratos sees one call.
func TestReplicasRoutesIdentityHeaders(t *testing.T) {
	t.Parallel()
	redistest.Binary(t)
	k := kratostest.Start(t, kratosdev.Options{})
	rs := newReplicaSet(t, k, redistest.Start(t, redistest.Options{}))
	tab, err := routes.Parse([]byte(`rules:
  - name: staff
    match: {path: {prefix: /staff/}}
    authorize: 'claims.email.endsWith("@staff.example.org")'
  - name: app
    authorize: 'claims.sub == session.identity_id && session.aal == "aal1"'
    headers: {x-user-id: sub, x-user-email: email}
`))
	if err != nil {
		t.Fatal(err)
	}
	rs.routes = tab
	rs.startInProcess(t, 2, nil)
	rs.waitShared(t)
	u := newUser(t, k, "routes-replicas")
	s := rs.login(t, u, true)
	for i, r := range rs.list {
		h := map[string]string{"x-user-id": "forged"}
		for k, v := range s.headers {
			h[k] = v
		}
		resp, err := r.client.Check(t.Context(), checkRequest(h, nil))
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		set := map[string]string{}
		for _, hv := range resp.GetOkResponse().GetHeaders() {
			set[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		rs.secrets.add(strings.TrimPrefix(set["authorization"], "Bearer "))
		if set["x-user-id"] != u.id || set["x-user-email"] != u.email {
			t.Errorf("%s: identity headers %v, want x-user-id %s, x-user-email %s", r.name, set, u.id, u.email)
		}
		if i == 1 && rs.calls(s) != 1 {
			t.Errorf("Kratos saw %d whoami calls, want 1 (the second replica reads Redis)", rs.calls(s))
		}
		h[":path"] = "/staff/x"
		resp, err = r.client.Check(t.Context(), checkRequest(h, nil))
		denied(t, resp, err, codes.PermissionDenied, http.StatusForbidden)
	}
	rs.assertRedisClean(t)
}
