// Package metrics is ory-ext-authz's Prometheus instrumentation, on a private
// registry served at GET /metrics. Every label value comes from a fixed set
// (decision reasons, lookup results, Ory code classes): no label ever holds a
// value from a request.
package metrics
