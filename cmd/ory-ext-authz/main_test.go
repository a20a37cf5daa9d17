package main

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
)

func TestCommands(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{[]string{"version"}, 0, "ory-ext-authz dev", ""},
		{[]string{"--help"}, 0, "ory-ext-authz serve", ""},
		{[]string{"--help"}, 0, "ory-ext-authz routes check FILE", ""},
		{nil, 2, "", "Usage:"},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"serve", "--help"}, 0, "", "ORY_EXT_AUTHZ_ORY_URL"},
		{[]string{"serve"}, 1, "", "--ory-url: required"},
		{[]string{"serve", "--ory-url", "http://127.0.0.1:1", "--tokenize-as", "mesh", "--on-missing", "sometimes"}, 1, "", "on-missing"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), tt.args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Fatalf("run(%q) = %d\nstdout: %s\nstderr: %s", tt.args, code, out.String(), errOut.String())
			}
		})
	}
}

// served is one `serve` running in-process.
type served struct {
	grpcAddr, httpAddr, adminAddr string
	logs                          *logcapture.Buffer
	cancel                        context.CancelFunc
	exited                        chan struct{}
	code                          int // once exited is closed
}

// serveConfig is how startServeWith configures serve besides its flags.
type serveConfig struct {
	// oryURL is --ory-url, with --tokenize-as mesh; "" leaves both to env.
	oryURL string
	// env is the environment serve reads.
	env map[string]string
	// secrets, when set, returns what serve's log must not hold; it is
	// called when the test ends.
	secrets func() []string
}

// startServe runs `serve` in front of fake with args, as startServeWith.
func startServe(t *testing.T, fake *fakeory.Fake, args ...string) *served {
	t.Helper()
	return startServeWith(t, serveConfig{oryURL: fake.URL, secrets: fake.Secrets}, args...)
}

// startServeWith runs `serve` in-process on free loopback ports (admin
// included, unless args set --admin-addr) and waits until it is ready. It
// stops when the test ends and must then exit 0.
func startServeWith(t *testing.T, c serveConfig, args ...string) *served {
	t.Helper()
	s := &served{grpcAddr: servertest.FreeAddr(t), httpAddr: servertest.FreeAddr(t), logs: &logcapture.Buffer{}, exited: make(chan struct{})}
	full := []string{"serve", "--grpc-addr", s.grpcAddr, "--http-addr", s.httpAddr, "--log-level", "debug"}
	if c.oryURL != "" {
		full = append(full, "--ory-url", c.oryURL, "--tokenize-as", "mesh")
	}
	if !slices.Contains(args, "--admin-addr") {
		s.adminAddr = servertest.FreeAddr(t)
		full = append(full, "--admin-addr", s.adminAddr)
	}
	full = append(full, args...)
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(t.Context()))
	go func() {
		defer close(s.exited)
		s.code = run(ctx, full, func(k string) string { return c.env[k] }, strings.NewReader(""), s.logs, s.logs)
	}()
	t.Cleanup(func() {
		if code := s.stop(t); code != 0 {
			t.Errorf("serve exited %d; log:\n%s", code, s.logs.String())
		}
		if c.secrets != nil {
			logcapture.AssertNoSecrets(t, s.logs.String(), c.secrets())
		}
	})
	testwait.For(t, "readyz 200", func() bool {
		select {
		case <-s.exited:
			t.Fatalf("serve exited %d before it was ready; log:\n%s", s.code, s.logs.String())
		default:
		}
		return ready(s.httpAddr)
	})
	return s
}

// stop cancels serve's context, as SIGTERM does, and returns its exit code.
func (s *served) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	return s.wait(t)
}

// wait waits until serve exits and returns its exit code.
func (s *served) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.exited:
		return s.code
	case <-time.After(20 * time.Second):
		t.Error("serve did not stop")
		return -1
	}
}

// ready tells whether serve's /readyz at httpAddr answers 200.
func ready(httpAddr string) bool {
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestServeLifecycle runs `serve` in-process, configured through the
// environment, checks a request end to end, then stops it as SIGTERM would
// and watches health turn NOT_SERVING while checks are still answered.
func TestServeLifecycle(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	env := map[string]string{
		"ORY_EXT_AUTHZ_ORY_URL":        fake.URL,
		"ORY_EXT_AUTHZ_TOKENIZE_AS":    "mesh",
		"ORY_EXT_AUTHZ_SHUTDOWN_DELAY": "1s",
	}
	srv := startServeWith(t, serveConfig{env: env, secrets: fake.Secrets})
	conn := servertest.Dial(t, srv.grpcAddr)
	health := healthpb.NewHealthClient(conn)
	authz := authv3.NewAuthorizationClient(conn)
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q = %v %v, want SERVING", svc, resp, err)
		}
	}
	checkReq := cookieCheck(fake.NewSession())
	resp, err := authz.Check(t.Context(), checkReq)
	if err != nil || resp.GetStatus().GetCode() != 0 || len(resp.GetOkResponse().GetHeaders()) != 1 {
		t.Fatalf("Check = %v %v, want OK with the JWT", resp, err)
	}

	srv.cancel()
	testwait.For(t, "health NOT_SERVING", func() bool {
		r, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	// During the shutdown delay checks are still answered.
	if resp, err := authz.Check(t.Context(), checkReq); err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("Check while draining = %v %v, want OK", resp, err)
	}
	if code := srv.wait(t); code != 0 {
		t.Fatalf("serve exited %d, want 0; log:\n%s", code, srv.logs.String())
	}
}

// TestServeOryURLUserinfo: serve refuses an --ory-url with user info, from
// the flag or the environment, and nothing it prints (the error, the --help
// defaults) holds the user info. Loopback ports and a bounded context: were
// the URL accepted, serve would run (and log it) until the context ends.
func TestServeOryURLUserinfo(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	url := "http://admin:" + secret + "@127.0.0.1:1"
	listen := []string{"--grpc-addr", servertest.FreeAddr(t), "--http-addr", servertest.FreeAddr(t), "--admin-addr", ""}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string
	}{
		{"flag", append([]string{"serve", "--ory-url", url, "--tokenize-as", "mesh"}, listen...), nil, 1, "--ory-url: must not hold user info"},
		{"environment", append([]string{"serve", "--tokenize-as", "mesh"}, listen...), map[string]string{"ORY_EXT_AUTHZ_ORY_URL": url}, 1, "--ory-url: must not hold user info"},
		{"help with the environment set", []string{"serve", "--help"}, map[string]string{"ORY_EXT_AUTHZ_ORY_URL": url}, 0, "ORY_EXT_AUTHZ_ORY_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			code := run(ctx, tt.args, func(k string) string { return tt.env[k] }, strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("exit %d, want %d with %q\nstderr: %s", code, tt.wantCode, tt.wantErr, errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), secret) {
				t.Errorf("the output holds the password:\n%s%s", out.String(), errOut.String())
			}
		})
	}
}

// TestServePassClientAuthorization runs `serve` in allow mode with and
// without the opt-out, configured the way an operator would (flag or
// environment), and checks what an answer without a session does to the
// client's Authorization: removed by default, left alone with the opt-out.
func TestServePassClientAuthorization(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		wantRemoved bool
	}{
		{"default removes it", nil, nil, true},
		{"flag keeps it", []string{"--pass-client-authorization"}, nil, false},
		{"env keeps it", nil, map[string]string{"ORY_EXT_AUTHZ_PASS_CLIENT_AUTHORIZATION": "true"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServeWith(t, serveConfig{oryURL: fake.URL, env: tt.env, secrets: fake.Secrets},
				append([]string{"--on-missing", "allow", "--admin-addr", ""}, tt.args...)...)
			resp, err := authv3.NewAuthorizationClient(servertest.Dial(t, srv.grpcAddr)).Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: map[string]string{"authorization": "Bearer client-api-key"}},
			}}})
			if err != nil || resp.GetStatus().GetCode() != 0 || len(resp.GetOkResponse().GetHeaders()) != 0 {
				t.Fatalf("Check = %v %v, want OK without a JWT", resp, err)
			}
			removed := slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization")
			if removed != tt.wantRemoved {
				t.Errorf("authorization removed = %v, want %v", removed, tt.wantRemoved)
			}
		})
	}
}

// TestServeMetrics: serve's /metrics carries the panic counter of both gRPC
// servers from the start (pkg/server recovers the panics, serve hands it the
// metrics that count them).
func TestServeMetrics(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	s := startServe(t, fake)
	body := scrape(t, s.httpAddr)
	for _, series := range []string{`ory_ext_authz_grpc_panics_total{server="ext_authz"} 0`, `ory_ext_authz_grpc_panics_total{server="admin"} 0`} {
		if !strings.Contains(body, series+"\n") {
			t.Errorf("/metrics has no %s", series)
		}
	}
}

// scrape is the text of serve's /metrics at httpAddr.
func scrape(t *testing.T, httpAddr string) string {
	t.Helper()
	_, b := servertest.Do(t, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	return string(b)
}

// TestToolConvention: check, admin, jwks and routes follow internal/cli's
// convention: -h prints the usage to stdout and exits 0; an unknown flag is
// exit 2 with the command's name, the problem and a hint on stderr.
func TestToolConvention(t *testing.T) {
	for _, cmd := range [][]string{{"check"}, {"admin"}, {"admin", "invalidate"}, {"admin", "stats"}, {"jwks"}, {"jwks", "generate"}, {"jwks", "public"}, {"routes"}, {"routes", "check"}} {
		name := "ory-ext-authz " + strings.Join(cmd, " ")
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			for _, help := range []string{"-h", "--help"} {
				code, out, errOut := runCLI(t, append(slices.Clone(cmd), help)...)
				if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
					t.Errorf("%s %s = %d\nstdout: %s\nstderr: %s", name, help, code, out, errOut)
				}
			}
			code, out, errOut := runCLI(t, append(slices.Clone(cmd), "--bogus")...)
			if code != 2 || out != "" || !strings.HasPrefix(errOut, name+": ") || !strings.Contains(errOut, "-bogus") ||
				!strings.Contains(errOut, "Run '"+name+" --help' for usage.") {
				t.Errorf("%s --bogus = %d, want 2\nstdout: %s\nstderr: %s", name, code, out, errOut)
			}
		})
	}
}

// serveRefusedArgs is a serve command line on free loopback ports against
// an Ory nothing listens on: for the tests of what serve refuses to start.
func serveRefusedArgs(t *testing.T) []string {
	t.Helper()
	return []string{"serve", "--ory-url", "http://127.0.0.1:1", "--tokenize-as", "mesh", "--grpc-addr", servertest.FreeAddr(t), "--http-addr", servertest.FreeAddr(t), "--admin-addr", ""}
}

// serveRefused runs serve with args and env and wants it to refuse to
// start: exit 1, stderr holding every wantErr. It returns what serve
// printed. Bounded: were the configuration accepted, serve would run until
// the context ends.
func serveRefused(t *testing.T, args []string, env map[string]string, wantErr ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstderr: %s", code, errOut.String())
	}
	for _, want := range wantErr {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
	return out.String(), errOut.String()
}
