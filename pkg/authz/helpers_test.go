package authz_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testclock"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// env is one server under test: a fake Ory, the authz server behind a real
// gRPC listener on 127.0.0.1, and a client.
type env struct {
	ory    *fakeory.Fake
	client authv3.AuthorizationClient
	logs   *logcapture.Buffer
	az     *authz.Server
	oc     *ory.Client
	// clock drives the server, the Ory client and the fake Ory, unless the
	// test brought a clock of its own (then it is nil).
	clock *testclock.Clock
}

func newEnv(t *testing.T, edit ...func(*authz.Options)) *env {
	t.Helper()
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	return newEnvWithOry(t, fake, edit...)
}

func newEnvWithOry(t *testing.T, fake *fakeory.Fake, edit ...func(*authz.Options)) *env {
	t.Helper()
	return newEnvFull(t, fake, nil, edit...)
}

// newEnvFull is newEnvWithOry with a chance to change the Ory client's options.
func newEnvFull(t *testing.T, fake *fakeory.Fake, oryEdit func(*ory.Options), edit ...func(*authz.Options)) *env {
	t.Helper()
	log, logs := logcapture.Logger(t, fake.Secrets)
	var clk *testclock.Clock
	if fake.Now == nil {
		clk = testclock.New(time.Now())
		fake.Now = clk.Now
	}
	oo := ory.Options{BaseURL: fake.URL, Timeout: 2 * time.Second, MaxJWTBytes: config.MaxCredentialBytes, Now: fake.Now}
	if oryEdit != nil {
		oryEdit(&oo)
	}
	oc, err := ory.New(oo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oc.Close)
	d := config.Default()
	opts := authz.Options{
		Tokenizer:       oc,
		Extractor:       credential.NewExtractor(d.SessionCookies, d.SessionTokenHeader, config.MaxCredentialBytes),
		DefaultTemplate: "mesh",
		OnMissing:       config.OnMissingDeny,
		LoginURL:        "https://login.example.org/ui/login",
		ExpiryLeeway:    d.ExpiryLeeway,
		NegativeTTL:     d.NegativeTTL,
		FetchTimeout:    2 * time.Second,
		CacheMaxBytes:   d.CacheMaxBytes,
		Now:             fake.Now,
		Logger:          log,
	}
	for _, e := range edit {
		e(&opts)
	}
	az, err := authz.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{ory: fake, client: serve(t, az, log), logs: logs, az: az, oc: oc, clock: clk}
}

// serve runs az behind server.Run on loopback and returns a client.
func serve(t *testing.T, az *authz.Server, log *slog.Logger) authv3.AuthorizationClient {
	t.Helper()
	t.Cleanup(az.Close) // after the server stopped
	addrs := servertest.Start(t, server.Options{Authz: az, Logger: log})
	return authv3.NewAuthorizationClient(servertest.Dial(t, addrs.GRPC))
}

// req builds a CheckRequest as Envoy sends it (headers map, lower-case keys).
func req(headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": "/app?x=1", ":authority": "app.example.org"}
	for k, v := range headers {
		h[k] = v
	}
	method := h[":method"]
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-1", Method: method, Path: h[":path"], Host: h[":authority"], Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: ext,
	}}
}

// rawReq is req in Envoy's encode_raw_headers form: header_map, no headers map.
func rawReq(headers [][2]string, ext map[string]string) *authv3.CheckRequest {
	r := req(nil, ext)
	var hm []*corev3.HeaderValue
	for _, kv := range headers {
		hm = append(hm, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	r.Attributes.Request.Http.Headers = nil
	r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: hm}
	return r
}

// claimsOf verifies a JWT against the fake's keys and returns its claims.
func claimsOf(t *testing.T, f *fakeory.Fake, raw string) map[string]any {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	keys := f.JWKS()
	if err := tok.Claims(keys, &c); err != nil {
		t.Fatalf("JWT does not verify: %v", err)
	}
	return c
}

func check(t *testing.T, e *env, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return e.client.Check(ctx, r)
}

func mustCheck(t *testing.T, e *env, r *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := check(t, e, r)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}
