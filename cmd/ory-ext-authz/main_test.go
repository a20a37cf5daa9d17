package main

import (
	"bytes"
	"context"
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

	"github.com/ory-ext-authz/ory-ext-authz/pkg/orytest"
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
	fake := orytest.New()
	defer fake.Close()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"ORY_EXT_AUTHZ_ORY_URL":        fake.URL,
		"ORY_EXT_AUTHZ_TOKENIZE_AS":    "mesh",
		"ORY_EXT_AUTHZ_SHUTDOWN_DELAY": "1s",
	}
	ctx, stop := context.WithCancel(t.Context())
	var logs orytest.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--admin-addr", freeAddr(t), "--log-level", "debug"},
			func(k string) string { return env[k] }, strings.NewReader(""), &logs, &logs)
	}()
	defer func() { orytest.AssertNoSecrets(t, logs.String(), fake.Secrets()) }()

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

// TestServePassClientAuthorization runs `serve` in allow mode with and
// without the opt-out, configured the way an operator would (flag or
// environment), and checks what an answer without a session does to the
// client's Authorization: removed by default, left alone with the opt-out.
func TestServePassClientAuthorization(t *testing.T) {
	fake := orytest.New()
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
			var logs orytest.LogBuffer
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
