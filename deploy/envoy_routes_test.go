package deploy_test

import (
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
)

// TestEnvoyRoutesAgainstServer plays Envoy's part without Envoy: for each
// route of envoy.yaml it sends the CheckRequest that Envoy would send (the
// route's context_extensions, only the headers allowed_headers lets through)
// to the real server in front of a real Kratos, and checks the answer that
// Envoy would apply. TestEnvoyEndToEnd does the same through Envoy itself.
func TestEnvoyRoutesAgainstServer(t *testing.T) {
	s := loadEnvoy(t, envoyConfig)
	perRoute := func(route string) *extauthzv3.ExtAuthzPerRoute {
		a, ok := findRoute(t, s, route).GetTypedPerFilterConfig()[extAuthzFilter]
		if !ok {
			return nil
		}
		return unpack[*extauthzv3.ExtAuthzPerRoute](t, a)
	}
	ext := func(route string) map[string]string { return perRoute(route).GetCheckSettings().GetContextExtensions() }
	st := startStack(t, s)
	k, identity, cookie, sessionToken := st.kratos, st.identity, st.cookie, st.sessionToken
	meshTTL, optTTL, checks := st.meshTTL, st.optTTL, st.checks
	// jwt_authn's part: every JWT below is verified against the keys
	// remote_jwks fetches from the server, which must be the tokenizer's.
	pub := fetchRemoteJWKS(t, s, checks.httpAddr)
	checkSameKeys(t, pub, st.pub)
	conn, err := grpc.NewClient(checks.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)

	// check sends what Envoy sends for a request to route: headers lower-cased and
	// filtered through allowed_headers, the route's context extensions.
	check := func(t *testing.T, method, route string, h map[string]string) *authv3.CheckResponse {
		t.Helper()
		sent := map[string]string{}
		for name, v := range h {
			name = strings.ToLower(name)
			for _, p := range s.extAuthz.GetAllowedHeaders().GetPatterns() {
				if matchString(t, p, name) {
					sent[name] = v
					break
				}
			}
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: "deploy-test", Method: method, Path: "/" + route + "/page", Host: "127.0.0.1:8080",
				Scheme: "http", Protocol: "HTTP/1.1", Headers: sent,
			}},
			ContextExtensions: ext(route),
		}}
		resp, err := client.Check(t.Context(), req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	// jwtOf returns the claims of the JWT the answer sets, checking that
	// the mutation overwrites a client's Authorization header.
	jwtOf := func(t *testing.T, resp *authv3.CheckResponse, ttl float64) map[string]any {
		t.Helper()
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b, _ := protojson.Marshal(resp.GetDeniedResponse())
			t.Fatalf("status %v, want OK: %s", resp.GetStatus(), b)
		}
		var found []*corev3.HeaderValueOption
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "authorization" {
				found = append(found, h)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d authorization mutations, want 1", len(found))
		}
		h := found[0]
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend() == nil || h.GetAppend().GetValue() {
			t.Errorf("authorization mutation append=%v append_action=%v: a client's header could survive", h.GetAppend(), h.GetAppendAction())
		}
		if slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
			t.Error("authorization in headers_to_remove: Envoy removes after it sets, the JWT would be dropped")
		}
		tok, ok := strings.CutPrefix(h.GetHeader().GetValue(), "Bearer ")
		if !ok {
			t.Fatal("authorization is not a Bearer token")
		}
		c := verifyJWT(t, tok, pub)
		if c["iss"] != k.PublicURL() || c["sub"] != identity {
			t.Errorf("JWT iss %v sub %v", c["iss"], c["sub"])
		}
		if d := c["exp"].(float64) - c["iat"].(float64); d < ttl-1 || d > ttl+1 {
			t.Errorf("JWT lifetime %vs, want the template's %vs", d, ttl)
		}
		return c
	}
	// removesAuthorization: an OK answer without a JWT of ours removes the
	// client's Authorization, so the upstream never sees one the server
	// did not set (jwt_authn skips preflights and allows a missing JWT on
	// the optional route).
	removesAuthorization := func(t *testing.T, resp *authv3.CheckResponse) {
		t.Helper()
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("status %v, want OK", resp.GetStatus())
		}
		if hs := resp.GetOkResponse().GetHeaders(); len(hs) != 0 {
			t.Errorf("headers %v, want none set", hs)
		}
		if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
			t.Errorf("headers_to_remove %q, want authorization: the client's would reach the upstream", resp.GetOkResponse().GetHeadersToRemove())
		}
	}
	denied := func(t *testing.T, resp *authv3.CheckResponse, status int) {
		t.Helper()
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			t.Fatal("status OK, want a denial")
		}
		if got := int(resp.GetDeniedResponse().GetStatus().GetCode()); got != status {
			t.Errorf("denied with %d, want %d", got, status)
		}
	}

	t.Run("default route", func(t *testing.T) {
		jwtOf(t, check(t, http.MethodGet, routeDefault, map[string]string{"Cookie": "theme=dark; " + cookie}), meshTTL.Seconds())
		jwtOf(t, check(t, http.MethodGet, routeDefault, map[string]string{config.DefaultSessionTokenHeader: sessionToken}), meshTTL.Seconds())
		jwtOf(t, check(t, http.MethodGet, routeDefault, map[string]string{"Authorization": "Bearer " + sessionToken}), meshTTL.Seconds())
		forged := forgeJWT(t, pub, k.PublicURL())
		c := jwtOf(t, check(t, http.MethodGet, routeDefault, map[string]string{"Cookie": cookie, "Authorization": "Bearer " + forged}), meshTTL.Seconds())
		if c["sub"] == "mallory" {
			t.Error("the forged JWT came back")
		}
		denied(t, check(t, http.MethodGet, routeDefault, nil), http.StatusUnauthorized)
		denied(t, check(t, http.MethodGet, routeDefault, map[string]string{"Authorization": "Bearer " + forged}), http.StatusUnauthorized)
	})
	t.Run("optional route", func(t *testing.T) {
		withSession := check(t, http.MethodGet, routeOptional, map[string]string{"Cookie": cookie})
		jwtOf(t, withSession, optTTL.Seconds())
		removesAuthorization(t, check(t, http.MethodGet, routeOptional, nil))
		// jwt_authn rejects a forged JWT, but would let on a genuinely
		// signed one whose session is gone (or was never presented): the
		// server does not vouch for it without the session, so it goes.
		signed := withSession.GetOkResponse().GetHeaders()[0].GetHeader().GetValue()
		for name, v := range map[string]string{"forged": "Bearer " + forgeJWT(t, pub, k.PublicURL()), "signed, no session": signed} {
			t.Run(name, func(t *testing.T) {
				removesAuthorization(t, check(t, http.MethodGet, routeOptional, map[string]string{"Authorization": v}))
			})
		}
	})
	// jwt_authn's bypass_cors_preflight lets a preflight on unverified. So
	// on every route a preflight with a forged Authorization must lose it:
	// removed by the server's answer, or by the route where no check runs.
	t.Run("CORS preflight with a forged Authorization", func(t *testing.T) {
		h := map[string]string{"Access-Control-Request-Method": "POST", "Origin": "https://app.example.com", "Authorization": "Bearer " + forgeJWT(t, pub, k.PublicURL())}
		for _, vh := range s.hcm.GetRouteConfig().GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				t.Run(r.GetName(), func(t *testing.T) {
					if perRoute(r.GetName()).GetDisabled() {
						if !slices.Contains(r.GetRequestHeadersToRemove(), "authorization") {
							t.Error("no check runs on this route and it keeps the client's Authorization")
						}
						return
					}
					removesAuthorization(t, check(t, http.MethodOptions, r.GetName(), h))
				})
			}
		}
	})
	// What jwt_authn does not skip is no preflight for the server either.
	t.Run("OPTIONS without Origin", func(t *testing.T) {
		denied(t, check(t, http.MethodOptions, routeDefault, map[string]string{"Access-Control-Request-Method": "POST", "Authorization": "Bearer " + forgeJWT(t, pub, k.PublicURL())}), http.StatusUnauthorized)
	})
}

// TestEnvoyRender checks what TestEnvoyEndToEnd hands to Envoy, where no
// Envoy runs: the rendered config parses and validates like envoy.yaml, and
// only addresses and the issuer changed; remote_jwks still asks the JWKS
// path, now through a cluster to the server's HTTP listener.
func TestEnvoyRender(t *testing.T) {
	s := loadEnvoy(t, envoyConfig)
	dir := t.TempDir()
	renderEnvoy(t, s, dir, renderTarget{
		authz: "127.0.0.1:40001", http: "127.0.0.1:40004", upstream: "127.0.0.1:40002",
		issuer: "http://127.0.0.1:40003/",
	})
	r := loadEnvoy(t, filepath.Join(dir, "envoy.json"))
	if a := r.listener.GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 0 {
		t.Errorf("listener %v, want 127.0.0.1:0", a)
	}
	if a := r.boot.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 0 {
		t.Errorf("admin %v, want 127.0.0.1:0", a)
	}
	want := map[string]string{authzCluster: "127.0.0.1:40001", jwksCluster: "127.0.0.1:40004", findRoute(t, r, routeDefault).GetRoute().GetCluster(): "127.0.0.1:40002"}
	for name, c := range r.clusters {
		for _, ep := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range ep.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))); addr != want[name] {
					t.Errorf("cluster %s: %s, want %s", name, addr, want[name])
				}
			}
		}
	}
	for name, p := range r.jwt.GetProviders() {
		rj := p.GetRemoteJwks()
		if p.GetIssuer() != "http://127.0.0.1:40003/" || rj.GetHttpUri().GetCluster() != jwksCluster {
			t.Errorf("provider %s: issuer %q, remote_jwks %v", name, p.GetIssuer(), rj)
		}
		if u, err := url.Parse(rj.GetHttpUri().GetUri()); err != nil || u.Path != jwkspub.Path {
			t.Errorf("provider %s: remote_jwks uri %q, want the path %s", name, rj.GetHttpUri().GetUri(), jwkspub.Path)
		}
	}
	// Everything else is as in envoy.yaml.
	if len(r.anyTypes) != len(s.anyTypes) {
		t.Errorf("rendered config has %d typed configs, envoy.yaml %d", len(r.anyTypes), len(s.anyTypes))
	}
}
