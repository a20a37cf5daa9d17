package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// FuzzRoutesCheck feeds arbitrary routes files and requests to the Check
// path, with an aal1 session in the request. Invariants, checked against
// the routes package's own verdict for the same request: no panic; no
// allow on a rule whose require_aal is above the session's, whose
// `authorize` is false or fails, or on an ambiguous path; every identity
// header name of the table is either set or removed by an OK answer, never
// both, and one that is set carries the claim's value for a string claim.
func FuzzRoutesCheck(f *testing.F) {
	fake := fakeory.New()
	f.Cleanup(fake.Close)
	fake.AddTemplate("other")
	fake.SetClaims(func(c map[string]any) {
		c["roles"] = []any{"dev", "GET"}
		c["dept"] = "finance"
		c["level"] = float64(3)
	})
	sess := fake.AddSession(fuzzSessions[0])
	oc, err := ory.New(ory.Options{BaseURL: fake.URL, Timeout: 2 * time.Second, MaxJWTBytes: config.MaxCredentialBytes})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(oc.Close)
	tab := &swapTable{}
	d := config.Default()
	s, err := authz.New(authz.Options{
		Tokenizer: oc, Extractor: credential.NewExtractor(d.SessionCookies, d.SessionTokenHeader, config.MaxCredentialBytes),
		DefaultTemplate: "mesh", OnMissing: config.OnMissingDeny, LoginURL: "https://login.example.org/", StepUpURL: "https://login.example.org/",
		ExpiryLeeway: d.ExpiryLeeway, NegativeTTL: d.NegativeTTL, FetchTimeout: 2 * time.Second, CacheMaxBytes: d.CacheMaxBytes,
		Routes: tab,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	for _, p := range []string{"/admin/x", "/reports/q3", "/public/x", "/broken/", "/public/../admin/x", "/other"} {
		f.Add([]byte(policyTable), "GET", "app.example.org", p, "x-tenant", "acme")
	}
	f.Add([]byte("rules: [{headers: {x-a: roles, x-b: level, x-c: nope}, authorize: 'claims.level == 3.0'}]"), "GET", "a", "/", "x-a", "forged")
	f.Add([]byte("rules: [{match: {path: {prefix: /a}}, require_aal: aal2, headers: {x-u: sub}}]"), "GET", "a", "/a", "x-u", "forged")
	f.Add([]byte("rules: [{authorize: 'claims.dept == \"sales\"'}]"), "GET", "a", "/", "", "")
	f.Add([]byte("rules: [{match: {methods: [POST]}, authorize: 'request.method == \"POST\"', require_aal: aal1}]"), "post", "a", "/x", "", "")
	f.Add([]byte("rules: [{tokenize_as: other, headers: {x-dept: dept}, authorize: 'session.aal == \"aal1\" && \"dev\" in claims.roles'}]"), "GET", "a", "/", "x-dept", "x")
	f.Fuzz(func(t *testing.T, file []byte, method, host, path, hname, hvalue string) {
		table, err := routes.Parse(file)
		if err != nil || authz.CheckTable(table, true) != nil {
			return
		}
		tab.p.Store(table)
		h := map[string]string{":method": method, ":path": path, ":authority": host, "accept": "text/html"}
		if hn := strings.ToLower(hname); hn != "" && !strings.HasPrefix(hn, ":") && hn != "cookie" {
			h[hn] = hvalue
		}
		h["cookie"] = sess.CookiePair()
		r := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: host, Headers: h,
		}}}}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		resp, err := s.Check(ctx, r)
		if err == nil {
			// As Envoy reads it: the cached answer travels as unknown
			// fields, merged by the parser.
			b, merr := proto.Marshal(resp)
			if merr != nil {
				t.Fatal(merr)
			}
			resp = &authv3.CheckResponse{}
			if err := proto.Unmarshal(b, resp); err != nil {
				t.Fatal(err)
			}
		}
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			if err == nil && resp.GetOkResponse() != nil {
				t.Fatalf("a denial with an OK response: %v", resp)
			}
			return
		}
		set := map[string]string{}
		for _, hv := range resp.GetOkResponse().GetHeaders() {
			set[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		removed := resp.GetOkResponse().GetHeadersToRemove()
		for _, name := range table.HeaderNames() {
			_, isSet := set[name]
			if isSet == slices.Contains(removed, name) {
				t.Fatalf("identity header %s: set %v, removed %v", name, isSet, removed)
			}
		}
		jwtValue, hasJWT := strings.CutPrefix(set["authorization"], "Bearer ")
		rule, _ := table.Match(method, host, path)
		if rule.Ambiguous() {
			t.Fatalf("allowed on an ambiguous path %q", path)
		}
		if !hasJWT {
			// No session was used (on_missing: allow with the cookie not
			// read, e.g. a cookie header the fuzzer's header replaced).
			return
		}
		st := rule.Settings(routes.Settings{TokenizeAs: "mesh"})
		if st.RequireAAL == routes.AAL2 {
			t.Fatalf("%s requires aal2, allowed an aal1 session", rule)
		}
		claims := jwtClaims(t, jwtValue)
		if rule.Expression() != "" {
			np, _ := routes.NormalizePath(path)
			ok, err := rule.Authorize(routes.Vars{Claims: claims,
				Session: routes.Session{IdentityID: sess.IdentityID, SessionID: sess.ID, AAL: "aal1"},
				Request: routes.Request{Method: method, Host: host, Path: np, Headers: h}})
			if !ok || err != nil {
				t.Fatalf("%s denies (%v, %v), the Check path allowed", rule, ok, err)
			}
		}
		for _, hc := range st.Headers {
			if c, isString := claims[hc.Claim].(string); isString && set[hc.Header] != "" && set[hc.Header] != c {
				t.Fatalf("%s = %q, claim %s is %q", hc.Header, set[hc.Header], hc.Claim, c)
			}
		}
	})
}

// jwtClaims decodes a JWT's claims without verifying it (FuzzCheck and the
// other tests verify the fake's signatures).
func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}
