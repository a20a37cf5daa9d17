package authz_test

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ory-ext-authz/ory-ext-authz/internal/checktest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

// forgedJWT is an unsigned JWT (alg none) claiming sub mallory: what a
// client may write into Authorization hoping the upstream trusts it.
const forgedJWT = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5In0."

// authOutcome is what an answer does to the Authorization header the
// upstream would see.
type authOutcome int

const (
	authSet       authOutcome = iota // OK, authorization overwritten with our JWT
	authRemoved                      // OK, authorization in headers_to_remove, nothing set
	authUntouched                    // OK, no mutation at all (only with the opt-out)
	authDenied                       // UNAUTHENTICATED, 401
)

// reasons records the reason of every check, for the metric names.
type reasons struct {
	mu  sync.Mutex
	got []authz.Reason
}

func (r *reasons) ObserveCheck(reason authz.Reason, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, reason)
}

func (r *reasons) last() authz.Reason {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		return authz.Reason(255)
	}
	return r.got[len(r.got)-1]
}

// TestOKAnswersVouchForAuthorization: every OK answer either sets our JWT
// or removes the client's Authorization, so the upstream only ever sees an
// Authorization that ory-ext-authz vouched for; the only exception is the
// explicit --pass-client-authorization opt-out in allow mode, and never for
// a preflight. Each case runs in both of Envoy's header encodings.
func TestOKAnswersVouchForAuthorization(t *testing.T) {
	preflight := map[string]string{":method": "OPTIONS", "origin": "https://app.example.org", "access-control-request-method": "POST"}
	with := func(base map[string]string, kv ...string) map[string]string {
		h := map[string]string{}
		for k, v := range base {
			h[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	forged := map[string]string{"authorization": "Bearer " + forgedJWT}
	tests := []struct {
		name    string
		mode    config.OnMissing
		pass    bool              // --pass-client-authorization
		ext     map[string]string // context_extensions
		headers map[string]string
		// cred adds a credential: "cookie" or "token" of a live session,
		// "bad-cookie" or "bad-token" of none, "revoked-jwt" a genuinely
		// signed JWT of a session revoked since (in Authorization).
		cred   string
		want   authOutcome
		reason authz.Reason
	}{
		{"preflight with a forged Authorization", config.OnMissingDeny, false, nil, with(preflight, "authorization", "Bearer "+forgedJWT), "", authRemoved, authz.ReasonPreflight},
		{"preflight in allow mode", config.OnMissingAllow, false, nil, with(preflight, "authorization", "Bearer "+forgedJWT), "", authRemoved, authz.ReasonPreflight},
		{"preflight with the opt-out still removes", config.OnMissingAllow, true, nil, with(preflight, "authorization", "Bearer "+forgedJWT), "", authRemoved, authz.ReasonPreflight},
		{"preflight with the opt-out in deny mode", config.OnMissingDeny, true, nil, with(preflight, "authorization", "Bearer "+forgedJWT), "", authRemoved, authz.ReasonPreflight},
		{"OPTIONS without Origin is no preflight", config.OnMissingDeny, false, nil, with(preflight, "origin", "", "authorization", "Bearer "+forgedJWT), "", authDenied, authz.ReasonNoCredential},
		{"OPTIONS with an empty Origin is no preflight", config.OnMissingDeny, false, nil, with(preflight, "origin", ""), "", authDenied, authz.ReasonNoCredential},
		{"OPTIONS without Access-Control-Request-Method is no preflight", config.OnMissingDeny, false, nil, with(preflight, "access-control-request-method", ""), "", authDenied, authz.ReasonNoCredential},
		// Envoy's jwt_authn compares the method case-sensitively; so do we.
		{"lower-case options is no preflight", config.OnMissingDeny, false, nil, with(preflight, ":method", "options"), "", authDenied, authz.ReasonNoCredential},
		{"OPTIONS without Origin in allow mode", config.OnMissingAllow, false, nil, with(preflight, "origin", "", "authorization", "Bearer "+forgedJWT), "", authRemoved, authz.ReasonAllowMissing},
		{"allow, no credential, forged Authorization", config.OnMissingAllow, false, nil, forged, "", authRemoved, authz.ReasonAllowMissing},
		{"allow, no credential at all", config.OnMissingAllow, false, nil, nil, "", authRemoved, authz.ReasonAllowMissing},
		{"allow, invalid cookie", config.OnMissingAllow, false, nil, forged, "bad-cookie", authRemoved, authz.ReasonAllowMissing},
		{"allow, invalid bearer session token", config.OnMissingAllow, false, nil, nil, "bad-token", authRemoved, authz.ReasonAllowMissing},
		{"allow, signed JWT of a revoked session", config.OnMissingAllow, false, nil, nil, "revoked-jwt", authRemoved, authz.ReasonAllowMissing},
		{"route allow over deny", config.OnMissingDeny, false, map[string]string{"on_missing": "allow"}, forged, "", authRemoved, authz.ReasonAllowMissing},
		{"allow with the opt-out, no credential", config.OnMissingAllow, true, nil, forged, "", authUntouched, authz.ReasonAllowMissing},
		{"allow with the opt-out, invalid cookie", config.OnMissingAllow, true, nil, forged, "bad-cookie", authUntouched, authz.ReasonAllowMissing},
		{"route allow with the opt-out", config.OnMissingDeny, true, map[string]string{"on_missing": "allow"}, forged, "", authUntouched, authz.ReasonAllowMissing},
		{"deny with the opt-out is still denied", config.OnMissingDeny, true, nil, forged, "", authDenied, authz.ReasonNoCredential},
		{"session cookie over a forged Authorization", config.OnMissingDeny, false, nil, forged, "cookie", authSet, authz.ReasonFresh},
		{"session token in allow mode", config.OnMissingAllow, false, nil, forged, "token", authSet, authz.ReasonFresh},
		{"session with the opt-out is overwritten", config.OnMissingAllow, true, nil, forged, "cookie", authSet, authz.ReasonFresh},
		{"preflight with a session cookie", config.OnMissingDeny, false, nil, with(preflight, "authorization", "Bearer "+forgedJWT), "cookie", authSet, authz.ReasonFresh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &reasons{}
			e := newEnv(t, func(o *authz.Options) {
				o.OnMissing, o.PassClientAuthorization, o.Observer = tt.mode, tt.pass, obs
			})
			s := e.ory.NewSession()
			h := with(tt.headers)
			for k, v := range h {
				if v == "" {
					delete(h, k) // an empty value stands for a header left out
				}
			}
			switch tt.cred {
			case "cookie":
				h["cookie"] = "theme=dark; " + s.CookiePair()
			case "token":
				h["x-session-token"] = s.Token
			case "bad-cookie":
				h["cookie"] = fakeory.CookieName + "=not-a-session"
			case "bad-token":
				h["authorization"] = "Bearer ory_st_not-a-session"
			case "revoked-jwt":
				jwt, err := e.ory.Mint(s, "mesh")
				if err != nil {
					t.Fatal(err)
				}
				e.ory.Revoke(s)
				h["authorization"] = "Bearer " + jwt
			}
			for i, enc := range []struct {
				name string
				r    *authv3.CheckRequest
			}{{"headers", req(h, tt.ext)}, {"header_map", asRaw(req(h, tt.ext))}} {
				t.Run(enc.name, func(t *testing.T) {
					resp := mustCheck(t, e, enc.r)
					assertAuthOutcome(t, e, resp, tt.want, s)
					want := tt.reason
					if want == authz.ReasonFresh && i > 0 {
						want = authz.ReasonCached // both encodings are one credential
					}
					if got := obs.last(); got != want {
						t.Errorf("reason = %v, want %v", got, want)
					}
				})
			}
			if tt.cred == "" && e.ory.Calls() != 0 {
				t.Errorf("Ory calls = %d for a request without a credential, want 0", e.ory.Calls())
			}
		})
	}
}

// assertAuthOutcome asserts what resp does to the upstream's Authorization.
func assertAuthOutcome(t *testing.T, e *env, resp *authv3.CheckResponse, want authOutcome, s *fakeory.Session) {
	t.Helper()
	if want == authDenied {
		deniedStatus(t, resp, codes.Unauthenticated, 401)
		return
	}
	if code := codes.Code(resp.GetStatus().GetCode()); code != codes.OK {
		t.Fatalf("status = %v, want OK", code)
	}
	ok := resp.GetOkResponse()
	removes := slices.ContainsFunc(ok.GetHeadersToRemove(), func(h string) bool { return strings.EqualFold(h, "authorization") })
	switch want {
	case authSet:
		// bearerJWT also fails on authorization in headers_to_remove,
		// which Envoy runs after the sets: it would drop our JWT.
		if c := claimsOf(t, e.ory, checktest.BearerJWT(t, resp)); c["sub"] != s.IdentityID {
			t.Errorf("sub = %v, want %s", c["sub"], s.IdentityID)
		}
	case authRemoved:
		if len(ok.GetHeaders()) != 0 {
			t.Errorf("headers = %v, want none set", ok.GetHeaders())
		}
		if !removes {
			t.Errorf("headers_to_remove = %q, want authorization: the client's own would reach the upstream", ok.GetHeadersToRemove())
		}
	case authUntouched:
		if len(ok.GetHeaders()) != 0 || len(ok.GetHeadersToRemove()) != 0 {
			t.Errorf("ok_response = %v, want no mutation (the opt-out)", ok)
		}
	}
	if want != authSet && len(ok.GetResponseHeadersToAdd()) != 0 {
		t.Errorf("response_headers_to_add = %v, want none without a session", ok.GetResponseHeadersToAdd())
	}
}

// asRaw turns r into Envoy's encode_raw_headers form: every header in
// header_map (sorted, for a stable order), the headers map empty.
func asRaw(r *authv3.CheckRequest) *authv3.CheckRequest {
	r = proto.Clone(r).(*authv3.CheckRequest)
	h := r.GetAttributes().GetRequest().GetHttp()
	keys := make([]string, 0, len(h.GetHeaders()))
	for k := range h.GetHeaders() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var hm []*corev3.HeaderValue
	for _, k := range keys {
		hm = append(hm, &corev3.HeaderValue{Key: k, RawValue: []byte(h.GetHeaders()[k])})
	}
	h.Headers, h.HeaderMap = nil, &corev3.HeaderMap{Headers: hm}
	return r
}
