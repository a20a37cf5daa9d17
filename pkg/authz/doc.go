// Package authz is the envoy.service.auth.v3.Authorization server: it reads
// the Ory credential and the per-route settings of a CheckRequest, gets the
// session's JWT from the token cache, and answers with a CheckResponse.
//
// The path goes one way: Check reads the request (request.go), decide runs
// the route settings, the limits, the credential and the cache (authz.go),
// and respond answers every failure as the outcome table says
// (outcome.go): one row per kind of failure, with its cache treatment, its
// metric reason, its log line and its answer. The cache's classification of
// failed fetches reads the same table.
//
// A denial never carries status OK; trouble on Ory's side is a gRPC error,
// so that Envoy's failure_mode_allow and status_on_error decide, not this
// server. Every OK answer either sets `authorization` to a JWT of ours or
// removes it (unless Options.PassClientAuthorization).
//
// The OK answer of a session is encoded once, when its JWT arrives
// (answer.go, with its decoder); a hit wraps those bytes in a CheckResponse
// as unknown fields with one allocation. Callers in the same process see
// them after a proto.Marshal, as Envoy does (see the Example).
package authz
