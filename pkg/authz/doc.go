// Package authz is the envoy.service.auth.v3.Authorization server: it reads
// the Ory credential and the per-route settings of a CheckRequest, gets the
// session's JWT from the token cache, and answers with a CheckResponse.
//
// Answers are decided in one place (respond.go). A denial never carries
// status OK; trouble on Ory's side is a gRPC error, so that Envoy's
// failure_mode_allow and status_on_error decide, not this server.
package authz
