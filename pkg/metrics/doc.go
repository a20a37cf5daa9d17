// Package metrics is ory-ext-authz's Prometheus instrumentation, on a private
// registry served at GET /metrics. Metrics observes checks (authz.Observer),
// whoami calls (ory.Observer), recovered panics (server.PanicObserver), the
// readiness /readyz reports (server.ReadinessObserver), the admin API's
// invalidations (admin.Observer), the shared Redis tier (redistier.Observer),
// the loads of the published JWKS (jwkspub.Observer) and the reloads of the
// route table (routes.Observer); SetLimits exports the configured bounds of
// the cache and of whoami calls in flight. Every label value comes from a fixed set (decision
// reasons, lookup results, Ory code classes, the shared tier's operations,
// results and breaker states, JWKS load results), and every series of such a
// set exists from the start: no label ever holds a value from a request.
package metrics
