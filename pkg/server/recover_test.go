package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/metrics"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// panickingAuthz panics on a request with a cookie, with a panic value that
// holds the cookie (as a careless fmt.Errorf would), or with a runtime error
// on x-panic: index; it answers OK otherwise.
type panickingAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (panickingAuthz) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := r.GetAttributes().GetRequest().GetHttp().GetHeaders()
	if c := h["cookie"]; c != "" {
		panic(fmt.Errorf("cannot read cookie %q", c))
	}
	if h["x-panic"] == "index" {
		var none []int
		_ = none[len(h)]
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

// panickingAdmin panics in InvalidateSession with the id as the panic value.
type panickingAdmin struct {
	adminv1.UnimplementedAdminServer
}

func (panickingAdmin) InvalidateSession(_ context.Context, r *adminv1.InvalidateSessionRequest) (*adminv1.InvalidateSessionResponse, error) {
	panic("no such session " + r.GetSessionId())
}

func (panickingAdmin) Stats(context.Context, *adminv1.StatsRequest) (*adminv1.StatsResponse, error) {
	return &adminv1.StatsResponse{}, nil
}

// panicStream is a streaming service that panics with the first message it
// receives; the admin API has no stream, and the stream interceptor must
// recover too.
var panicStream = grpc.ServiceDesc{
	ServiceName: "test.Panic",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Stream", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			var m wrapperspb.StringValue
			if err := stream.RecvMsg(&m); err != nil {
				return err
			}
			panic(m.GetValue())
		},
	}},
}

// TestPanicRecovery: a panic in a handler, on the ext_authz server or the
// admin server, unary or streaming, becomes gRPC Internal for that call
// alone; the server answers the next call on the same connection; the panic
// is counted in ory_ext_authz_grpc_panics_total{server} and logged with the
// method, the panic value's type and a stack, never with the request or a
// panic value that may hold it.
func TestPanicRecovery(t *testing.T) {
	secret := "ory_kratos_session=MTc" + strings.Repeat("5ecret", 8)
	m := metrics.New()
	log, logs := logcapture.Logger(t, func() []string { return []string{secret} })
	addrs := servertest.Start(t, server.Options{
		Authz: panickingAuthz{}, Logger: log, Metrics: m.Handler(), GRPCOptions: m.GRPCServerOptions(), Panics: m,
		RegisterAdmin: func(gs *grpc.Server) {
			adminv1.RegisterAdminServer(gs, panickingAdmin{})
			gs.RegisterService(&panicStream, nil)
		},
	})
	authz := authv3.NewAuthorizationClient(servertest.Dial(t, addrs.GRPC))
	adminConn := servertest.Dial(t, addrs.Admin)
	admin := adminv1.NewAdminClient(adminConn)
	check := func(ctx context.Context, headers map[string]string) error {
		_, err := authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: headers},
		}}})
		return err
	}
	tests := []struct {
		name, server, method string
		panic                func(ctx context.Context) error
		next                 func(ctx context.Context) error
		// wantType is the panic value's type in the log; wantValue, when
		// set, is in the log too (a runtime error carries no request data).
		wantType, wantValue string
	}{
		{
			"ext_authz unary, an error holding the cookie", "ext_authz", "/envoy.service.auth.v3.Authorization/Check",
			func(ctx context.Context) error { return check(ctx, map[string]string{"cookie": secret}) },
			func(ctx context.Context) error { return check(ctx, nil) },
			"*errors.errorString", "",
		},
		{
			"ext_authz unary, a runtime error", "ext_authz", "/envoy.service.auth.v3.Authorization/Check",
			func(ctx context.Context) error { return check(ctx, map[string]string{"x-panic": "index"}) },
			func(ctx context.Context) error { return check(ctx, nil) },
			"runtime.boundsError", "runtime error: index out of range [1] with length 0",
		},
		{
			"admin unary, a string holding the id", "admin", "/ory_ext_authz.admin.v1.Admin/InvalidateSession",
			func(ctx context.Context) error {
				_, err := admin.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: secret})
				return err
			},
			func(ctx context.Context) error { _, err := admin.Stats(ctx, &adminv1.StatsRequest{}); return err },
			"string", "",
		},
		{
			"admin stream, a string holding the message", "admin", "/test.Panic/Stream",
			func(ctx context.Context) error {
				cs, err := adminConn.NewStream(ctx, &panicStream.Streams[0], "/test.Panic/Stream")
				if err != nil {
					return err
				}
				if err := cs.SendMsg(wrapperspb.String(secret)); err != nil {
					return err
				}
				_ = cs.CloseSend()
				return cs.RecvMsg(&wrapperspb.StringValue{})
			},
			func(ctx context.Context) error { _, err := admin.Stats(ctx, &adminv1.StatsRequest{}); return err },
			"string", "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := panics(t, addrs.HTTP, tt.server)
			err := tt.panic(callCtx(t))
			if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "5ecret") {
				t.Fatalf("the panicking call: %v, want Internal without the request in it", err)
			}
			if err := tt.next(callCtx(t)); err != nil {
				t.Fatalf("the next call on the same connection: %v", err)
			}
			if got := panics(t, addrs.HTTP, tt.server); got != before+1 {
				t.Errorf("ory_ext_authz_grpc_panics_total{server=%q} = %v, want %v", tt.server, got, before+1)
			}
			rec := lastPanicLog(t, logs.String())
			if rec["level"] != "ERROR" || rec["server"] != tt.server || rec["method"] != tt.method || rec["panic_type"] != tt.wantType {
				t.Errorf("log %v, want ERROR with server %s, method %s, panic_type %s", rec, tt.server, tt.method, tt.wantType)
			}
			if v, _ := rec["panic"].(string); v != tt.wantValue {
				t.Errorf("log panic = %q, want %q", v, tt.wantValue)
			}
			if s, _ := rec["stack"].(string); !strings.Contains(s, "server_test.") {
				t.Errorf("log stack does not reach the handler:\n%s", s)
			}
		})
	}
	// The gRPC metrics saw the Internal answers: recovery sits inside the
	// callers' interceptors.
	if got := metric(t, addrs.HTTP, "grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "Internal"}); got != 2 {
		t.Errorf("grpc_server_handled_total{Check, Internal} = %v, want 2", got)
	}
	if strings.Contains(logs.String(), "5ecret") {
		t.Error("the log holds a part of the request's cookie")
	}
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	t.Cleanup(cancel)
	return ctx
}

func panics(t *testing.T, httpAddr, server string) float64 {
	t.Helper()
	return metric(t, httpAddr, "ory_ext_authz_grpc_panics_total", map[string]string{"server": server})
}

// metric scrapes /metrics and returns the counter name{labels}.
func metric(t *testing.T, httpAddr, name string, labels map[string]string) float64 {
	t.Helper()
	return servertest.Metrics(t, httpAddr).Value(t, name, labels)
}

// lastPanicLog returns the last log record about a recovered panic.
func lastPanicLog(t *testing.T, logs string) map[string]any {
	t.Helper()
	var last map[string]any
	for _, rec := range logcapture.Records(t, logs) {
		if _, ok := rec["panic_type"]; ok {
			last = rec
		}
	}
	if last == nil {
		t.Fatalf("no panic logged in:\n%s", logs)
	}
	return last
}

// TestPanicLogIsRateLimited: a panic that every request can trigger counts
// every time, but does not write a stack per request: the log gets a burst
// of 5 and then one a second.
func TestPanicLogIsRateLimited(t *testing.T) {
	const calls = 30
	m := metrics.New()
	log, logs := logcapture.Logger(t, func() []string { return nil })
	addrs := servertest.Start(t, server.Options{Authz: panickingAuthz{}, Logger: log, Metrics: m.Handler(), Panics: m})
	authz := authv3.NewAuthorizationClient(servertest.Dial(t, addrs.GRPC))
	start := time.Now()
	for range calls {
		_, err := authz.Check(callCtx(t), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-panic": "index"}},
		}}})
		if status.Code(err) != codes.Internal {
			t.Fatalf("Check: %v, want Internal", err)
		}
	}
	// Not a timing assertion: the limit allowed is derived from how long
	// the calls took, however slow the machine.
	allowed := 5 + int(time.Since(start).Seconds()) + 1
	if got := panics(t, addrs.HTTP, "ext_authz"); got != calls {
		t.Errorf("ory_ext_authz_grpc_panics_total = %v, want %d", got, calls)
	}
	if n := strings.Count(logs.String(), `"panic_type"`); n == 0 || n > allowed || n >= calls {
		t.Errorf("%d panic log lines for %d panics, want 1 to %d", n, calls, min(allowed, calls-1))
	}
}
