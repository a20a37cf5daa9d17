package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
)

func routesCheck(t *testing.T, client authv3.AuthorizationClient, path string) *authv3.CheckResponse {
	t.Helper()
	resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "app.example.org", Path: path, Headers: map[string]string{":path": path},
		}},
	}})
	if err != nil {
		t.Fatalf("Check %s: %v", path, err)
	}
	return resp
}

// TestServeRoutes: serve --routes enforces the table (an open /public/,
// the --on-missing deny default elsewhere, ambiguous paths 400); a
// reloaded file the server cannot serve (redirect without --login-url) is
// refused, counted, and the previous table stays.
func TestServeRoutes(t *testing.T) {
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	file := filepath.Join(t.TempDir(), "routes.yaml")
	replaceFile(t, file, []byte("rules:\n  - {name: public, match: {path: {prefix: /public/}}, on_missing: allow}\n"))
	srv := startServe(t, fake, "--routes", file)
	client := authv3.NewAuthorizationClient(servertest.Dial(t, srv.grpcAddr))
	codeOf := func(path string) (codes.Code, int) {
		resp := routesCheck(t, client, path)
		return codes.Code(resp.GetStatus().GetCode()), int(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	for _, tt := range []struct {
		path string
		code codes.Code
		http int
	}{
		{"/public/x", codes.OK, 0},
		{"/admin", codes.Unauthenticated, 401},
		{"/public/../admin", codes.InvalidArgument, 400},
	} {
		if c, h := codeOf(tt.path); c != tt.code || h != tt.http {
			t.Errorf("%s: %v %d, want %v %d", tt.path, c, h, tt.code, tt.http)
		}
	}
	replaceFile(t, file, []byte("rules:\n  - {name: public, match: {path: {prefix: /public/}}, on_missing: redirect}\n"))
	testwait.For(t, "the reload refused", func() bool {
		return servertest.Metrics(t, srv.httpAddr).Value(t, "ory_ext_authz_routes_reloads_total", map[string]string{"result": "error"}) == 1
	})
	if !strings.Contains(srv.logs.String(), "on_missing: redirect needs --login-url") {
		t.Errorf("the refused reload is not logged with its reason:\n%s", srv.logs)
	}
	if c, _ := codeOf("/public/x"); c != codes.OK {
		t.Errorf("/public/x after a refused reload: %v, want OK (the previous table)", c)
	}
	if n := fake.Calls(); n != 0 {
		t.Errorf("Ory called %d times", n)
	}
}

// TestServeRoutesRefused: serve does not start on a routes file that does
// not load (its line:col named) or that it cannot serve (on_missing:
// redirect without --login-url).
func TestServeRoutesRefused(t *testing.T) {
	dir := t.TempDir()
	aal := filepath.Join(dir, "aal.yaml")
	replaceFile(t, aal, []byte("rules:\n  - {name: admin, on_missing: redirect}\n"))
	bad := filepath.Join(dir, "bad.yaml")
	replaceFile(t, bad, []byte("rules:\n  - {name: a, on_missing: open}\n"))
	listen := serveRefusedArgs(t)
	for _, tt := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
	}{
		{"redirect without a login URL", []string{"--routes", aal}, nil, []string{"--routes: ", "rule 0 (admin): on_missing: redirect needs --login-url"}},
		{"redirect without a login URL, from the environment", nil, map[string]string{"ORY_EXT_AUTHZ_ROUTES": aal}, []string{"--routes: ", "on_missing: redirect needs --login-url"}},
		{"bad file", []string{"--routes", bad}, nil, []string{"--routes: " + bad + ":2:27: "}},
		{"missing file", []string{"--routes", filepath.Join(dir, "absent.yaml")}, nil, []string{"--routes: ", "no such file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			serveRefused(t, append(slices.Clone(listen), tt.args...), tt.env, tt.wantErr...)
		})
	}
}
