package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/internal/admincli"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// adminStack is the stack of newStack with the admin API on a listener of
// its own, as `serve` wires it: the same authz.Server answers Check on one
// loopback port and the admin API on another.
type adminStack struct {
	*stack
	adminAddr string
	admin     adminv1.AdminClient
}

// newAdminStack builds the stack of newStack with default options (the Ory
// client through the recording proxy, the mesh template, the default
// leeway), plus the admin API.
func newAdminStack(t *testing.T, k *kratosdev.Kratos) *adminStack {
	t.Helper()
	s, az, oc, log := wire(t, k, stackOptions{})
	api, err := admin.New(admin.Options{Cache: az, Ory: oc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close) // after the server stopped
	addrs := servertest.Start(t, server.Options{Authz: az, Logger: log, RegisterAdmin: func(gs *grpc.Server) { api.Register(gs) }})
	s.client = authv3.NewAuthorizationClient(servertest.Dial(t, addrs.GRPC))
	return &adminStack{stack: s, adminAddr: addrs.Admin, admin: adminv1.NewAdminClient(servertest.Dial(t, addrs.Admin))}
}

// kratosSays401 asks Kratos' whoami directly, bypassing ory-ext-authz, and
// requires 401: the revocation has taken effect in Kratos.
func kratosSays401(t *testing.T, k *kratosdev.Kratos, header, value string) {
	t.Helper()
	if status := kratostest.Whoami(t, k, "", header, value).Status; status != http.StatusUnauthorized {
		t.Fatalf("Kratos whoami after the revocation: %d, want 401", status)
	}
}

// cachedJWT checks and requires an OK answer from the cache with the JWT
// raw: the revoked session is still being served.
func (s *adminStack) cachedJWT(t *testing.T, headers map[string]string, raw string) {
	t.Helper()
	again, resp := s.allow(t, headers, nil)
	if again != raw || metadata(resp)["cached"] != true {
		t.Fatal("not served from the cache")
	}
}

// TestAdminInvalidateSession, against a real Kratos: a session logged in
// and checked is cached; after Kratos' admin API revokes it, the cache
// would go on serving its JWT until exp - leeway (the control, a second
// session revoked alike but not invalidated, shows that it does);
// InvalidateSession ends that at once: the next Check asks Kratos and is
// denied 401. The CLI does the same for the control session.
func TestAdminInvalidateSession(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	s := newAdminStack(t, k)
	frank := newUser(t, k, "frank")

	// 1. Log in twice and Check: both JWTs are cached.
	cookie, sid := s.browserLogin(t, frank)
	control, controlSID := s.browserLogin(t, frank)
	headers, controlHeaders := map[string]string{"cookie": cookie}, map[string]string{"cookie": control}
	raw, resp := s.allow(t, headers, nil)
	if md := metadata(resp); md["cached"] != false || md["session_id"] != sid || md["identity_id"] != frank.id {
		t.Fatalf("first check metadata = %v, want a fetch of session %s of identity %s", md, sid, frank.id)
	}
	if c := s.verify(t, raw); c.Sid != sid || c.Sub != frank.id {
		t.Fatalf("JWT sid %s sub %s, want the ids the admin API takes: %s, %s", c.Sid, c.Sub, sid, frank.id)
	}
	// Kratos writes its ids in the canonical UUID form, the one the admin
	// API turns every spelling of a UUID into.
	for _, id := range []string{sid, frank.id} {
		if admin.CanonicalID(id) != id {
			t.Fatalf("Kratos id %s is not a canonical UUID (%s)", id, admin.CanonicalID(id))
		}
	}
	controlRaw, _ := s.allow(t, controlHeaders, nil)
	s.cachedJWT(t, headers, raw)
	s.cachedJWT(t, controlHeaders, controlRaw)

	// 2. Revoke both sessions with Kratos' admin API. Kratos now says 401,
	// the cache does not know yet.
	for _, id := range []string{sid, controlSID} {
		if err := k.RevokeSession(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	kratosSays401(t, k, "Cookie", cookie)
	kratosSays401(t, k, "Cookie", control)
	s.cachedJWT(t, headers, raw)
	s.cachedJWT(t, controlHeaders, controlRaw)
	if n := s.proxy.CallsWith("Cookie", cookie); n != 1 {
		t.Fatalf("%d whoami calls for the session before the invalidation, want 1 (the fill)", n)
	}

	// ...and invalidate one of them through the admin gRPC API, spelled in
	// upper case as some tools print UUIDs: it still names this session.
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	if _, err := s.admin.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: strings.ToUpper(sid)}); err != nil {
		t.Fatalf("InvalidateSession: %v", err)
	}

	// 3. The next Check asks Kratos and is denied.
	resp, err := s.check(t, headers, nil)
	denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
	if n := s.proxy.CallsWith("Cookie", cookie); n != 2 {
		t.Errorf("%d whoami calls for the session, want 2 (the fill, the check after the invalidation)", n)
	}

	// The control: revoked in Kratos just the same, not invalidated, and
	// still served from the cache (until exp - leeway, see TestRevokedSession).
	s.cachedJWT(t, controlHeaders, controlRaw)
	if n := s.proxy.CallsWith("Cookie", control); n != 1 {
		t.Errorf("%d whoami calls for the control session, want 1", n)
	}

	// `ory-ext-authz admin invalidate --session` ends the control too.
	var out, errOut bytes.Buffer
	if code := admincli.Run(t.Context(), []string{"invalidate", "--session", controlSID, "--admin-addr", s.adminAddr}, nil, &out, &errOut); code != 0 {
		t.Fatalf("admin invalidate: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	resp, err = s.check(t, controlHeaders, nil)
	denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
}

// TestAdminInvalidateIdentity, against a real Kratos: InvalidateIdentity
// with Kratos' identity id (the JWT's sub) ends a browser session and a
// native (session token) session of the identity, after Kratos revoked them;
// another identity's session stays cached. Stats then agrees with what
// reached Kratos.
func TestAdminInvalidateIdentity(t *testing.T) {
	t.Parallel()
	k := kratostest.Start(t, kratosdev.Options{})
	s := newAdminStack(t, k)
	grace, heidi := newUser(t, k, "grace"), newUser(t, k, "heidi")

	cookie, cookieSID := s.browserLogin(t, grace)
	token, tokenSID := s.apiLogin(t, grace)
	other, _ := s.browserLogin(t, heidi)
	creds := []map[string]string{{"cookie": cookie}, {"x-session-token": token}, {"authorization": "Bearer " + token}}
	raws := make([]string, len(creds))
	for i, h := range creds {
		raws[i], _ = s.allow(t, h, nil)
	}
	otherRaw, _ := s.allow(t, map[string]string{"cookie": other}, nil)
	for _, id := range []string{cookieSID, tokenSID} {
		if err := k.RevokeSession(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range creds {
		s.cachedJWT(t, h, raws[i])
	}

	code, out, errOut := runAdminCLI(t, "invalidate", "--identity", grace.id, "--admin-addr", s.adminAddr)
	if code != 0 || !strings.Contains(out, "invalidated identity "+grace.id) {
		t.Fatalf("admin invalidate --identity: exit %d\n%s%s", code, out, errOut)
	}
	for _, h := range creds {
		resp, err := s.check(t, h, nil)
		denied(t, resp, err, codes.Unauthenticated, http.StatusUnauthorized)
	}
	s.cachedJWT(t, map[string]string{"cookie": other}, otherRaw)

	code, out, errOut = runAdminCLI(t, "stats", "--json", "--admin-addr", s.adminAddr)
	if code != 0 {
		t.Fatalf("admin stats: exit %d\n%s%s", code, out, errOut)
	}
	var st map[string]uint64
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Every whoami call the Ory client made reached Kratos through the proxy.
	// x-session-token and the bearer form of one token are one credential,
	// hence one cache entry. Misses: the 3 fills (cookie, token, heidi) and
	// the 2 checks after the invalidation; hits: the bearer check while
	// filling, the 3 checks after the revocation and heidi's; the bearer
	// check after the invalidation is the remembered 401 of the token. The
	// 2 denials that reached Kratos are its errors.
	want := map[string]uint64{"ory_calls": uint64(len(s.proxy.Calls())), "ory_errors": 2, "misses": 5, "hits": 5, "negative_hits": 1, "cache_entries": 3}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("stats %s = %d, want %d (all: %v)", k, st[k], v, st)
		}
	}
	if want["ory_calls"] != 5 {
		t.Errorf("%d whoami calls reached Kratos, want 5", want["ory_calls"])
	}
}

func runAdminCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := admincli.Run(t.Context(), args, nil, &out, &errOut)
	return code, out.String(), errOut.String()
}
