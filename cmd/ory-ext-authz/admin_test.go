package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"

	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

const (
	adminService = "ory_ext_authz.admin.v1.Admin"
	authzService = "envoy.service.auth.v3.Authorization"
)

// listServices asks the server reflection service at conn for its services.
func listServices(t *testing.T, conn *grpc.ClientConn) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

func cookieCheck(s *fakeory.Session) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: map[string]string{"cookie": s.CookiePair()}},
	}}}
}

// checkCached sends a Check of s and tells whether it was answered OK from
// the cache.
func checkCached(t *testing.T, client authv3.AuthorizationClient, s *fakeory.Session) bool {
	t.Helper()
	resp, err := client.Check(t.Context(), cookieCheck(s))
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("Check = %v %v, want OK", resp, err)
	}
	return resp.GetDynamicMetadata().AsMap()["cached"] == true
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestAdminNotOnExtAuthzListener: `serve` serves the admin API on
// --admin-addr only. On --grpc-addr, the listener Envoy talks to, every
// admin method is Unimplemented and reflection does not list the service;
// on --admin-addr reflection lists it (and not ext_authz), and the admin
// commands work end to end.
func TestAdminNotOnExtAuthzListener(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	srv := startServe(t, fake)
	extAuthz, adminConn := servertest.Dial(t, srv.grpcAddr), servertest.Dial(t, srv.adminAddr)

	onGRPC := adminv1.NewAdminClient(extAuthz)
	calls := map[string]func() error{
		"Stats": func() error { _, err := onGRPC.Stats(t.Context(), &adminv1.StatsRequest{}); return err },
		"Purge": func() error { _, err := onGRPC.Purge(t.Context(), &adminv1.PurgeRequest{}); return err },
		"InvalidateSession": func() error {
			_, err := onGRPC.InvalidateSession(t.Context(), &adminv1.InvalidateSessionRequest{SessionId: "x"})
			return err
		},
		"InvalidateIdentity": func() error {
			_, err := onGRPC.InvalidateIdentity(t.Context(), &adminv1.InvalidateIdentityRequest{IdentityId: "x"})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); status.Code(err) != codes.Unimplemented {
			t.Errorf("%s on --grpc-addr: %v, want Unimplemented", name, err)
		}
	}
	if got := listServices(t, extAuthz); slices.Contains(got, adminService) || !slices.Contains(got, authzService) {
		t.Errorf("reflection on --grpc-addr lists %v: want %s and not %s", got, authzService, adminService)
	}
	if got := listServices(t, adminConn); !slices.Contains(got, adminService) || slices.Contains(got, authzService) {
		t.Errorf("reflection on --admin-addr lists %v: want %s and not %s", got, adminService, authzService)
	}

	// End to end through the binary's own commands.
	client := authv3.NewAuthorizationClient(extAuthz)
	s := fake.NewSession()
	if checkCached(t, client, s) || !checkCached(t, client, s) {
		t.Fatal("want a fetch, then a cache hit")
	}
	if code, out, errOut := runCLI(t, "admin", "invalidate", "--session", s.ID, "--admin-addr", srv.adminAddr); code != 0 || !strings.Contains(out, "invalidated session "+s.ID) {
		t.Fatalf("admin invalidate = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if checkCached(t, client, s) {
		t.Error("after admin invalidate the session was still served from the cache")
	}
	code, out, errOut := runCLI(t, "admin", "stats", "--admin-addr", srv.adminAddr)
	if code != 0 || !strings.Contains(out, "cache entries") || !strings.Contains(out, "ory calls") {
		t.Fatalf("admin stats = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "admin", "stats", "--admin-addr", srv.grpcAddr); code != 1 || !strings.Contains(errOut, "does not serve the admin API") {
		t.Errorf("admin stats on --grpc-addr = %d, stderr: %s; want 1", code, errOut)
	}
	if code, out, _ := runCLI(t, "--help"); code != 0 || !strings.Contains(out, "ory-ext-authz admin invalidate|stats") {
		t.Errorf("--help does not list the admin command:\n%s", out)
	}
	if !strings.Contains(srv.logs.String(), `"admin_addr":"`+srv.adminAddr+`"`) {
		t.Errorf("the serving log does not name the admin address:\n%s", srv.logs.String())
	}
}

// TestAdminServeFlags: --admin-addr "" disables the admin API; the admin
// TLS flags give an mTLS listener that refuses a client without a
// certificate; a bad admin setting stops serve with an error naming it.
func TestAdminServeFlags(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()

	t.Run("disabled", func(t *testing.T) {
		srv := startServe(t, fake, "--admin-addr", "")
		if !strings.Contains(srv.logs.String(), `"admin_addr":""`) {
			t.Errorf("want an empty admin_addr in the serving log:\n%s", srv.logs.String())
		}
	})

	t.Run("mTLS", func(t *testing.T) {
		dir := t.TempDir()
		root, clients := testpki.NewCA(t, "root"), testpki.NewCA(t, "clients")
		file := func(name string, data []byte) string { return testpki.WriteFile(t, dir, name, data) }
		sc, sk := root.Issue(t, "ory-ext-authz", false)
		cc, ck := clients.Issue(t, "operator", true)
		srv := startServe(t, fake, "--admin-tls-cert", file("tls.crt", sc), "--admin-tls-key", file("tls.key", sk),
			"--admin-tls-client-ca", file("clients.crt", clients.PEM))
		caFile := file("ca.crt", root.PEM)
		client := authv3.NewAuthorizationClient(servertest.Dial(t, srv.grpcAddr))
		s := fake.NewSession()
		checkCached(t, client, s)

		base := []string{"admin", "invalidate", "--session", s.ID, "--admin-addr", srv.adminAddr, "--timeout", "5s"}
		for name, flags := range map[string][]string{"plaintext": nil, "no client certificate": {"--tls-ca", caFile}} {
			if code, _, errOut := runCLI(t, append(base, flags...)...); code != 2 || !strings.Contains(errOut, "cannot reach the admin API") {
				t.Errorf("%s: exit %d, stderr: %s; want 2", name, code, errOut)
			}
		}
		if !checkCached(t, client, s) {
			t.Fatal("a refused client invalidated the session")
		}
		withCert := append(slices.Clone(base), "--tls-ca", caFile, "--tls-cert", file("client.crt", cc), "--tls-key", file("client.key", ck))
		if code, _, errOut := runCLI(t, withCert...); code != 0 {
			t.Fatalf("with a client certificate: exit %d, stderr: %s", code, errOut)
		}
		if checkCached(t, client, s) {
			t.Error("after the mTLS invalidation the session was still served from the cache")
		}
		// The ext_authz listener is not affected by the admin TLS flags.
		if _, err := adminv1.NewAdminClient(servertest.Dial(t, srv.grpcAddr)).Stats(t.Context(), &adminv1.StatsRequest{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("Stats on --grpc-addr: %v, want Unimplemented", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		busy, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		missing := filepath.Join(t.TempDir(), "missing.PEM")
		grpcAddr := servertest.FreeAddr(t)
		for name, tt := range map[string]struct {
			args []string
			want string
		}{
			"admin address in use": {[]string{"--admin-addr", busy.Addr().String()}, "--admin-addr: listen tcp " + busy.Addr().String()},
			"same as --grpc-addr":  {[]string{"--grpc-addr", grpcAddr, "--admin-addr", grpcAddr}, "must differ from --grpc-addr"},
			"unreadable cert": {[]string{"--admin-addr", servertest.FreeAddr(t), "--admin-tls-cert", missing, "--admin-tls-key", missing},
				"admin listener (--admin-tls-cert, --admin-tls-key, --admin-tls-client-ca)"},
		} {
			t.Run(name, func(t *testing.T) {
				args := append([]string{"serve", "--ory-url", fake.URL, "--tokenize-as", "mesh", "--http-addr", servertest.FreeAddr(t)}, tt.args...)
				if !slices.Contains(args, "--grpc-addr") {
					args = append(args, "--grpc-addr", servertest.FreeAddr(t))
				}
				code, _, errOut := runCLI(t, args...)
				if code != 1 || !strings.Contains(errOut, tt.want) {
					t.Errorf("exit %d, stderr: %s; want 1 and %q", code, errOut, tt.want)
				}
			})
		}
	})
}

// TestIsLoopback: serve warns about an admin listener without mTLS beyond
// loopback (tests bind loopback only, so the check is tested on addresses).
func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9003": true, "[::1]:9003": true, "0.0.0.0:9003": false, "[::]:9003": false, "10.0.0.7:9003": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %v, want %v", addr, got, want)
		}
	}
}
