package tracing_test

import (
	"context"
	"fmt"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/tracing"
)

// Without OTEL_* variables asking for an exporter, Setup returns no tracer
// provider: the server then creates no spans at all.
func ExampleSetup() {
	env := map[string]string{"OTEL_TRACES_EXPORTER": "none"}
	tp, shutdown, err := tracing.Setup(context.Background(), func(k string) string { return env[k] }, "v1.0.0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	fmt.Println(tp == nil)
	// Output: true
}
