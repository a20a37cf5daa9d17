package authz

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tracing"
)

// startSpan starts the span of one Check. Its parent is the trace Envoy sent
// in the gRPC metadata (Envoy's own ext_authz span), or else the trace of the
// HTTP request (its traceparent header, if allowed_headers lets it through).
func (s *Server) startSpan(ctx context.Context, r request) (context.Context, trace.Span) {
	parent := ctx
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		parent = tracing.Propagator.Extract(ctx, mdCarrier(md))
	}
	if !trace.SpanContextFromContext(parent).IsValid() {
		parent = tracing.Propagator.Extract(ctx, headerCarrier{r.headers})
	}
	return s.tracer.Start(parent, "envoy.service.auth.v3.Authorization/Check", trace.WithSpanKind(trace.SpanKindServer))
}

// mdCarrier reads gRPC metadata as a propagation carrier.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }
func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// headerCarrier reads the request's headers (either encoding) as a
// read-only propagation carrier.
type headerCarrier struct{ h credential.Headers }

func (c headerCarrier) Get(key string) string {
	v, _ := c.h.Get(key)
	return v
}
func (headerCarrier) Set(string, string) {}
func (headerCarrier) Keys() []string     { return []string{"traceparent", "tracestate", "baggage"} }
