package admin_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"

	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testclock"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// env is ory-ext-authz as serve wires it, in front of a fake Ory: an
// authz.Server behind server.Run on 127.0.0.1 with the admin API on its own
// listener, and a client for each.
type env struct {
	ory       *fakeory.Fake
	clock     *testclock.Clock
	az        *authz.Server
	authz     authv3.AuthorizationClient
	admin     adminv1.AdminClient
	grpcAddr  string
	adminAddr string
	logs      *logcapture.Buffer
}

type envOptions struct {
	// adminOpts are the admin gRPC server's options (TLS).
	adminOpts []grpc.ServerOption
	// noAdminClient: the admin listener needs credentials the test brings.
	noAdminClient bool
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	clk := testclock.New(time.Now())
	fake.Now = clk.Now
	log, logs := logcapture.Logger(t, fake.Secrets)
	oc, err := ory.New(ory.Options{BaseURL: fake.URL, Timeout: 2 * time.Second, MaxJWTBytes: config.MaxCredentialBytes, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oc.Close)
	cfg := config.Default()
	cfg.TokenizeAs, cfg.WhoamiTimeout = "mesh", 2*time.Second
	opts := cfg.AuthzOptions(oc)
	opts.Now, opts.Logger = clk.Now, log
	az, err := authz.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	api, err := admin.New(admin.Options{Cache: az, Ory: oc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close) // after the server stopped
	addrs := servertest.Start(t, server.Options{
		Authz: az, Logger: log,
		RegisterAdmin: func(gs *grpc.Server) { api.Register(gs) }, AdminGRPCOptions: o.adminOpts,
	})
	e := &env{ory: fake, clock: clk, az: az, grpcAddr: addrs.GRPC, adminAddr: addrs.Admin, logs: logs}
	e.authz = authv3.NewAuthorizationClient(servertest.Dial(t, e.grpcAddr))
	if !o.noAdminClient {
		e.admin = adminv1.NewAdminClient(servertest.Dial(t, e.adminAddr))
	}
	return e
}

// cred is one way a client presents a session, under one template.
type cred struct {
	name     string
	headers  map[string]string
	template string // "" is the default, mesh
}

// creds are the four (kind, template) pairs of s: cookie and session token,
// each under mesh and other.
func creds(s *fakeory.Session) []cred {
	return []cred{
		{"cookie/mesh", map[string]string{"cookie": s.CookiePair()}, ""},
		{"cookie/other", map[string]string{"cookie": s.CookiePair()}, "other"},
		{"token/mesh", map[string]string{"x-session-token": s.Token}, ""},
		{"token/other", map[string]string{"x-session-token": s.Token}, "other"},
	}
}

func checkRequest(c cred) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": "/", ":authority": "app.example.org"}
	for k, v := range c.headers {
		h[k] = v
	}
	var ext map[string]string
	if c.template != "" {
		ext = map[string]string{authz.ContextTokenizeAs: c.template}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/", Host: "app.example.org", Scheme: "https", Headers: h,
		}},
		ContextExtensions: ext,
	}}
}

// outcome of one Check: allowed from the cache, allowed after asking Ory,
// or denied 401.
type outcome string

const (
	cached  outcome = "cached"
	fetched outcome = "fetched"
	denied  outcome = "denied"
)

// check sends c and tells what happened, and how many whoami calls it cost.
func (e *env) check(t *testing.T, c cred) (outcome, int64) {
	t.Helper()
	before := e.ory.Calls()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := e.authz.Check(ctx, checkRequest(c))
	if err != nil {
		t.Fatalf("%s: Check: %v", c.name, err)
	}
	calls := e.ory.Calls() - before
	switch code := codes.Code(resp.GetStatus().GetCode()); code {
	case codes.OK:
		if resp.GetDynamicMetadata().AsMap()["cached"] == true {
			return cached, calls
		}
		return fetched, calls
	case codes.Unauthenticated:
		if s := resp.GetDeniedResponse().GetStatus().GetCode(); s != 401 {
			t.Fatalf("%s: Unauthenticated with HTTP %d, want 401", c.name, s)
		}
		return denied, calls
	default:
		t.Fatalf("%s: status %v %s", c.name, code, resp.GetStatus().GetMessage())
		return "", 0
	}
}

// expect checks every cred and requires want for each, with one whoami call
// per fetch or denial (never one for a cache hit).
func (e *env) expect(t *testing.T, want outcome, cs ...cred) {
	t.Helper()
	for _, c := range cs {
		got, calls := e.check(t, c)
		if got != want {
			t.Errorf("%s: %s, want %s", c.name, got, want)
		}
		if wantCalls := map[outcome]int64{cached: 0, fetched: 1, denied: 1}[want]; got == want && calls != wantCalls {
			t.Errorf("%s: %s with %d whoami calls, want %d", c.name, got, calls, wantCalls)
		}
	}
}

// step lets time move on after an admin call, as it does between the call
// and the next request: the injected clock otherwise stands still, and a
// fetch in the very nanosecond of an invalidation counts as before it.
func (e *env) step() { e.clock.Advance(time.Millisecond) }

// newSessionOf adds a session of identity iid to the fake Ory.
func newSessionOf(f *fakeory.Fake, iid string) *fakeory.Session {
	return f.AddSession(fakeory.Session{IdentityID: iid, Cookie: "MTc" + randHex(48), Token: "ory_st_" + randHex(16)})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// certs are PEM files for an mTLS admin listener: a server certificate for
// 127.0.0.1/localhost, the CA that signed it, and a client certificate (CN
// "operator") signed by the client CA the server trusts.
type certs struct {
	serverCert, serverKey, clientCA string
	serverCA                        string
	clientCert, clientKey           string
	// otherCert/otherKey: a client certificate of a CA the server does not trust.
	otherCert, otherKey string
}

func newCerts(t *testing.T) certs {
	t.Helper()
	dir := t.TempDir()
	root, clients, other := testpki.NewCA(t, "root"), testpki.NewCA(t, "clients"), testpki.NewCA(t, "other")
	write := func(name string, data []byte) string { return testpki.WriteFile(t, dir, name, data) }
	sc, sk := root.Issue(t, "ory-ext-authz", false)
	cc, ck := clients.Issue(t, "operator", true)
	oc, ok := other.Issue(t, "intruder", true)
	return certs{
		serverCert: write("tls.crt", sc), serverKey: write("tls.key", sk), clientCA: write("client-ca.crt", clients.PEM),
		serverCA:   write("ca.crt", root.PEM),
		clientCert: write("client.crt", cc), clientKey: write("client.key", ck),
		otherCert: write("other.crt", oc), otherKey: write("other.key", ok),
	}
}
