package server

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync/atomic"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errPanic is what the client of a panicking call gets: nothing of the
// panic, which may hold anything the handler had, the request included.
var errPanic = status.Error(codes.Internal, "internal error")

// recoverer turns a panic in a gRPC handler of one server into codes.Internal
// for that call alone, counts it and logs it, instead of ending the process
// and every check in flight.
type recoverer struct {
	server  string
	log     *slog.Logger
	panics  PanicObserver
	limit   *rate.Limiter
	dropped atomic.Uint64
}

func newRecoverer(server string, log *slog.Logger, panics PanicObserver) *recoverer {
	// A panic every request can bring (a bug an attacker found) must not
	// flood the log with stacks: a few a second get through, the metric
	// counts them all.
	return &recoverer{server: server, log: log, panics: panics, limit: rate.NewLimiter(1, 5)}
}

// options are the unary and stream interceptors. They go after the caller's
// interceptors, so they sit innermost, next to the handler: the caller's
// (metrics, tracing) see the Internal answer like any other error.
func (r *recoverer) options() []grpc.ServerOption {
	h := recovery.WithRecoveryHandlerContext(r.recovered)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(h)),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(h)),
	}
}

// recovered runs inside the deferred recover, so debug.Stack still shows the
// frames that panicked. The log line holds the method, the panic value's type
// and the stack (function names, file lines and argument words, never the
// memory they point to), not the request, and the panic value's text only
// for the runtime's own errors (nil dereference, index out of range, ...),
// which are made of type names and numbers: any other value, an error built
// with fmt.Errorf or a string, may hold a cookie or a token.
func (r *recoverer) recovered(ctx context.Context, p any) error {
	if r.panics != nil {
		r.panics.ObservePanic(r.server)
	}
	if !r.limit.Allow() {
		r.dropped.Add(1)
		return errPanic
	}
	method, _ := grpc.Method(ctx)
	attrs := []slog.Attr{
		slog.String("server", r.server),
		slog.String("method", method),
		slog.String("panic_type", fmt.Sprintf("%T", p)),
	}
	if msg, ok := runtimeError(p); ok {
		attrs = append(attrs, slog.String("panic", msg))
	}
	attrs = append(attrs, slog.String("stack", string(debug.Stack())))
	if n := r.dropped.Swap(0); n > 0 {
		attrs = append(attrs, slog.Uint64("dropped_log_lines", n))
	}
	r.log.LogAttrs(ctx, slog.LevelError, "panic in a gRPC handler: answered Internal, still serving (a bug: please report it)", attrs...)
	return errPanic
}

// runtimeError returns the text of a panic raised by the Go runtime itself.
// The package check keeps out other types that merely implement
// runtime.Error.
func runtimeError(p any) (string, bool) {
	re, ok := p.(runtime.Error)
	if !ok {
		return "", false
	}
	t := reflect.TypeOf(p)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() != "runtime" {
		return "", false
	}
	return re.Error(), true
}
