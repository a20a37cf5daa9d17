package deploy_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// EnvEnvoyBin names the Envoy binary TestEnvoyEndToEnd runs (v1.37, the
// version envoy.yaml targets). Unset, the test is skipped.
const EnvEnvoyBin = "ENVOY_BIN"

// Route names of envoy.yaml that the end-to-end test sends requests to.
const (
	routePublic   = "public"
	routeOptional = "optional"
	routeDefault  = "default"
)

// TestEnvoyEndToEnd runs a real Envoy on deploy/envoy/envoy.yaml, with only
// addresses, ports and the issuer rewritten for loopback, in front of the
// real server (in-process, publishing the tokenizer's public keys, which
// Envoy's remote_jwks fetches from it), a real Kratos and an echo upstream
// that reports the headers it received.
func TestEnvoyEndToEnd(t *testing.T) {
	bin := os.Getenv(EnvEnvoyBin)
	if bin == "" {
		t.Skip("ENVOY_BIN not set: set it to an Envoy v1.37 binary to run deploy/envoy/envoy.yaml end to end")
	}
	if _, err := os.Stat(bin); err != nil {
		// An explicit setting that is wrong is a mistake, never a reason to skip.
		t.Fatalf("%s=%s: %v", EnvEnvoyBin, bin, err)
	}
	s := loadEnvoy(t, envoyConfig)
	st := startStack(t, s)
	k, pub, identity, cookie, sessionToken := st.kratos, st.pub, st.identity, st.cookie, st.sessionToken
	meshTTL, optTTL, checks := st.meshTTL, st.optTTL, st.checks
	echo, hits := startEcho(t)

	dir := t.TempDir()
	renderEnvoy(t, s, dir, renderTarget{
		authz:    checks.addr,
		http:     checks.httpAddr,
		upstream: echo.Listener.Addr().String(),
		issuer:   k.PublicURL(),
	})
	front := startEnvoy(t, bin, dir, checks.addr)

	forged := forgeJWT(t, pub, k.PublicURL())
	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	do := func(t *testing.T, method, path string, h http.Header) (int, *echoed) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, front+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, vs := range h {
			req.Header[name] = vs
		}
		before := hits.Load()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if hits.Load() == before {
			return resp.StatusCode, nil
		}
		var e echoed
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s %s: echo answer: %v", method, path, err)
		}
		return resp.StatusCode, &e
	}
	// oneJWT asserts the upstream got exactly one Authorization header with a
	// JWT of the identity that verifies, and returns its claims.
	oneJWT := func(t *testing.T, e *echoed, ttl time.Duration) map[string]any {
		t.Helper()
		if e == nil {
			t.Fatal("the request did not reach the upstream")
		}
		got := e.Headers.Values("Authorization")
		if len(got) != 1 {
			t.Fatalf("upstream got %d Authorization headers, want exactly 1", len(got))
		}
		tok, ok := strings.CutPrefix(got[0], "Bearer ")
		if !ok {
			t.Fatal("upstream Authorization is not a Bearer token")
		}
		c := verifyJWT(t, tok, pub)
		if c["iss"] != k.PublicURL() || c["sub"] != identity {
			t.Errorf("JWT iss %v sub %v, want %s and the identity %s", c["iss"], c["sub"], k.PublicURL(), identity)
		}
		iat, _ := c["iat"].(float64)
		exp, _ := c["exp"].(float64)
		if d := time.Duration(exp-iat) * time.Second; d < ttl-time.Second || d > ttl+time.Second {
			t.Errorf("JWT lifetime %s, want the template's %s", d, ttl)
		}
		return c
	}
	noAuthorization := func(t *testing.T, e *echoed) {
		t.Helper()
		if e == nil {
			t.Fatal("the request did not reach the upstream")
		}
		if v := e.Headers.Values("Authorization"); len(v) > 0 {
			t.Errorf("upstream got Authorization %d times, want none", len(v))
		}
	}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}

	t.Run("cookie gets one verified JWT", func(t *testing.T) {
		status, e := do(t, http.MethodGet, "/anything", hdr("Cookie", cookie))
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200", status)
		}
		oneJWT(t, e, meshTTL)
	})
	t.Run("session token header gets one verified JWT and stays at the proxy", func(t *testing.T) {
		status, e := do(t, http.MethodGet, "/anything", hdr(config.DefaultSessionTokenHeader, sessionToken))
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200", status)
		}
		oneJWT(t, e, meshTTL)
		if e.Headers.Get(config.DefaultSessionTokenHeader) != "" {
			t.Errorf("upstream got the Ory session token in %s", config.DefaultSessionTokenHeader)
		}
	})
	t.Run("session token as bearer is replaced by the JWT", func(t *testing.T) {
		status, e := do(t, http.MethodGet, "/anything", hdr("Authorization", "Bearer "+sessionToken))
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200", status)
		}
		oneJWT(t, e, meshTTL)
	})
	t.Run("spoofed Authorization headers are replaced", func(t *testing.T) {
		status, e := do(t, http.MethodGet, "/anything", hdr("Cookie", cookie, "Authorization", "Bearer "+forged, "Authorization", "Bearer not-a-jwt"))
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200", status)
		}
		c := oneJWT(t, e, meshTTL)
		if c["sub"] == "mallory" {
			t.Error("the forged JWT reached the upstream")
		}
	})
	t.Run("no session is denied before the upstream", func(t *testing.T) {
		for name, h := range map[string]http.Header{
			"nothing":     nil,
			"forged JWT":  hdr("Authorization", "Bearer "+forged),
			"bad cookie":  hdr("Cookie", kratosdev.SessionCookie+"=MTAwMDAwMDAwMHxub3QtYS1zZXNzaW9u"),
			"bad token":   hdr(config.DefaultSessionTokenHeader, "ory_st_not-a-session-token"),
			"other token": hdr("Authorization", "Bearer ory_st_not-a-session-token"),
		} {
			status, e := do(t, http.MethodGet, "/anything", h)
			if status != http.StatusUnauthorized || e != nil {
				t.Errorf("%s: status %d, reached upstream %v; want 401 without reaching it", name, status, e != nil)
			}
		}
	})
	t.Run("public route passes without a check and without Authorization", func(t *testing.T) {
		before := checks.n.Load()
		for _, h := range []http.Header{nil, hdr("Authorization", "Bearer "+forged)} {
			status, e := do(t, http.MethodGet, "/public/page", h)
			if status != http.StatusOK {
				t.Fatalf("status %d, want 200", status)
			}
			noAuthorization(t, e)
		}
		if n := checks.n.Load() - before; n != 0 {
			t.Errorf("the public route made %d Check calls, want none", n)
		}
	})
	t.Run("optional route: another template, anonymous allowed without Authorization", func(t *testing.T) {
		status, e := do(t, http.MethodGet, "/optional/page", nil)
		if status != http.StatusOK {
			t.Fatalf("anonymous: status %d, want 200", status)
		}
		noAuthorization(t, e)
		status, e = do(t, http.MethodGet, "/optional/page", hdr("Cookie", cookie))
		if status != http.StatusOK {
			t.Fatalf("cookie: status %d, want 200", status)
		}
		oneJWT(t, e, optTTL)
		// Without a session the server removes a client's Authorization,
		// so jwt_authn sees none and allows the missing JWT.
		status, e = do(t, http.MethodGet, "/optional/page", hdr("Authorization", "Bearer "+forged))
		if status != http.StatusOK {
			t.Fatalf("forged JWT: status %d, want 200 without it", status)
		}
		noAuthorization(t, e)
	})
	t.Run("CORS preflight reaches the upstream without Authorization", func(t *testing.T) {
		for _, path := range []string{"/anything", "/optional/page"} {
			status, e := do(t, http.MethodOptions, path, hdr("Origin", "https://app.example.com", "Access-Control-Request-Method", "POST", "Authorization", "Bearer "+forged))
			if status != http.StatusOK {
				t.Fatalf("%s: status %d, want 200 from the upstream", path, status)
			}
			noAuthorization(t, e)
		}
	})
	t.Run("OPTIONS without Origin is no preflight", func(t *testing.T) {
		status, e := do(t, http.MethodOptions, "/anything", hdr("Access-Control-Request-Method", "POST", "Authorization", "Bearer "+forged))
		if status != http.StatusUnauthorized || e != nil {
			t.Errorf("status %d, reached upstream %v; want 401 without reaching it", status, e != nil)
		}
	})
}

// stack is everything behind Envoy: a real Kratos with the templates the
// routes ask for, a logged-in identity, and the server in front of it.
type stack struct {
	kratos               *kratosdev.Kratos
	pub                  jose.JSONWebKeySet
	pubJSON              []byte
	jwksFile             string // pubJSON, for --jwks-publish
	identity             string
	cookie, sessionToken string
	optTemplate          string
	meshTTL, optTTL      time.Duration
	checks               *countingAuthz
}

// The identity every stack logs in with.
const stackEmail, stackPassword = "deploy-test@example.com", "deploy-test-password-1"

// startStack starts Kratos with the optional route's template (its ttl as
// the compose Kratos has it), logs in with the browser and the API flow, and
// starts the server.
func startStack(t *testing.T, s *envoySetup) *stack {
	t.Helper()
	a, ok := findRoute(t, s, routeOptional).GetTypedPerFilterConfig()[extAuthzFilter]
	if !ok {
		t.Fatalf("route %s has no ext_authz per-route config", routeOptional)
	}
	optTemplate := unpack[*extauthzv3.ExtAuthzPerRoute](t, a).GetCheckSettings().GetContextExtensions()[authz.ContextTokenizeAs]
	if optTemplate == "" || optTemplate == kratosdev.MeshTemplate {
		t.Fatalf("route %s: want another template than %s, got %q", routeOptional, kratosdev.MeshTemplate, optTemplate)
	}
	optTTL := templateTTL(t, kratosTemplates(composeKratosConfig(t, loadCompose(t))), optTemplate)
	st := startKratos(t, map[string]time.Duration{optTemplate: optTTL})
	st.optTemplate, st.optTTL = optTemplate, optTTL
	cfg := config.Default()
	cfg.OryURL, cfg.TokenizeAs, cfg.JWKSPublish = st.kratos.PublicURL(), kratosdev.MeshTemplate, st.jwksFile
	st.checks = startServer(t, cfg)
	return st
}

// startKratos starts Kratos with the mesh template of the base config and
// the templates given (name to ttl), creates the stack's identity, logs it
// in with the browser and the API flow, and writes the tokenizer's public
// JWKS to a file. It starts no server.
func startKratos(t *testing.T, templates map[string]time.Duration) *stack {
	t.Helper()
	st := &stack{meshTTL: templateTTL(t, kratosTemplates(loadYAMLMap(t, kratosBaseConfig)), kratosdev.MeshTemplate)}
	tpls := map[string]kratosdev.TokenizerTemplate{}
	for name, ttl := range templates {
		tpls[name] = kratosdev.TokenizerTemplate{TTL: ttl}
	}
	k := kratostest.Start(t, kratosdev.Options{Templates: tpls})
	st.kratos = k
	var err error
	if st.pubJSON, err = jwks.Public(k.JWKS()); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(st.pubJSON, &st.pub); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if st.identity, err = k.CreateIdentity(ctx, stackEmail, stackPassword); err != nil {
		t.Fatal(err)
	}
	if st.cookie, err = k.BrowserLogin(ctx, stackEmail, stackPassword); err != nil {
		t.Fatal(err)
	}
	if st.sessionToken, _, err = k.APILogin(ctx, stackEmail, stackPassword); err != nil {
		t.Fatal(err)
	}
	// Kratos starts its jsonnet workers on the first tokenize; do that now,
	// not inside the 1s whoami timeout.
	warmUp(t, k, kratosdev.MeshTemplate, st.cookie)
	for tpl := range templates {
		warmUp(t, k, tpl, st.cookie)
	}
	st.jwksFile = filepath.Join(t.TempDir(), "jwks.public.json")
	if err := os.WriteFile(st.jwksFile, st.pubJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	return st
}

// echoed is what the echo upstream answers: the request it received.
type echoed struct {
	Path    string      `json:"path"`
	Headers http.Header `json:"headers"`
}

func startEcho(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Path: r.URL.Path, Headers: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// countingAuthz counts the Check calls Envoy makes.
type countingAuthz struct {
	authv3.AuthorizationServer
	n        atomic.Int64
	addr     string // gRPC
	httpAddr string // probes, metrics and the JWKS
	// forwardAddr is the forward-auth listener (/auth, /envoy/), when
	// cfg.ForwardAuthAddr asks for one.
	forwardAddr string
}

func (c *countingAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	c.n.Add(1)
	return c.AuthorizationServer.Check(ctx, req)
}

// startServer runs the server as `serve` builds it from cfg (wire in
// cmd/ory-ext-authz), on loopback whatever cfg's addresses: the Ory client
// of cfg.OryURL, the Check server of cfg.AuthzOptions, with cfg.Routes the
// route table through its Watcher (refused as serve refuses it), and the
// public JWKS of cfg.JWKSPublish on the HTTP listener, and with
// cfg.ForwardAuthAddr the forward-auth handler for cfg.TrustedProxies on a
// listener of its own.
func startServer(t *testing.T, cfg config.Config) *countingAuthz {
	t.Helper()
	logs := &logcapture.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	oc, err := ory.New(ory.Options{
		BaseURL:     cfg.OryURL,
		Timeout:     cfg.WhoamiTimeout,
		MaxJWTBytes: config.MaxCredentialBytes,
		UserAgent:   "ory-ext-authz-deploy-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := cfg.AuthzOptions(oc)
	opts.Logger = log
	if cfg.Routes != "" {
		hasLogin := cfg.LoginURL != ""
		w, err := routes.NewWatcher(cfg.Routes, routes.WatcherOptions{
			Logger: log,
			Accept: func(tb *routes.Table) error { return authz.CheckTable(tb, hasLogin) },
		})
		if err != nil {
			oc.Close()
			t.Fatalf("--routes: the server refuses the table: %v", err)
		}
		opts.Routes = w
	}
	az, err := authz.New(opts)
	if err != nil {
		oc.Close()
		t.Fatal(err)
	}
	// Registered before the server starts, so it runs after the server stopped.
	t.Cleanup(func() {
		az.Close()
		oc.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	pub, err := jwkspub.New(jwkspub.Options{File: cfg.JWKSPublish, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c := &countingAuthz{AuthorizationServer: az}
	o := server.Options{Authz: c, JWKS: pub, ShutdownTimeout: 5 * time.Second, Logger: log}
	if cfg.ForwardAuthAddr != "" {
		o.ForwardAuth = servertest.Listen(t)
		o.ForwardAuthHandler = az.ForwardAuth(authz.ForwardAuthOptions{TrustedProxies: cfg.TrustedProxies})
		c.forwardAddr = o.ForwardAuth.Addr().String()
	}
	a := servertest.Start(t, o)
	c.addr, c.httpAddr = a.GRPC, a.HTTP
	return c
}

// renderTarget is what the loopback setup changes in envoy.yaml.
type renderTarget struct {
	authz, http, upstream string // host:port: the server's gRPC and HTTP listeners, the echo
	issuer                string
}

// renderEnvoy writes dir/envoy.json: envoy.yaml with every listen address on
// 127.0.0.1:0, the clusters pointing at the in-process servers (remote_jwks
// at the server's HTTP listener), and the issuer of this Kratos.
func renderEnvoy(t *testing.T, s *envoySetup, dir string, rt renderTarget) {
	t.Helper()
	loopback := func() *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0},
		}}}
	}
	s.boot.GetAdmin().Address = loopback()
	s.listener.Address = loopback()

	upstream := findRoute(t, s, routeDefault).GetRoute().GetCluster()
	for name, c := range s.clusters {
		var target string
		switch name {
		case authzCluster:
			target = rt.authz
		case jwksCluster:
			target = rt.http
		case upstream:
			target = rt.upstream
		default:
			t.Fatalf("cluster %s: the test does not know what it stands for", name)
		}
		host, port := splitAddr(t, target)
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		for _, ep := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range ep.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				sa.Address = host
				sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: port}
			}
		}
	}

	// remote_jwks keeps its http_uri: the cluster decides where Envoy
	// connects, the URI gives the path (and the Host header).
	for _, p := range s.jwt.GetProviders() {
		p.Issuer = rt.issuer
	}
	s.repack(t)
	if err := s.boot.ValidateAll(); err != nil {
		t.Fatalf("rendered config: %v", err)
	}
	out, err := protojson.MarshalOptions{Multiline: true}.Marshal(s.boot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "envoy.json"), out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startEnvoy validates and starts Envoy on dir/envoy.json, waits until it is
// live and the authz host is healthy, and returns the listener's base URL.
func startEnvoy(t *testing.T, bin, dir, authzAddr string) string {
	t.Helper()
	cfg := filepath.Join(dir, "envoy.json")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "--mode", "validate", "--disable-hot-restart", "-c", cfg).CombinedOutput(); err != nil {
		t.Fatalf("envoy --mode validate: %v\n%s", err, out)
	}

	logPath := filepath.Join(dir, "envoy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin-address")
	cmd := exec.Command(bin, "-c", cfg, "--admin-address-path", adminPath,
		// No shared memory: parallel runs must not share a hot-restart base id.
		"--disable-hot-restart", "--concurrency", "1", "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 16<<10 {
				b = b[len(b)-16<<10:]
			}
			t.Logf("Envoy log (%s), tail:\n%s", logPath, b)
		}
	})

	// poll runs f until it returns true, Envoy exits or a minute passes.
	deadline := time.Now().Add(time.Minute)
	poll := func(what string, f func() bool) {
		t.Helper()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for !f() {
			select {
			case <-exited:
				t.Fatalf("Envoy exited while waiting for %s", what)
			case <-tick.C:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	var admin string
	poll("the admin address file", func() bool {
		b, err := os.ReadFile(adminPath)
		admin = strings.TrimSpace(string(b))
		return err == nil && admin != ""
	})
	admin = "http://" + admin
	adminClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer adminClient.CloseIdleConnections()
	get := func(path string) (int, []byte) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := adminClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	poll("Envoy to be live (/ready)", func() bool { status, _ := get("/ready"); return status == http.StatusOK })
	healthy := fmt.Sprintf("%s::%s::health_flags::healthy", authzCluster, authzAddr)
	poll("the authz host to pass its gRPC health check", func() bool {
		_, b := get("/clusters")
		return bytes.Contains(b, []byte(healthy))
	})

	status, b := get("/listeners?format=json")
	if status != http.StatusOK {
		t.Fatalf("admin /listeners: status %d", status)
	}
	var ls adminv3.Listeners
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &ls); err != nil {
		t.Fatalf("admin /listeners: %v", err)
	}
	for _, l := range ls.GetListenerStatuses() {
		if sa := l.GetLocalAddress().GetSocketAddress(); sa.GetPortValue() != 0 {
			return "http://" + net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
		}
	}
	t.Fatalf("admin /listeners shows no bound listener: %s", b)
	return ""
}

// warmUp tokenizes once directly at Kratos.
func warmUp(t *testing.T, k *kratosdev.Kratos, template, cookie string) {
	t.Helper()
	if status := kratostest.Whoami(t, k, template, "Cookie", cookie).Status; status != http.StatusOK {
		t.Fatalf("whoami?tokenize_as=%s: status %d", template, status)
	}
}

// templateTTL is the ttl of a tokenizer template in a Kratos config.
func templateTTL(t *testing.T, templates map[string]any, name string) time.Duration {
	t.Helper()
	tpl, _ := templates[name].(map[string]any)
	s, _ := tpl["ttl"].(string)
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("template %s: ttl %q: %v", name, s, err)
	}
	return d
}

// fetchRemoteJWKS fetches the JWKS as jwt_authn's remote_jwks does, at its
// http_uri's path, from the server's HTTP listener at httpAddr.
func fetchRemoteJWKS(t *testing.T, s *envoySetup, httpAddr string) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	for name, p := range s.jwt.GetProviders() {
		u, err := url.Parse(p.GetRemoteJwks().GetHttpUri().GetUri())
		if err != nil {
			t.Fatalf("provider %s: %v", name, err)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+httpAddr+u.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("provider %s: remote_jwks: %v", name, err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("provider %s: GET %s: status %d, %v", name, u.Path, resp.StatusCode, err)
		}
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatalf("provider %s: remote_jwks answer: %v", name, err)
		}
	}
	return set
}

// checkSameKeys: got holds exactly the keys of want (by RFC 7638
// thumbprint, kid and alg), all of them public.
func checkSameKeys(t *testing.T, got, want jose.JSONWebKeySet) {
	t.Helper()
	id := func(k jose.JSONWebKey) string {
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x/%s/%s", tp, k.KeyID, k.Algorithm)
	}
	if len(got.Keys) != len(want.Keys) {
		t.Fatalf("%d keys served, want %d", len(got.Keys), len(want.Keys))
	}
	for i := range want.Keys {
		if !got.Keys[i].IsPublic() {
			t.Fatalf("served key %q is not public", got.Keys[i].KeyID)
		}
		if id(got.Keys[i]) != id(want.Keys[i]) {
			t.Errorf("served key %d is %s, want %s", i, id(got.Keys[i]), id(want.Keys[i]))
		}
	}
}

// verifyJWT checks token against the public keys and returns its claims.
func verifyJWT(t *testing.T, token string, pub jose.JSONWebKeySet) map[string]any {
	t.Helper()
	var c map[string]any
	kratostest.VerifyJWT(t, token, pub, &c)
	return c
}

// forgeJWT signs a plausible JWT (right issuer, right kid) with another key.
func forgeJWT(t *testing.T, pub jose.JSONWebKeySet, issuer string) string {
	t.Helper()
	priv, err := jwks.Generate(jwks.ES256, pub.Keys[0].KeyID)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(priv, &set); err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: set.Keys[0]}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: issuer, Subject: "mallory",
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
