// Package noop is the floor of the performance comparison: an ext_authz
// server that answers every Check with one prebuilt OK response, shaped and
// sized like the answer of a cache hit of the real server (the authorization
// header with a JWT of the same length, the same dynamic metadata), and does
// no lookup at all. What the real server costs beyond it is the cost of
// extraction, hashing and the cache.
package noop

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// Server answers every Check with Response.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	Response *authv3.CheckResponse
}

// Check returns the prebuilt response.
func (s *Server) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.Response, nil
}

// uuidLen is the length of the identity and session ids Ory hands out.
const uuidLen = 36

// Identity is what a route with identity headers adds to the real
// server's OK answer: the headers it sets (name and value, in order) and the
// identity header names it removes (headers_to_remove).
type Identity struct {
	Headers [][2]string
	Remove  []string
}

// IdentityOf is the Identity of an OK answer of the real server, as Envoy
// reads it (parsed, so that its cached part and its identity part are
// merged): every header it sets but authorization, and its
// headers_to_remove.
func IdentityOf(resp *authv3.CheckResponse) Identity {
	var id Identity
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if k := h.GetHeader().GetKey(); k != "authorization" {
			id.Headers = append(id.Headers, [2]string{k, h.GetHeader().GetValue()})
		}
	}
	id.Remove = resp.GetOkResponse().GetHeadersToRemove()
	return id
}

// Response builds the OK answer with an authorization header of "Bearer "
// and a JWT-shaped value of jwtBytes bytes, then id's headers and
// headers_to_remove, and the dynamic metadata of a cache hit.
func Response(jwtBytes int, id Identity) *authv3.CheckResponse {
	jwt := strings.Repeat("x", jwtBytes)
	hs := []*corev3.HeaderValueOption{header("authorization", "Bearer "+jwt)}
	for _, h := range id.Headers {
		hs = append(hs, header(h[0], h[1]))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         hs,
			HeadersToRemove: id.Remove,
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"identity_id": structpb.NewStringValue(strings.Repeat("0", uuidLen)),
			"session_id":  structpb.NewStringValue(strings.Repeat("0", uuidLen)),
			"aal":         structpb.NewStringValue("aal1"),
			"cached":      structpb.NewBoolValue(true),
		}},
	}
}

// header sets a header as the real server does (append false, overwrite).
func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		Append:       wrapperspb.Bool(false),
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// NewGRPCServer returns a gRPC server with the baseline registered, plus
// grpc.health.v1 so that readiness is polled the same way as for the real
// server. The keepalive options are those pkg/server uses by default.
func NewGRPCServer(jwtBytes int, id Identity) *grpc.Server {
	gs := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: server.DefaultGRPCKeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: server.DefaultGRPCMaxConnectionIdle}),
	)
	authv3.RegisterAuthorizationServer(gs, &Server{Response: Response(jwtBytes, id)})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs
}
