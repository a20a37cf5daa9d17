package checkcli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"
)

// Credentials the tool sends; none of them may ever show up in its output.
const (
	sessionCookieValue = "MTcwMDAwMDAwMHxTRUNSRVQtQ09PS0lFLVZBTFVFfA"
	testCookie         = "ory_kratos_session=" + sessionCookieValue + "; theme=dark"
	testSessionToken   = "ory_st_SECRETSESSIONTOKEN0123456789"
	refreshedCookie    = "REFRESHEDSESSIONCOOKIEVALUE0123456789"
	testSubject        = "9f425a8d-7efc-4768-8f23-7647a74fdf13"
)

// fixedNow pins the clock so that the remaining validity is exact.
var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// authServer is a real ext_authz server on loopback that records the request
// and answers as the case says.
type authServer struct {
	authv3.UnimplementedAuthorizationServer
	answer func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)

	mu    sync.Mutex
	got   *authv3.CheckRequest
	calls int
}

func (s *authServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.got = req
	s.calls++
	s.mu.Unlock()
	return s.answer(ctx, req)
}

func (s *authServer) request() (*authv3.CheckRequest, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got, s.calls
}

// startServer serves s on 127.0.0.1:0 and returns its address. The listener
// is bound before Serve, so the address is ready at once.
func startServer(t *testing.T, s *authServer, opts ...grpc.ServerOption) string {
	t.Helper()
	lis := servertest.Listen(t)
	srv := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// signJWT signs claims with a fresh P-256 key, as Ory's tokenizer does with ES256.
func signJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "test-key-1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func validClaims() map[string]any {
	return map[string]any{
		"sub":             testSubject,
		"sid":             "5b0b4b0e-3f1c-4a0f-9d5e-2f0c7f9f1a11",
		"iss":             "https://auth.example.com",
		"iat":             fixedNow.Unix(),
		"nbf":             fixedNow.Unix(),
		"exp":             fixedNow.Add(10 * time.Minute).Unix(),
		"jti":             "b4c1d1b6-0a35-4bb5-9c0c-7a4f0b8a2d55",
		"metadata_public": map[string]any{"plan": "pro"},
	}
}

func hvo(key, value string, appendField *bool, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: action}
	if appendField != nil {
		// Deprecated, but what ory-ext-authz sets (with append_action) for Envoy 1.37.
		o.Append = wrapperspb.Bool(*appendField) //nolint:staticcheck // deliberate
	}
	return o
}

var pfalse = new(bool)

func okAnswer(ok *authv3.OkHttpResponse, md *structpb.Struct) func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status:          &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: md,
		}, nil
	}
}

func deniedAnswer(code codes.Code, msg string, d *authv3.DeniedHttpResponse) func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		resp := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code), Message: msg}}
		if d != nil {
			resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: d}
		}
		return resp, nil
	}
}

func runAt(ctx context.Context, args []string) (exit int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	exit = run(ctx, args, &out, &errOut, func() time.Time { return fixedNow })
	return exit, out.String(), errOut.String()
}

func TestRun(t *testing.T) {
	goodJWT := signJWT(t, validClaims())
	expired := validClaims()
	expired["exp"] = fixedNow.Add(-90 * time.Second).Unix()
	expiredJWT := signJWT(t, expired)
	md, err := structpb.NewStruct(map[string]any{"ory": map[string]any{"subject": testSubject, "aal": "aal1"}})
	if err != nil {
		t.Fatal(err)
	}

	// The compact JWT and each of its segments must stay out of the report.
	jwtParts := append([]string{goodJWT}, strings.Split(goodJWT, ".")...)
	secrets := []string{testCookie, sessionCookieValue, testSessionToken, refreshedCookie}

	cases := []struct {
		name     string
		args     []string // "ADDR" is replaced by the server address
		answer   func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
		wantExit int
		checkReq func(t *testing.T, req *authv3.CheckRequest)
		wantOut  []string
		notOut   []string
	}{
		{
			name: "allowed with cookie, user headers and context extensions",
			args: []string{
				"--addr", "ADDR", "--cookie", testCookie,
				"--header", "X-Forwarded-For: 203.0.113.7",
				"--header", "X-Multi: a", "-header=x-multi:b",
				"-method", "POST", "--path=/api/items?limit=5&q=x", "--host", "app.example.com:8443",
				"--scheme", "https", "--context", "tokenize_as=api", "--context", "route=items=v2",
			},
			answer: okAnswer(&authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					hvo("authorization", "Bearer "+goodJWT, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					hvo("x-user-id", testSubject, nil, corev3.HeaderValueOption_ADD_IF_ABSENT),
				},
				HeadersToRemove: []string{"x-session-token"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{
					hvo("set-cookie", "ory_kratos_session="+refreshedCookie+"; Path=/; HttpOnly; SameSite=Lax", nil,
						corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
				},
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "tenant", Value: "acme"}},
				QueryParametersToRemove: []string{"debug"},
			}, md),
			wantExit: exitAllowed,
			checkReq: func(t *testing.T, req *authv3.CheckRequest) {
				h := req.GetAttributes().GetRequest().GetHttp()
				want := map[string]string{
					":method":           "POST",
					":path":             "/api/items?limit=5&q=x",
					":authority":        "app.example.com:8443",
					":scheme":           "https",
					"cookie":            testCookie, // exactly as given
					"x-forwarded-for":   "203.0.113.7",
					"x-multi":           "a,b", // joined as Envoy joins repeated lines
					"x-forwarded-proto": "https",
					"x-request-id":      h.GetId(),
				}
				if !maps.Equal(h.GetHeaders(), want) {
					t.Errorf("headers = %v\nwant      %v", h.GetHeaders(), want)
				}
				if h.GetHeaderMap() != nil {
					t.Errorf("header_map = %v, want nil without -raw-headers", h.GetHeaderMap())
				}
				if h.GetMethod() != "POST" || h.GetPath() != "/api/items?limit=5&q=x" || h.GetQuery() != "" ||
					h.GetHost() != "app.example.com:8443" || h.GetScheme() != "https" || h.GetProtocol() != "HTTP/1.1" {
					t.Errorf("http attributes = method %q path %q query %q host %q scheme %q protocol %q",
						h.GetMethod(), h.GetPath(), h.GetQuery(), h.GetHost(), h.GetScheme(), h.GetProtocol())
				}
				if len(h.GetId()) != 36 {
					t.Errorf("id = %q, want a UUID", h.GetId())
				}
				wantExt := map[string]string{"tokenize_as": "api", "route": "items=v2"}
				if got := req.GetAttributes().GetContextExtensions(); !maps.Equal(got, wantExt) {
					t.Errorf("context_extensions = %v, want %v", got, wantExt)
				}
				for name, p := range map[string]*authv3.AttributeContext_Peer{
					"source": req.GetAttributes().GetSource(), "destination": req.GetAttributes().GetDestination(),
				} {
					sa := p.GetAddress().GetSocketAddress()
					if ip := net.ParseIP(sa.GetAddress()); ip == nil || !ip.IsLoopback() || sa.GetPortValue() == 0 {
						t.Errorf("%s = %v, want a loopback socket address", name, sa)
					}
				}
				if req.GetAttributes().GetRequest().GetTime() == nil {
					t.Error("request.time not set")
				}
			},
			wantOut: []string{
				"gRPC status: OK",
				"CheckResponse status: OK (0)",
				"decision: ALLOWED (exit 0)",
				"http:    POST https://app.example.com:8443/api/items?limit=5&q=x HTTP/1.1",
				"cookie:  2 cookie(s): ory_kratos_session, theme; values not shown",
				"route=items=v2",
				"authorization: Bearer <JWT, ",
				"append=false append_action=OVERWRITE_IF_EXISTS_OR_ADD -> Envoy applies OVERWRITE_IF_EXISTS_OR_ADD (from append)",
				"x-user-id: " + testSubject,
				"append=unset append_action=ADD_IF_ABSENT -> Envoy applies ADD_IF_ABSENT",
				"headers_to_remove (run after the sets): x-session-token",
				"set-cookie: ory_kratos_session=<redacted, 37 bytes>; Path=/; HttpOnly; SameSite=Lax",
				"tenant=acme",
				"query_parameters_to_remove: debug",
				`"subject": "` + testSubject + `"`,
				"signature not verified",
				`"alg": "ES256"`,
				`"kid": "test-key-1"`,
				`"sub": "` + testSubject + `"`,
				`"plan": "pro"`,
				"exp: 2030-01-02T03:14:05Z (valid for another 10m0s)",
				"iat: 2030-01-02T03:04:05Z (now)",
				"lifetime (exp - iat): 10m0s",
			},
			notOut: append(slices.Clone(secrets), jwtParts...),
		},
		{
			name: "allowed with session token in raw header mode",
			args: []string{
				"-addr=ADDR", "-session-token", testSessionToken, "-raw-headers",
				"-header", "Cookie: a=1", "-header", "cookie: b=2", "-header", "X-Request-Id: req-42",
			},
			// append and append_action unset: Envoy appends, which the tool must call out.
			answer: okAnswer(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "authorization", Value: "Bearer " + goodJWT}},
			}}, nil),
			wantExit: exitAllowed,
			checkReq: func(t *testing.T, req *authv3.CheckRequest) {
				h := req.GetAttributes().GetRequest().GetHttp()
				if len(h.GetHeaders()) != 0 {
					t.Errorf("headers = %v, want empty in raw mode", h.GetHeaders())
				}
				type kv struct{ k, v string }
				var got []kv
				for _, e := range h.GetHeaderMap().GetHeaders() {
					if e.GetValue() != "" {
						t.Errorf("header_map %q has value %q, want raw_value only", e.GetKey(), e.GetValue())
					}
					got = append(got, kv{e.GetKey(), string(e.GetRawValue())})
				}
				want := []kv{
					{":authority", "localhost"}, {":path", "/"}, {":method", "GET"}, {":scheme", "http"},
					{"x-session-token", testSessionToken},
					{"cookie", "a=1"}, {"cookie", "b=2"}, // not merged
					{"x-request-id", "req-42"},
					{"x-forwarded-proto", "http"},
				}
				if !slices.Equal(got, want) {
					t.Errorf("header_map = %v\nwant        %v", got, want)
				}
				if h.GetId() != "req-42" {
					t.Errorf("id = %q, want the given x-request-id", h.GetId())
				}
				if req.GetAttributes().GetContextExtensions() != nil {
					t.Errorf("context_extensions = %v, want none", req.GetAttributes().GetContextExtensions())
				}
			},
			wantOut: []string{
				"headers: in header_map with raw_value",
				"session token: sent as x-session-token (35 bytes); value not shown",
				"append=unset append_action=APPEND_IF_EXISTS_OR_ADD -> Envoy applies APPEND_IF_EXISTS_OR_ADD",
				"a client-sent Authorization header can reach the upstream",
				`"sub": "` + testSubject + `"`,
				"dynamic_metadata: none",
			},
			notOut: append(slices.Clone(secrets), jwtParts...),
		},
		{
			name:     "print-jwt shows the compact JWT",
			args:     []string{"--addr", "ADDR", "--cookie", testCookie, "--print-jwt"},
			answer:   okAnswer(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hvo("authorization", "Bearer "+goodJWT, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}}, nil),
			wantExit: exitAllowed,
			wantOut:  []string{"authorization: Bearer " + goodJWT, `"sub": "` + testSubject + `"`},
			notOut:   secrets,
		},
		{
			// What the server answers without a session in allow mode or
			// to a preflight: no JWT, the client's Authorization removed.
			name:     "authorization removed without a JWT is no warning",
			args:     []string{"--addr", "ADDR"},
			answer:   okAnswer(&authv3.OkHttpResponse{HeadersToRemove: []string{"authorization"}}, nil),
			wantExit: exitAllowed,
			wantOut:  []string{"headers_to_remove (run after the sets): authorization"},
			notOut:   []string{"removes the JWT", "warnings"},
		},
		{
			name: "authorization set and removed",
			args: []string{"--addr", "ADDR", "--cookie", testCookie},
			answer: okAnswer(&authv3.OkHttpResponse{
				Headers:         []*corev3.HeaderValueOption{hvo("authorization", "Bearer "+goodJWT, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
				HeadersToRemove: []string{"Authorization"},
			}, nil),
			wantExit: exitAllowed,
			wantOut:  []string{"headers_to_remove has authorization: it runs after the sets and removes the JWT"},
			notOut:   secrets,
		},
		{
			name:     "expired JWT",
			args:     []string{"--addr", "ADDR", "--cookie", testCookie},
			answer:   okAnswer(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hvo("authorization", "Bearer "+expiredJWT, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}}, nil),
			wantExit: exitAllowed,
			wantOut:  []string{"exp: 2030-01-02T03:02:35Z (EXPIRED 1m30s ago)", "the JWT has already expired"},
			notOut:   append(slices.Clone(secrets), expiredJWT),
		},
		{
			name: "authorization that is not a JWT",
			args: []string{"--addr", "ADDR", "--session-token", testSessionToken},
			// A server passing the session token through instead of a JWT.
			answer:   okAnswer(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hvo("authorization", "Bearer "+testSessionToken, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}}, nil),
			wantExit: exitAllowed,
			wantOut:  []string{"authorization: Bearer <redacted, 35 bytes: not a JWT: a compact JWT has 3 dot-separated parts, this value has 1>"},
			notOut:   append(slices.Clone(secrets), "signature not verified"),
		},
		{
			name: "denied 401 with a body",
			args: []string{"--addr", "ADDR", "--cookie", testCookie},
			answer: deniedAnswer(codes.Unauthenticated, "no valid Ory session", &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{
					hvo("content-type", "application/json", pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				},
				Body: `{"error":{"code":401,"status":"Unauthorized"}}`,
			}),
			wantExit: exitDenied,
			wantOut: []string{
				"gRPC status: OK",
				"CheckResponse status: UNAUTHENTICATED (16): no valid Ory session",
				"decision: DENIED (exit 1)",
				"HTTP status: 401 Unauthorized",
				"content-type: application/json",
				"body (46 bytes):\n    {\"error\":{\"code\":401,\"status\":\"Unauthorized\"}}",
			},
			notOut: secrets,
		},
		{
			name: "denied 403",
			args: []string{"--addr", "ADDR", "--session-token", testSessionToken},
			answer: deniedAnswer(codes.PermissionDenied, "aal2 required", &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
				Body:   `{"error":{"id":"session_aal2_required"}}`,
			}),
			wantExit: exitDenied,
			wantOut:  []string{"CheckResponse status: PERMISSION_DENIED (7): aal2 required", "HTTP status: 403 Forbidden", "session_aal2_required"},
			notOut:   secrets,
		},
		{
			name:     "denied without denied_response",
			args:     []string{"--addr", "ADDR"},
			answer:   deniedAnswer(codes.Unauthenticated, "", nil),
			wantExit: exitDenied,
			wantOut:  []string{"denied_response: none (Envoy answers 403 Forbidden with an empty body)"},
		},
		{
			name: "credentials echoed by the server are redacted",
			args: []string{"--addr", "ADDR", "--cookie", testCookie, "--session-token", testSessionToken},
			answer: deniedAnswer(codes.Unauthenticated, "bad token "+testSessionToken, &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Body:   "cookie was " + testCookie + " and value " + sessionCookieValue,
			}),
			wantExit: exitDenied,
			wantOut:  []string{"bad token [redacted]", "cookie was [redacted] and value [redacted]"},
			notOut:   secrets,
		},
		{
			name: "error_response is an error",
			args: []string{"--addr", "ADDR"},
			answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{
					Status:       &rpcstatus.Status{Code: int32(codes.Unavailable)},
					HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "try later"}},
				}, nil
			},
			wantExit: exitError,
			wantOut:  []string{"decision: ERROR (exit 2): error_response", "HTTP status: not set (Envoy answers status_on_error (403 by default))", "try later"},
		},
		{
			name: "gRPC error Unavailable",
			args: []string{"--addr", "ADDR", "--cookie", testCookie},
			answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, status.Error(codes.Unavailable, "ory unreachable")
			},
			wantExit: exitError,
			wantOut:  []string{"gRPC status: Unavailable: ory unreachable", "decision: ERROR (exit 2)"},
			notOut:   secrets,
		},
		{
			name: "timeout",
			args: []string{"--addr", "ADDR", "--timeout", "100ms"},
			answer: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				<-ctx.Done() // never answer; the client deadline ends the call
				return nil, ctx.Err()
			},
			wantExit: exitError,
			wantOut:  []string{"gRPC status: DeadlineExceeded", "no answer within -timeout 100ms"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := &authServer{answer: tc.answer}
			addr := startServer(t, srv)
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "ADDR", addr)
			}

			exit, stdout, stderr := runAt(t.Context(), args)
			t.Logf("stdout:\n%s", stdout)
			if exit != tc.wantExit {
				t.Errorf("exit = %d, want %d; stderr: %s", exit, tc.wantExit, stderr)
			}
			req, calls := srv.request()
			if calls != 1 {
				t.Fatalf("server got %d calls, want 1", calls)
			}
			assertLowerCaseKeys(t, req)
			if tc.checkReq != nil {
				tc.checkReq(t, req)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q", w)
				}
			}
			for _, n := range tc.notOut {
				if strings.Contains(stdout, n) || strings.Contains(stderr, n) {
					t.Errorf("output contains %q", n)
				}
			}
		})
	}
}

// assertLowerCaseKeys checks the one invariant of every Envoy CheckRequest
// that servers rely on when they look headers up.
func assertLowerCaseKeys(t *testing.T, req *authv3.CheckRequest) {
	t.Helper()
	h := req.GetAttributes().GetRequest().GetHttp()
	for k := range h.GetHeaders() {
		if k != strings.ToLower(k) {
			t.Errorf("headers key %q is not lower-case", k)
		}
	}
	for _, e := range h.GetHeaderMap().GetHeaders() {
		if e.GetKey() != strings.ToLower(e.GetKey()) {
			t.Errorf("header_map key %q is not lower-case", e.GetKey())
		}
	}
}

func TestRunBadFlags(t *testing.T) {
	srv := &authServer{answer: okAnswer(nil, nil)}
	addr := startServer(t, srv)
	cases := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"positional argument", []string{"extra"}, `unexpected argument "extra"`},
		{"flag after positional argument", []string{"extra", "--cookie", "a=b"}, `unexpected argument "extra"`},
		{"header without colon", []string{"--header", "x-thing"}, "-header: want name:value"},
		{"pseudo-header", []string{"--header", ":path:/x"}, "pseudo-headers are set by"},
		{"host header", []string{"--header", "Host: x"}, "use --host"},
		{"bad header name", []string{"--header", "bad name: x"}, "not an HTTP token"},
		{"header value with CR hides the value", []string{"--header", "authorization: Bearer " + testSessionToken + "\r"}, `header "authorization": value contains a control character`},
		{"cookie without =", []string{"--cookie", testSessionToken}, "-cookie: want a Cookie header value"},
		{"context without =", []string{"--context", "route"}, "want key=value"},
		{"context twice", []string{"--context", "a=1", "--context", "a=2"}, `key "a" given twice`},
		{"zero timeout", []string{"--timeout", "0s"}, "-timeout 0s: must be positive"},
		{"bad timeout", []string{"--timeout", "soon"}, "invalid value"},
		{"bad scheme", []string{"--scheme", "ftp"}, "want http or https"},
		{"relative path", []string{"--path", "api"}, "must start with /"},
		{"bad method", []string{"--method", "GE T"}, "not an HTTP method token"},
		{"cert without key", []string{"--tls-cert", "c.pem"}, "give both for mTLS"},
		{"missing CA file", []string{"--tls-ca", filepath.Join(t.TempDir(), "nope.pem")}, "-tls-ca:"},
		{"empty addr", []string{"--addr", ""}, "-addr: must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--addr", addr}, tc.args...)
			exit, stdout, stderr := runAt(t.Context(), args)
			if exit != exitError {
				t.Errorf("exit = %d, want %d", exit, exitError)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tc.want)
			}
			if strings.Contains(stderr, testSessionToken) {
				t.Errorf("stderr echoes the credential: %q", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
	if _, calls := srv.request(); calls != 0 {
		t.Errorf("server got %d calls, want none for bad flags", calls)
	}
}

func TestRunHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		t.Run(arg, func(t *testing.T) {
			exit, stdout, stderr := runAt(t.Context(), []string{arg})
			if exit != 0 || stderr != "" {
				t.Errorf("exit = %d, stderr = %q; want 0 and nothing", exit, stderr)
			}
			for _, w := range []string{"Usage: ory-ext-authz check", "-cookie value", "-raw-headers", "Exit codes:", `(default "127.0.0.1:9001")`} {
				if !strings.Contains(stdout, w) {
					t.Errorf("help lacks %q", w)
				}
			}
		})
	}
}

func TestRunConnectionRefused(t *testing.T) {
	lis := servertest.Listen(t)
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	exit, stdout, _ := runAt(t.Context(), []string{"--addr", addr, "--cookie", testCookie, "--timeout", "2s"})
	t.Logf("stdout:\n%s", stdout)
	if exit != exitError {
		t.Errorf("exit = %d, want %d", exit, exitError)
	}
	for _, w := range []string{"gRPC status: Unavailable", "connection refused", "could not connect", "decision: ERROR (exit 2)"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stdout, sessionCookieValue) {
		t.Error("stdout contains the cookie")
	}
}

func TestRunTLS(t *testing.T) {
	pki := newTestPKI(t)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientCAs:    pki.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	srv := &authServer{answer: okAnswer(&authv3.OkHttpResponse{}, nil)}
	addr := startServer(t, srv, grpc.Creds(credentials.NewTLS(serverTLS)))

	cases := []struct {
		name     string
		args     []string
		wantExit int
		wantOut  string
	}{
		{"mTLS", []string{"--tls-ca", pki.caFile, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey, "--tls-server-name", "localhost"}, exitAllowed, "(mTLS,"},
		{"wrong server name", []string{"--tls-ca", pki.caFile, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey, "--tls-server-name", "other.test"}, exitError, "Unavailable"},
		// The server rejects the handshake; how the client words it varies with timing.
		{"no client certificate", []string{"--tls-ca", pki.caFile, "--tls-server-name", "localhost"}, exitError, "decision: ERROR"},
		{"plaintext to a TLS server", nil, exitError, "Unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--addr", addr, "--timeout", "3s"}, tc.args...)
			exit, stdout, stderr := runAt(t.Context(), args)
			t.Logf("stdout:\n%s", stdout)
			if exit != tc.wantExit {
				t.Errorf("exit = %d, want %d\nstderr: %s", exit, tc.wantExit, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, stdout)
			}
		})
	}
}

func TestDecodeJWTRejects(t *testing.T) {
	unsigned := "eyJhbGciOiJub25lIn0." + "eyJzdWIiOiJ4In0" + "."
	cases := []struct {
		name, value, want string
	}{
		{"opaque token", testSessionToken, "3 dot-separated parts, this value has 1"},
		{"two parts", "a.b", "this value has 2"},
		{"JWE", "a.b.c.d.e", "encrypted JWT (JWE)"},
		{"garbage segments", "!!.??.**", "not a signed JWT"},
		{"alg none", unsigned, "not a signed JWT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeJWT(tc.value)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeJWT error = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.value) {
				t.Errorf("error %q contains the value", err)
			}
		})
	}
}

// testPKI is a throwaway CA with a server certificate (for 127.0.0.1 and
// localhost) and a client certificate, on disk because the tool reads PEM
// files.
type testPKI struct {
	pool                          *x509.CertPool
	server                        tls.Certificate
	caFile, clientCert, clientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "checkcli test CA")
	cliCert, cliKey := ca.Issue(t, "checkcli test", true)
	return testPKI{
		pool:       ca.Pool(),
		server:     ca.KeyPair(t, "checkcli test", false),
		caFile:     testpki.WriteFile(t, dir, "ca.pem", ca.PEM),
		clientCert: testpki.WriteFile(t, dir, "client.pem", cliCert),
		clientKey:  testpki.WriteFile(t, dir, "client-key.pem", cliKey),
	}
}

// TestReportNeverFormatsCredentials checks the report before redaction: the
// redactor is only a second line of defence against a server echoing
// secrets, so the formatting itself must never write one.
func TestReportNeverFormatsCredentials(t *testing.T) {
	goodJWT := signJWT(t, validClaims())
	o, err := parseFlags([]string{
		"--cookie", testCookie, "--session-token", testSessionToken,
		"--header", "Authorization: Bearer " + testSessionToken,
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseFlags failed: %v", err)
	}
	req := buildCheckRequest(o, "id-1", fixedNow)
	resp := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{
				hvo("authorization", "Bearer "+goodJWT, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				hvo("x-session-token", testSessionToken, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				hvo("cookie", testCookie, pfalse, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				hvo("Set-Cookie", "ory_kratos_session="+refreshedCookie+"; Path=/", nil, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			},
		}},
	}
	r := &report{o: o, now: fixedNow}
	r.printRequest(req, requestHeaders(o, "id-1"))
	if exit := r.printResult(resp, nil); exit != exitAllowed {
		t.Fatalf("exit = %d, want %d", exit, exitAllowed)
	}
	raw := r.out.String()
	for _, s := range append([]string{testCookie, sessionCookieValue, testSessionToken, refreshedCookie}, strings.Split(goodJWT, ".")...) {
		if strings.Contains(raw, s) {
			t.Errorf("unredacted report contains %q:\n%s", s, raw)
		}
	}
	if !strings.Contains(raw, `"sub": "`+testSubject+`"`) {
		t.Errorf("report lacks the decoded sub:\n%s", raw)
	}
}
