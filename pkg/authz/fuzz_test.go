package authz_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/protobuf/proto"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// fuzzSessions are fixed so that the committed seeds in testdata/fuzz carry
// credentials the fake Ory accepts.
var fuzzSessions = []fakeory.Session{
	{ID: "11111111-1111-4111-8111-111111111111", IdentityID: "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", Cookie: "MTcfuzzcookieone", Token: "ory_st_fuzztokenone"},
	{ID: "22222222-2222-4222-8222-222222222222", IdentityID: "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", Cookie: "MTcfuzzcookietwo", Token: "ory_st_fuzztokentwo"},
}

// FuzzCheck feeds arbitrary bytes, unmarshalled as a CheckRequest, to Check.
// Invariants: no panic; a denial is never status OK; every OK answer
// vouches for the Authorization the upstream sees: it either sets it, to
// the JWT of a session whose exact credential is in the request (the fake
// Ory only mints a JWT for its own credential, so this also proves no
// answer goes to another session), or removes the client's (the server
// runs with --pass-client-authorization off), never both.
func FuzzCheck(f *testing.F) {
	fake := fakeory.New()
	f.Cleanup(fake.Close)
	fake.AddTemplate("other")
	sessions := map[string]fakeory.Session{}
	for _, s := range fuzzSessions {
		sessions[s.ID] = *fake.AddSession(s)
	}
	oc, err := ory.New(ory.Options{BaseURL: fake.URL, Timeout: 2 * time.Second, MaxJWTBytes: config.MaxCredentialBytes})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(oc.Close)
	d := config.Default()
	s, err := authz.New(authz.Options{
		Tokenizer: oc, Extractor: credential.NewExtractor(d.SessionCookies, d.SessionTokenHeader, config.MaxCredentialBytes),
		DefaultTemplate: "mesh", OnMissing: config.OnMissingDeny, LoginURL: "https://login.example.org/",
		ExpiryLeeway: d.ExpiryLeeway, NegativeTTL: d.NegativeTTL, FetchTimeout: 2 * time.Second, CacheMaxBytes: d.CacheMaxBytes,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	for _, r := range fuzzSeeds() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	keys := fake.JWKS()
	f.Fuzz(func(t *testing.T, data []byte) {
		var r authv3.CheckRequest
		if err := proto.Unmarshal(data, &r); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := s.Check(ctx, &r)
		// Look at the answer as Envoy does: parsed from the wire (an OK
		// answer is pre-encoded; its fields are unknown fields until then).
		resp = onTheWire(t, resp)
		if err != nil {
			if resp != nil {
				t.Fatalf("error %v with a response", err)
			}
			return
		}
		if resp.GetStatus().GetCode() != 0 {
			if resp.GetOkResponse() != nil {
				t.Fatalf("denial status %v with an ok_response", resp.GetStatus())
			}
			return
		}
		if resp.GetDeniedResponse() != nil {
			t.Fatal("status OK with a denied_response")
		}
		ok := resp.GetOkResponse()
		for _, rm := range ok.GetHeadersToRemove() {
			if !strings.EqualFold(rm, "authorization") {
				t.Fatalf("unexpected header to remove %q", rm)
			}
		}
		removes := len(ok.GetHeadersToRemove()) > 0
		sets := len(ok.GetHeaders()) > 0
		switch {
		case sets && removes:
			// Envoy removes after it sets: our JWT would be dropped.
			t.Fatal("OK answer sets authorization and removes it")
		case !sets && !removes:
			t.Fatal("OK answer neither sets nor removes authorization: the client's own would reach the upstream")
		}
		for _, h := range ok.GetHeaders() {
			if !strings.EqualFold(h.GetHeader().GetKey(), "authorization") {
				t.Fatalf("unexpected mutation %q", h.GetHeader().GetKey())
			}
			raw, _ := strings.CutPrefix(h.GetHeader().GetValue(), "Bearer ")
			tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatalf("authorization is not a JWT: %v", err)
			}
			var c struct {
				SID string `json:"sid"`
			}
			if err := tok.Claims(keys, &c); err != nil {
				t.Fatalf("JWT does not verify: %v", err)
			}
			sess, ok := sessions[c.SID]
			if !ok || !requestCarries(&r, sess) {
				t.Fatalf("OK with the JWT of session %q whose credential is not in the request", c.SID)
			}
		}
	})
}

// requestCarries tells whether any header of r holds s's cookie or token.
func requestCarries(r *authv3.CheckRequest, s fakeory.Session) bool {
	h := r.GetAttributes().GetRequest().GetHttp()
	var values []string
	for _, v := range h.GetHeaders() {
		values = append(values, v)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		values = append(values, hv.GetValue(), string(hv.GetRawValue()))
	}
	for _, v := range values {
		if strings.Contains(v, s.Cookie) || strings.Contains(v, s.Token) {
			return true
		}
	}
	return false
}

// fuzzSeeds are the requests of the committed seed corpus, also added in
// code so that the fuzz target starts from them with or without testdata.
func fuzzSeeds() []*authv3.CheckRequest {
	one, two := fuzzSessions[0], fuzzSessions[1]
	raw := rawReq([][2]string{{"cookie", "a=1"}, {"cookie", "ory_kratos_session=" + two.Cookie}}, nil)
	return []*authv3.CheckRequest{
		req(map[string]string{"cookie": "theme=dark; ory_kratos_session=" + one.Cookie}, nil),
		req(map[string]string{"x-session-token": two.Token, "authorization": "Bearer forged"}, nil),
		req(map[string]string{"authorization": "Bearer " + one.Token}, map[string]string{"tokenize_as": "other"}),
		req(map[string]string{"cookie": "ory_kratos_session=unknown"}, map[string]string{"on_missing": "redirect"}),
		req(map[string]string{":method": "OPTIONS", "access-control-request-method": "GET"}, nil),
		req(nil, map[string]string{"on_missing": "allow"}),
		raw,
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "Cookie", Value: "ory_session_x=" + one.Cookie}}},
		}}}},
		{},
		// Appended, so that the names of the seeds above stay as committed.
		req(map[string]string{":method": "OPTIONS", "origin": "https://app.example.org", "access-control-request-method": "POST", "authorization": "Bearer forged"}, nil),
		req(map[string]string{"authorization": "Bearer forged"}, map[string]string{"on_missing": "allow"}),
		req(map[string]string{"cookie": "ory_kratos_session=unknown", "authorization": "Bearer forged"}, map[string]string{"on_missing": "allow"}),
		req(map[string]string{":method": "OPTIONS", "origin": "https://app.example.org", "access-control-request-method": "POST", "cookie": "ory_kratos_session=" + one.Cookie}, nil),
		// A credential Go's HTTP client refuses to send (issue 11, item 2).
		req(map[string]string{"x-session-token": two.Token + "\x7f"}, nil),
		rawReq([][2]string{{"cookie", "ory_kratos_session=" + one.Cookie + "\x01"}}, nil),
		// Session fixation through a cookie value holding ",<session
		// cookie>" (issue 11, item 3): one's JWT, never two's.
		req(map[string]string{"cookie": "pref=x,ory_kratos_session=" + two.Cookie + ",y; ory_kratos_session=" + one.Cookie}, nil),
		rawReq([][2]string{{"cookie", "pref=x,ory_kratos_session=" + two.Cookie + ",y; ory_kratos_session=" + one.Cookie}}, nil),
		rawReq([][2]string{{"cookie", "pref=x,ory_kratos_session=" + two.Cookie}, {"cookie", "ory_kratos_session=" + one.Cookie}}, nil),
	}
}

// onTheWire is resp as a client parses it.
func onTheWire(t *testing.T, resp *authv3.CheckResponse) *authv3.CheckResponse {
	t.Helper()
	if resp == nil {
		return nil
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var out authv3.CheckResponse
	if err := proto.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}
