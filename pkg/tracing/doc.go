// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables. When none of them asks for an exporter, Setup
// returns no provider and the server creates no spans at all: tracing that
// is off costs nothing on the Check path.
package tracing
