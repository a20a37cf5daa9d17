package authz_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

func TestTracing(t *testing.T) {
	const (
		mdTrace     = "4bf92f3577b34da6a3ce929d0e0e4736"
		headerTrace = "0af7651916cd43dd8448eb211c80319c"
	)
	traceparent := func(id string) string { return "00-" + id + "-00f067aa0ba902b7-01" }
	tests := []struct {
		name      string
		md        string // traceparent in the gRPC metadata
		header    string // traceparent in the HTTP request's headers
		wantTrace string
	}{
		{"from gRPC metadata", traceparent(mdTrace), traceparent(headerTrace), mdTrace},
		{"from the request's traceparent", "", traceparent(headerTrace), headerTrace},
		{"new trace", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			fake := fakeory.New()
			t.Cleanup(fake.Close)
			e := newEnvFull(t, fake, func(o *ory.Options) { o.Tracer = tp.Tracer("ory") }, func(o *authz.Options) { o.Tracer = tp.Tracer("authz") })
			s := fake.NewSession()
			h := map[string]string{"cookie": s.CookiePair()}
			if tt.header != "" {
				h["traceparent"] = tt.header
			}
			ctx := t.Context()
			if tt.md != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tt.md)
			}
			if _, err := e.client.Check(ctx, req(h, nil)); err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			var check, whoami *tracetest.SpanStub
			for i := range spans {
				switch spans[i].SpanKind {
				case trace.SpanKindServer:
					check = &spans[i]
				case trace.SpanKindClient:
					whoami = &spans[i]
				}
			}
			if check == nil || whoami == nil {
				t.Fatalf("spans = %d, want a Check span and an Ory span", len(spans))
			}
			if tt.wantTrace != "" && check.SpanContext.TraceID().String() != tt.wantTrace {
				t.Errorf("Check span trace = %s, want the caller's %s", check.SpanContext.TraceID(), tt.wantTrace)
			}
			if tt.wantTrace == "" && check.Parent.IsValid() {
				t.Errorf("Check span has a parent %v, want a new trace", check.Parent)
			}
			if whoami.Parent.SpanID() != check.SpanContext.SpanID() {
				t.Error("the Ory span is not a child of the Check span")
			}
			// The trace went on to Ory.
			got := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(fake.Received()[0].Header))
			sc := trace.SpanContextFromContext(got)
			if !sc.IsValid() || sc.TraceID() != check.SpanContext.TraceID() || sc.SpanID() != whoami.SpanContext.SpanID() {
				t.Errorf("Ory got traceparent %q, want the Ory span's context", fake.Received()[0].Header.Get("Traceparent"))
			}
			for _, a := range check.Attributes {
				if strings.Contains(a.Value.String(), s.Cookie) {
					t.Error("a span attribute holds the cookie")
				}
			}
		})
	}
}

// TestTracingOff: without a tracer nothing is traced and no trace header
// goes to Ory, even when the caller sends one.
func TestTracingOff(t *testing.T) {
	e := newEnv(t)
	s := e.ory.NewSession()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := e.client.Check(ctx, req(map[string]string{"cookie": s.CookiePair(), "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}, nil)); err != nil {
		t.Fatal(err)
	}
	if v := e.ory.Received()[0].Header.Get("Traceparent"); v != "" {
		t.Errorf("Ory got traceparent %q with tracing off", v)
	}
}
