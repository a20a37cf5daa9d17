package authz_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// staticTable is a RouteTable that never changes.
type staticTable struct{ t *routes.Table }

func (s staticTable) Table() *routes.Table { return s.t }

func mustTable(t *testing.T, yaml string) *routes.Table {
	t.Helper()
	tab, err := routes.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// routesTable: an open /public/ area, a partner API that keeps the
// client's Authorization, an /other/ area with its own template, and a
// protected default (the --on-missing deny flag).
const routesTable = `rules:
  - name: public
    match: {path: {prefix: /public/}}
    on_missing: allow
  - name: partner
    match: {host: partner.example.org}
    on_missing: allow
    pass_client_authorization: true
  - name: other
    match: {path: {prefix: /other/}}
    tokenize_as: other
`

func newRoutesEnv(t *testing.T, edit ...func(*authz.Options)) *env {
	t.Helper()
	tab := mustTable(t, routesTable)
	return newEnv(t, append([]func(*authz.Options){func(o *authz.Options) { o.Routes = staticTable{tab} }}, edit...)...)
}

func pathReq(host, path string, headers, ext map[string]string) *authv3.CheckRequest {
	h := map[string]string{":path": path, ":authority": host}
	for k, v := range headers {
		h[k] = v
	}
	return req(h, ext)
}

func httpStatusOf(resp *authv3.CheckResponse) int {
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

func removesAuthorization(resp *authv3.CheckResponse) bool {
	return slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization")
}

// TestRoutesOnMissing: the rule's on_missing applies over the flag's; a
// path no rule matches gets the flag's (deny).
func TestRoutesOnMissing(t *testing.T) {
	e := newRoutesEnv(t)
	forged := map[string]string{"authorization": "Bearer forged"}
	resp := mustCheck(t, e, pathReq("app.example.org", "/public/x", forged, nil))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || !removesAuthorization(resp) {
		t.Errorf("/public/x without a session: %v, want OK removing authorization", resp)
	}
	resp = mustCheck(t, e, pathReq("app.example.org", "/admin", nil, nil))
	if httpStatusOf(resp) != http.StatusUnauthorized {
		t.Errorf("/admin without a session: %v, want 401", resp)
	}
	if n := e.ory.Calls(); n != 0 {
		t.Errorf("Ory called %d times without a credential", n)
	}
}

// TestRoutesAmbiguousPath: a path the table cannot match with certainty
// is a 400, even with a session, and Ory is never asked.
func TestRoutesAmbiguousPath(t *testing.T) {
	e := newRoutesEnv(t)
	s := e.ory.NewSession()
	for _, p := range []string{"/public/../admin", "/public/..;/admin", "//public/x"} {
		for _, h := range []map[string]string{nil, {"cookie": s.CookiePair()}} {
			resp := mustCheck(t, e, pathReq("app.example.org", p, h, map[string]string{"on_missing": "allow"}))
			if httpStatusOf(resp) != http.StatusBadRequest || codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument ||
				!strings.Contains(resp.GetDeniedResponse().GetBody(), "ambiguous") {
				t.Errorf("%s (cookie %v): %v, want 400 ambiguous", p, h != nil, resp)
			}
		}
	}
	if n := e.ory.Calls(); n != 0 {
		t.Errorf("Ory called %d times for ambiguous paths", n)
	}
	if !strings.Contains(e.logs.String(), "ambiguous path") {
		t.Errorf("no log line for the ambiguous path:\n%s", e.logs)
	}
}

// TestRoutesTokenizeAs: a rule's tokenize_as is the template Ory gets;
// context_extensions' tokenize_as still wins over it.
func TestRoutesTokenizeAs(t *testing.T) {
	e := newRoutesEnv(t)
	e.ory.AddTemplate("other")
	e.ory.AddTemplate("ext")
	s := e.ory.NewSession()
	cookie := map[string]string{"cookie": s.CookiePair()}
	for _, tt := range []struct {
		path string
		ext  map[string]string
		want string
	}{
		{"/app", nil, "mesh"},
		{"/other/x", nil, "other"},
		{"/other/y", map[string]string{"tokenize_as": "ext"}, "ext"},
	} {
		resp := mustCheck(t, e, pathReq("app.example.org", tt.path, cookie, tt.ext))
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("%s: %v", tt.path, resp)
		}
		rcv := e.ory.Received()
		if got := rcv[len(rcv)-1].Template; got != tt.want {
			t.Errorf("%s %v: Ory got tokenize_as=%q, want %q", tt.path, tt.ext, got, tt.want)
		}
	}
}

// TestRoutesContextExtensionsOverride: defaults < routes file <
// context_extensions, field by field.
func TestRoutesContextExtensionsOverride(t *testing.T) {
	e := newRoutesEnv(t)
	resp := mustCheck(t, e, pathReq("app.example.org", "/public/x", nil, map[string]string{"on_missing": "deny"}))
	if httpStatusOf(resp) != http.StatusUnauthorized {
		t.Errorf("/public/x with on_missing=deny: %v, want 401", resp)
	}
	resp = mustCheck(t, e, pathReq("app.example.org", "/admin", nil, map[string]string{"on_missing": "allow"}))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("/admin with on_missing=allow: %v, want OK", resp)
	}
	// The extension's tokenize_as leaves the rule's on_missing alone.
	resp = mustCheck(t, e, pathReq("app.example.org", "/public/x", nil, map[string]string{"tokenize_as": "ext"}))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("/public/x with tokenize_as only: %v, want OK (the rule's allow)", resp)
	}
}

// TestRoutesPassClientAuthorization: per route, over the flag (off).
func TestRoutesPassClientAuthorization(t *testing.T) {
	e := newRoutesEnv(t)
	forged := map[string]string{"authorization": "Bearer api-key"}
	resp := mustCheck(t, e, pathReq("partner.example.org", "/v1/x", forged, nil))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || removesAuthorization(resp) {
		t.Errorf("partner route: %v, want OK keeping authorization", resp)
	}
	resp = mustCheck(t, e, pathReq("app.example.org", "/public/x", forged, nil))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || !removesAuthorization(resp) {
		t.Errorf("public route: %v, want OK removing authorization", resp)
	}
	// A rule without the setting keeps the flag's (on).
	e = newRoutesEnv(t, func(o *authz.Options) { o.PassClientAuthorization = true })
	resp = mustCheck(t, e, pathReq("app.example.org", "/public/x", forged, nil))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || removesAuthorization(resp) {
		t.Errorf("public route, flag on: %v, want OK keeping authorization", resp)
	}
}

// TestCheckTable: redirect without a login URL refuses the table (and New
// with it); every other setting is enforced.
func TestCheckTable(t *testing.T) {
	err := authz.CheckTable(mustTable(t, "rules:\n  - {name: ok}\n  - {name: a, on_missing: redirect}"), false)
	if want := "3:5: rule 1 (a): on_missing: redirect needs --login-url"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("redirect without a login URL: %v, want %q", err, want)
	}
	if err := authz.CheckTable(mustTable(t, policyTable), false); err != nil {
		t.Errorf("require_aal, authorize and headers: %v", err)
	}
	if err := authz.CheckTable(nil, false); err != nil {
		t.Errorf("nil table: %v", err)
	}
}
