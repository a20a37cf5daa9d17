package routes

import (
	"slices"
	"strings"
	"testing"
)

func mustParse(t testing.TB, file string) *Table {
	t.Helper()
	tab, err := Parse([]byte(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tab
}

// matched names the rule Match finds: its name, "-" for none,
// "ambiguous" for the ambiguous path rule.
func matched(tab *Table, method, host, path string) string {
	r, ok := tab.Match(method, host, path)
	switch {
	case !ok:
		if r != nil {
			return "BUG: a rule without ok"
		}
		return "-"
	case r.Ambiguous():
		return "ambiguous"
	}
	return r.Name()
}

func TestMatch(t *testing.T) {
	tab := mustParse(t, `rules:
  - name: exact-host
    match: {host: api.example.com, path: {prefix: /v1/}}
  - name: wildcard
    match: {host: "*.example.com", path: {prefix: /v1/}}
  - name: writes
    match: {path: {regex: '/items/[0-9]+'}, methods: [PUT, delete]}
  - name: reads
    match: {path: {regex: '/items/[0-9]+'}, methods: [GET]}
  - name: exact
    match: {path: {exact: /login}}
  - name: all-of-other
    match: {host: other.test}
`)
	for _, tc := range []struct{ method, host, path, want string }{
		{"GET", "api.example.com", "/v1/x", "exact-host"},
		{"GET", "API.Example.COM:8443", "/v1/x", "exact-host"},
		{"GET", "api.example.com.", "/v1/x", "exact-host"},
		{"GET", "a.example.com", "/v1/x", "wildcard"},
		{"GET", "a.b.example.com:80", "/v1/x", "wildcard"},
		{"GET", "example.com", "/v1/x", "-"},
		{"GET", "badexample.com", "/v1/x", "-"},
		{"GET", ".example.com", "/v1/x", "-"},
		{"GET", "api.example.com.evil.test", "/v1/x", "-"},
		{"GET", "a.example.com", "/v2/x", "-"},
		{"PUT", "", "/items/12", "writes"},
		{"DELETE", "", "/items/12", "writes"},
		{"delete", "", "/items/12", "writes"}, // methods compared without case
		{"GET", "", "/items/12", "reads"},
		{"HEAD", "", "/items/12", "reads"}, // GET implies HEAD
		{"POST", "", "/items/12", "-"},
		{"GET", "", "/items/12/x", "-"}, // regexes are anchored
		{"GET", "", "/x/items/12", "-"},
		{"GET", "", "/items/12?x=1", "reads"},
		{"GET", "", "/login", "exact"},
		{"GET", "", "/login?next=/", "exact"},
		{"GET", "", "/login/", "-"},
		{"GET", "", "/loginx", "-"},
		{"POST", "other.test", "/anything", "all-of-other"},
		{"GET", "[::1]:8080", "/login", "exact"},
	} {
		if got := matched(tab, tc.method, tc.host, tc.path); got != tc.want {
			t.Errorf("Match(%s %s %s) = %s, want %s", tc.method, tc.host, tc.path, got, tc.want)
		}
	}
	var none *Table
	if r, ok := none.Match("GET", "", "/"); r != nil || ok {
		t.Errorf("nil table matched %v", r)
	}
	if r, ok := mustParse(t, "rules: []\n").Match("GET", "", "/a/../\x00"); r != nil || ok {
		t.Errorf("empty table matched %v", r)
	}
}

func TestRequestHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com", "example.com:443": "example.com", "example.com.": "example.com",
		"example.com.:80": "example.com", "[::1]:80": "::1", "[::1]": "::1", "::1": "::1", "": "", "a:b:c": "a:b:c",
	} {
		if got := requestHost(in); got != want {
			t.Errorf("requestHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// bypassTable opens /public/ and protects everything else: the classic
// shape a path trick tries to get out of.
const bypassTable = `rules:
  - name: open
    match: {path: {prefix: /public/}}
    on_missing: allow
  - name: protected
    on_missing: deny
`

// TestPathBypasses: no trick reaches the open rule unless the upstream
// would also see a path under /public/. Each case says what an upstream
// may read and why the answer follows.
func TestPathBypasses(t *testing.T) {
	tab := mustParse(t, bypassTable)
	for _, tc := range []struct{ path, want, why string }{
		{"/public/x", "open", "normal form, one reading"},
		{"/public/", "open", "the prefix itself"},
		{"/public/x?next=/admin", "open", "the query is not the path"},
		{"/admin", "protected", "normal form"},
		{"/public/../admin", "ambiguous", "is /admin to Envoy and to an upstream that normalizes, /public/../admin to one that does not"},
		{"/public/./x", "open", "/public/x in every reading (the raw one still starts /public/)"},
		{"/public//../admin", "ambiguous", "/public/admin to Envoy (dot segments before merge_slashes), /admin to an upstream that merges slashes first"},
		{"//admin", "protected", "/admin after merge_slashes, //admin as it came: both protected"},
		{"//public/x", "ambiguous", "/public/x after merge_slashes; //public/x, which is not under /public/, as it came"},
		{"/public%2F..%2Fadmin", "protected", "not under /public/ (no literal slash) kept escaped; /admin decoded"},
		{"/public/..%2Fadmin", "ambiguous", "under /public/ kept escaped, /admin once %2F is decoded"},
		{"/public/..%5Cadmin", "ambiguous", "likewise with an escaped backslash"},
		{"/public/%2e%2e/admin", "ambiguous", "/admin: %2e is a dot to Envoy too; as it came it is under /public/"},
		{"/Public/", "protected", "paths are case-sensitive, as Envoy matches them"},
		{"/PUBLIC/../public/x", "ambiguous", "/public/x normalized, not under /public/ as it came"},
		{"/public", "protected", "no trailing slash: not under the prefix /public/"},
		{"/public;x=1/../admin", "protected", "/admin normalized (Envoy keeps ';', the segment goes with ..); as it came not under /public/ either"},
		{"/public/..;/admin", "ambiguous", "under /public/ to Envoy; /admin to Tomcat, which drops ;params"},
		{"/public;/x", "ambiguous", "not under /public/ with the parameter; /public/x to Tomcat, which drops it"},
		{"/public\\..\\admin", "protected", "a backslash is a slash to Envoy: /admin; as it came not under /public/ either"},
		{"/public/x#/../../admin", "ambiguous", "a fragment cut or not"},
		{"/public/x\x00", "ambiguous", "Envoy refuses a NUL (400)"},
		{"/public/%00", "ambiguous", "Envoy refuses an escaped NUL too"},
		{"public/x", "ambiguous", "no leading slash: /public/x to Envoy, not a path under /public/ as it came"},
		{"/public/%41", "open", "/public/A and /public/%41: both under /public/"},
	} {
		if got := matched(tab, "GET", "app.example.com", tc.path); got != tc.want {
			t.Errorf("%q: %s, want %s (%s)", tc.path, got, tc.want, tc.why)
		}
	}
}

func TestSettings(t *testing.T) {
	tab := mustParse(t, `rules:
  - name: all
    tokenize_as: admin
    on_missing: redirect
    require_aal: aal2
    pass_client_authorization: true
    headers: {x-user-id: sub, x-email: email}
    match: {path: {prefix: /all/}}
  - name: some
    pass_client_authorization: false
    match: {path: {prefix: /some/}}
  - name: none
    headers: {x-tenant: tenant}
`)
	defaults := Settings{TokenizeAs: "mesh", OnMissing: OnMissingAllow, PassClientAuthorization: true}
	for _, tc := range []struct {
		path string
		want Settings
	}{
		{"/all/x", Settings{TokenizeAs: "admin", OnMissing: OnMissingRedirect, RequireAAL: AAL2, PassClientAuthorization: true,
			Headers: []HeaderClaim{{"x-email", "email"}, {"x-user-id", "sub"}}}},
		{"/some/x", Settings{TokenizeAs: "mesh", OnMissing: OnMissingAllow}},
		{"/other", Settings{TokenizeAs: "mesh", OnMissing: OnMissingAllow, PassClientAuthorization: true, Headers: []HeaderClaim{{"x-tenant", "tenant"}}}},
	} {
		r, _ := tab.Match("GET", "", tc.path)
		if got := r.Settings(defaults); !equalSettings(got, tc.want) {
			t.Errorf("%s (%s): %+v, want %+v", tc.path, r, got, tc.want)
		}
	}
	var none *Rule
	if got := none.Settings(defaults); !equalSettings(got, defaults) {
		t.Errorf("no rule: %+v, want the defaults", got)
	}
	if got := ambiguousRule.Settings(defaults); got.OnMissing != OnMissingDeny || got.TokenizeAs != "mesh" {
		t.Errorf("ambiguous: %+v, want deny over the defaults", got)
	}
	if got := strings.Join(tab.HeaderNames(), ","); got != "x-email,x-tenant,x-user-id" {
		t.Errorf("HeaderNames = %s", got)
	}
}

func equalSettings(a, b Settings) bool {
	return slices.Equal(a.Headers, b.Headers) && a.TokenizeAs == b.TokenizeAs && a.OnMissing == b.OnMissing &&
		a.RequireAAL == b.RequireAAL && a.PassClientAuthorization == b.PassClientAuthorization
}

func TestAuthorize(t *testing.T) {
	tab := mustParse(t, `rules:
  - name: admin
    match: {path: {prefix: /admin/}}
    authorize: '"admin" in claims.roles && session.aal == "aal2" && claims.sub == session.identity_id'
  - name: header
    match: {path: {prefix: /h/}}
    authorize: 'request.headers["x-tenant"] == claims.tenant && request.method == "GET" && request.path.startsWith("/h/") && request.host == "a.test"'
  - name: loop
    match: {path: {prefix: /loop/}}
    authorize: 'claims.items.exists(i, i == "x")'
  - name: cost
    match: {path: {prefix: /cost/}}
    authorize: 'claims.text.contains("x")'
  - name: open
`)
	admin := Vars{Claims: map[string]any{"roles": []any{"admin"}, "sub": "id1"}, Session: Session{IdentityID: "id1", AAL: "aal2"}}
	for _, tc := range []struct {
		name    string
		path    string
		vars    Vars
		want    bool
		wantErr string
	}{
		{"admin", "/admin/x", admin, true, ""},
		{"aal1", "/admin/x", Vars{Claims: admin.Claims, Session: Session{IdentityID: "id1", AAL: "aal1"}}, false, ""},
		{"other identity", "/admin/x", Vars{Claims: admin.Claims, Session: Session{IdentityID: "id2", AAL: "aal2"}}, false, ""},
		{"no roles claim", "/admin/x", Vars{Session: admin.Session}, false, "no such key: roles"},
		{"roles not a list", "/admin/x", Vars{Claims: map[string]any{"roles": 3.0}, Session: admin.Session}, false, "no such overload"},
		{"headers", "/h/x", Vars{Claims: map[string]any{"tenant": "t1"}, Request: Request{Method: "GET", Host: "a.test", Path: "/h/x", Headers: map[string]string{"x-tenant": "t1"}}}, true, ""},
		{"other tenant", "/h/x", Vars{Claims: map[string]any{"tenant": "t1"}, Request: Request{Method: "GET", Host: "a.test", Path: "/h/x", Headers: map[string]string{"x-tenant": "t2"}}}, false, ""},
		{"no header", "/h/x", Vars{Claims: map[string]any{"tenant": "t1"}, Request: Request{Method: "GET", Host: "a.test", Path: "/h/x"}}, false, "no such key: x-tenant"},
		{"loop over a long claim", "/loop/", Vars{Claims: map[string]any{"items": make([]any, MaxLoopLen+1)}}, false, "claims.items has 1025 elements, more than 1024"},
		{"cost limit", "/cost/", Vars{Claims: map[string]any{"text": strings.Repeat("a", 20*CostLimit)}}, false, "actual cost limit exceeded"},
		{"no expression", "/x", Vars{}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := tab.Match("GET", "", tc.path)
			got, err := r.Authorize(tc.vars)
			if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("%s: Authorize = %v, %v; want %v, %q", r, got, err, tc.want, tc.wantErr)
			}
		})
	}
	if ok, err := ambiguousRule.Authorize(admin); ok || err != nil {
		t.Errorf("ambiguous rule: Authorize = %v, %v; want false", ok, err)
	}
	if got := tab.Rules()[0].Expression(); !strings.HasPrefix(got, `"admin" in claims.roles`) {
		t.Errorf("Expression = %q", got)
	}
}

// TestHostIndexKeepsOrder: rules for an exact host and rules for any host
// (none, a wildcard) are tried in file order whatever the index.
func TestHostIndexKeepsOrder(t *testing.T) {
	tab := mustParse(t, `rules:
  - {name: a, match: {host: x.test, path: {prefix: /a/}}}
  - {name: w, match: {host: "*.x.test", path: {prefix: /a/}}}
  - {name: b, match: {path: {prefix: /b/}}}
  - {name: c, match: {host: x.test}}
  - {name: d, match: {host: y.test}}
  - {name: e}
`)
	for _, tt := range []struct{ host, path, want string }{
		{"x.test", "/a/1", "a"},
		{"X.Test.:443", "/a/1", "a"},
		{"x.test", "/b/1", "b"},
		{"x.test", "/z", "c"},
		{"y.test", "/b/1", "b"},
		{"y.test", "/a/1", "d"},
		{"s.x.test", "/a/1", "w"},
		{"z.test", "/a/1", "e"},
	} {
		r, ok := tab.Match("GET", tt.host, tt.path)
		if !ok || r.Name() != tt.want {
			t.Errorf("%s %s: %v, want rule %s", tt.host, tt.path, r, tt.want)
		}
	}
}
