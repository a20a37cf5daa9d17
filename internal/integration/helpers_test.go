package integration_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/checktest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// password of every test identity. Not a secret of the product: the log
// checks cover what ory-ext-authz handles (cookies, tokens, JWTs).
const password = "integration-test-password-7"

// callTimeout bounds one Check and one whoami call: generous for -race on a
// busy machine, short enough that a hang fails the test instead of timing
// out the binary.
const callTimeout = 10 * time.Second

// stack is ory-ext-authz wired as `serve` wires it, in front of one real
// Kratos: the pkg/ory client, pkg/authz and pkg/server listening on
// 127.0.0.1, and a gRPC client. Unless direct, the Ory client goes through a
// reverse proxy that records every whoami call.
type stack struct {
	kratos  *kratosdev.Kratos
	proxy   *whoamiProxy // nil when direct
	client  authv3.AuthorizationClient
	logs    *logcapture.Buffer
	secrets *secrets
	keys    jose.JSONWebKeySet
	leeway  time.Duration
}

type stackOptions struct {
	// template is the default tokenizer template; "" is kratosdev.MeshTemplate.
	template string
	// leeway is --expiry-leeway; 0 is config.DefaultExpiryLeeway.
	leeway time.Duration
	// direct points the Ory client at Kratos itself, without the proxy, so
	// that a stopped Kratos is a refused connection, as in production.
	direct bool
	// routes is the route table (--routes); nil: none.
	routes *routes.Table
}

func newStack(t *testing.T, k *kratosdev.Kratos, o stackOptions) *stack {
	t.Helper()
	s, az, _, log := wire(t, k, o)
	s.client = serve(t, az, log)
	return s
}

// wire builds the parts of a stack, not yet serving: the stack (without its
// client), the Check server, the Ory client and the log whose secrets are
// checked when the test ends.
func wire(t *testing.T, k *kratosdev.Kratos, o stackOptions) (*stack, *authz.Server, *ory.Client, *slog.Logger) {
	t.Helper()
	if o.template == "" {
		o.template = kratosdev.MeshTemplate
	}
	if o.leeway == 0 {
		o.leeway = config.DefaultExpiryLeeway
	}
	s := &stack{kratos: k, secrets: &secrets{}, leeway: o.leeway}
	s.keys = kratostest.PublicKeys(t, k.JWKS())

	oryURL := k.PublicURL()
	if !o.direct {
		s.proxy = newWhoamiProxy(t, k.PublicURL())
		oryURL = s.proxy.URL()
	}
	// Its secret check is registered before the server's cleanup, so it runs
	// after the server has shut down and logged all it will log.
	log, logs := logcapture.Logger(t, s.secrets.all)
	s.logs = logs
	oc, err := ory.New(ory.Options{
		BaseURL:     oryURL,
		Timeout:     callTimeout,
		MaxJWTBytes: config.MaxCredentialBytes,
		UserAgent:   "ory-ext-authz/integration-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.TokenizeAs, cfg.ExpiryLeeway, cfg.WhoamiTimeout = o.template, o.leeway, callTimeout
	// Browsers reach Kratos itself: the step-up URL of require_aal.
	cfg.OryURL = k.PublicURL()
	opts := cfg.AuthzOptions(oc)
	opts.Logger = log
	if o.routes != nil {
		opts.Routes = staticRoutes{o.routes}
	}
	az, err := authz.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, az, oc, log
}

// serve runs az behind server.Run on loopback and returns a client; the
// server stops when the test ends.
func serve(t *testing.T, az *authz.Server, log *slog.Logger) authv3.AuthorizationClient {
	t.Helper()
	t.Cleanup(az.Close) // after the server stopped
	addrs := servertest.Start(t, server.Options{Authz: az, Logger: log})
	return authv3.NewAuthorizationClient(servertest.Dial(t, addrs.GRPC))
}

// user is an identity in Kratos.
type user struct {
	id, email string
}

func newUser(t testing.TB, k *kratosdev.Kratos, name string) user {
	t.Helper()
	email := name + "@example.org"
	id, err := k.CreateIdentity(t.Context(), email, password)
	if err != nil {
		t.Fatal(err)
	}
	return user{id: id, email: email}
}

// browserLogin logs u in through the browser flow and returns the
// "ory_kratos_session=..." pair and the session id.
func (s *stack) browserLogin(t *testing.T, u user) (cookie, sid string) {
	t.Helper()
	cookie, sid, err := s.kratos.BrowserLoginSession(t.Context(), u.email, password)
	if err != nil {
		t.Fatal(err)
	}
	s.secrets.addCookie(cookie)
	return cookie, sid
}

// apiLogin logs u in through the native flow: a session token and its session id.
func (s *stack) apiLogin(t *testing.T, u user) (token, sid string) {
	t.Helper()
	token, sid, err := s.kratos.APILogin(t.Context(), u.email, password)
	if err != nil {
		t.Fatal(err)
	}
	s.secrets.add(token)
	return token, sid
}

// check sends one CheckRequest shaped as Envoy sends it.
func (s *stack) check(t *testing.T, headers, ext map[string]string) (*authv3.CheckResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	return s.client.Check(ctx, checkRequest(headers, ext))
}

// allow checks and requires an OK answer; it returns the JWT of the
// authorization mutation.
func (s *stack) allow(t *testing.T, headers, ext map[string]string) (string, *authv3.CheckResponse) {
	t.Helper()
	resp, err := s.check(t, headers, ext)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	raw := checktest.BearerJWT(t, resp)
	s.secrets.add(raw)
	return raw, resp
}

// checkRequest builds a CheckRequest as Envoy sends it: lower-case keys in
// the headers map, pseudo-headers included, the path with its query.
func checkRequest(headers, ext map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": "/app?x=1", ":authority": "app.example.org", ":scheme": "https", "accept": "application/json"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "integration", Method: h[":method"], Path: h[":path"], Host: h[":authority"], Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: ext,
	}}
}

// verify checks the JWT's signature against the public JWKS of the
// template's key (ES256, kratosdev's) and returns its claims.
func (s *stack) verify(t *testing.T, raw string) kratostest.Claims {
	t.Helper()
	var c kratostest.Claims
	h := kratostest.VerifyJWT(t, raw, s.keys, &c)
	if h.Algorithm != string(jose.ES256) {
		t.Errorf("JWT alg %q, want ES256", h.Algorithm)
	}
	if len(s.keys.Key(h.KeyID)) != 1 {
		t.Errorf("JWT kid %q is not in the template's JWKS", h.KeyID)
	}
	return c
}

// hardExpiry is when the cache must stop serving raw: exp - leeway.
func (s *stack) hardExpiry(t *testing.T, raw string) time.Time {
	t.Helper()
	return time.Unix(s.verify(t, raw).Exp, 0).Add(-s.leeway)
}

func metadata(resp *authv3.CheckResponse) map[string]any {
	return resp.GetDynamicMetadata().AsMap()
}

// denied requires a denial with the CheckResponse status and HTTP status given.
func denied(t *testing.T, resp *authv3.CheckResponse, err error, code codes.Code, httpStatus int) {
	t.Helper()
	if err != nil {
		t.Fatalf("Check: %v, want a denial", err)
	}
	if c := codes.Code(resp.GetStatus().GetCode()); c != code {
		t.Fatalf("status = %v, want %v", c, code)
	}
	d := resp.GetDeniedResponse()
	if d == nil || int(d.GetStatus().GetCode()) != httpStatus {
		t.Fatalf("denied_response = %v, want HTTP %d", d, httpStatus)
	}
}

// waitUntil blocks until the wall clock reaches at. It is not there to
// synchronise with a server: what is under test is defined by the clock
// itself (a JWT's exp, which Kratos sets from the same clock), so the test
// has to let that time pass.
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatal("test ended while waiting for the clock")
	}
}

// secrets collects the credentials and JWTs a test saw, for the log check
// that logcapture.Logger runs when the test ends.
type secrets struct {
	mu   sync.Mutex
	list []string
}

func (s *secrets) add(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, v...)
}

// addCookie adds a "name=value" pair (or a Set-Cookie value) and its value.
func (s *secrets) addCookie(pair string) {
	first, _, _ := strings.Cut(pair, ";")
	_, value, _ := strings.Cut(first, "=")
	s.add(first, value)
}

func (s *secrets) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.list...)
}

// whoamiProxy is a reverse proxy on 127.0.0.1 in front of Kratos' public
// API that records every whoami call, to count how often ory-ext-authz
// really asks Kratos and to see what it sends.
type whoamiProxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []whoamiCall
}

type whoamiCall struct {
	template string
	header   http.Header
}

func newWhoamiProxy(t *testing.T, target string) *whoamiProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &whoamiProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) },
		// Loopback only, no proxy from the environment.
		Transport: &http.Transport{MaxIdleConnsPerHost: 16},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sessions/whoami" {
			p.mu.Lock()
			p.calls = append(p.calls, whoamiCall{template: r.URL.Query().Get("tokenize_as"), header: r.Header.Clone()})
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// URL is the proxy's base URL, for the Ory client.
func (p *whoamiProxy) URL() string { return p.srv.URL + "/" }

// Calls returns the whoami calls so far.
func (p *whoamiProxy) Calls() []whoamiCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]whoamiCall(nil), p.calls...)
}

// CallsWith counts the whoami calls that presented this credential.
func (p *whoamiProxy) CallsWith(header, value string) int {
	n := 0
	for _, c := range p.Calls() {
		if c.header.Get(header) == value {
			n++
		}
	}
	return n
}

func (c whoamiCall) String() string {
	var names []string
	for k := range c.header {
		names = append(names, k)
	}
	return fmt.Sprintf("tokenize_as=%s headers %v", c.template, names)
}
