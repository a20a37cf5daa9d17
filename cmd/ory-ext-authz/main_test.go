package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
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

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeLifecycle runs `serve` in-process, configured through the
// environment, checks a request end to end, then stops it as SIGTERM would
// and watches health turn NOT_SERVING while checks are still answered.
func TestServeLifecycle(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"ORY_EXT_AUTHZ_ORY_URL":        fake.URL,
		"ORY_EXT_AUTHZ_TOKENIZE_AS":    "mesh",
		"ORY_EXT_AUTHZ_SHUTDOWN_DELAY": "1s",
	}
	ctx, stop := context.WithCancel(t.Context())
	var logs logcapture.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--admin-addr", freeAddr(t), "--log-level", "debug"},
			func(k string) string { return env[k] }, strings.NewReader(""), &logs, &logs)
	}()
	defer func() { logcapture.AssertNoSecrets(t, logs.String(), fake.Secrets()) }()

	waitReady(t, httpAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	authz := authv3.NewAuthorizationClient(conn)
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q = %v %v, want SERVING", svc, resp, err)
		}
	}
	s := fake.NewSession()
	checkReq := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: map[string]string{"cookie": s.CookiePair()}},
	}}}
	resp, err := authz.Check(t.Context(), checkReq)
	if err != nil || resp.GetStatus().GetCode() != 0 || len(resp.GetOkResponse().GetHeaders()) != 1 {
		t.Fatalf("Check = %v %v, want OK with the JWT", resp, err)
	}

	stop()
	waitFor(t, "health NOT_SERVING", func() bool {
		r, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	// During the shutdown delay checks are still answered.
	if resp, err := authz.Check(t.Context(), checkReq); err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("Check while draining = %v %v, want OK", resp, err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d, want 0; log:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// waitReady waits until serve's /readyz at httpAddr answers 200.
func waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	waitFor(t, "readyz 200", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeOryURLUserinfo: serve refuses an --ory-url with user info, from
// the flag or the environment, and nothing it prints (the error, the --help
// defaults) holds the user info. Loopback ports and a bounded context: were
// the URL accepted, serve would run (and log it) until the context ends.
func TestServeOryURLUserinfo(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	url := "http://admin:" + secret + "@127.0.0.1:1"
	listen := []string{"--grpc-addr", freeAddr(t), "--http-addr", freeAddr(t), "--admin-addr", ""}
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
			grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
			ctx, stop := context.WithCancel(t.Context())
			var logs logcapture.Buffer
			var code int
			exited := make(chan struct{})
			args := append([]string{"serve", "--ory-url", fake.URL, "--tokenize-as", "mesh", "--on-missing", "allow",
				"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--admin-addr", ""}, tt.args...)
			go func() {
				defer close(exited)
				code = run(ctx, args, func(k string) string { return tt.env[k] }, strings.NewReader(""), &logs, &logs)
			}()
			defer func() {
				stop()
				<-exited
				if code != 0 && !t.Failed() {
					t.Errorf("serve exited %d; log:\n%s", code, logs.String())
				}
			}()
			waitFor(t, "readyz 200", func() bool {
				select {
				case <-exited:
					t.Fatalf("serve exited %d before it was ready; log:\n%s", code, logs.String())
				default:
				}
				resp, err := http.Get("http://" + httpAddr + "/readyz")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			resp, err := authv3.NewAuthorizationClient(conn).Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
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
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, series := range []string{`ory_ext_authz_grpc_panics_total{server="ext_authz"} 0`, `ory_ext_authz_grpc_panics_total{server="admin"} 0`} {
		if !strings.Contains(string(body), series+"\n") {
			t.Errorf("/metrics has no %s", series)
		}
	}
}

// TestToolConvention: check, admin and jwks follow internal/cli's
// convention: -h prints the usage to stdout and exits 0; an unknown flag is
// exit 2 with the command's name, the problem and a hint on stderr.
func TestToolConvention(t *testing.T) {
	for _, cmd := range [][]string{{"check"}, {"admin"}, {"admin", "invalidate"}, {"admin", "stats"}, {"jwks"}, {"jwks", "generate"}, {"jwks", "public"}} {
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
