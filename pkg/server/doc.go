// Package server runs the listeners of ory-ext-authz: the gRPC server
// (ext_authz, grpc.health.v1 and reflection), the HTTP server (liveness,
// readiness, metrics and, when set, the public JWKS of pkg/jwkspub) and the
// admin gRPC server, and shuts them down in the order Envoy needs: health
// turns NOT_SERVING first, then in-flight checks finish, then the listeners
// close. Every connection is bounded in time (Timeouts): an idle one is
// closed, and pings on a quiet gRPC connection are allowed at the rate
// Envoy's keepalives use. A panic in a gRPC handler fails that call alone
// with codes.Internal.
package server
