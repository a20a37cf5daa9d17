// Package checkcli implements `ory-ext-authz check`, the operator's debugging
// client for an ext_authz v3 gRPC server.
//
// It exists because a misbehaving ext_authz setup is hard to see through Envoy:
// Envoy only shows the final HTTP status, not which header mutations were
// asked for, how the JWT looks, or whether the server answered with a denial
// or a gRPC error (which Envoy treats very differently: failure_mode_allow and
// status_on_error apply only to errors). `check` sends one CheckRequest shaped
// exactly as Envoy shapes it (lower-case header keys, duplicates joined with
// ",", the query inside path, or header_map with raw_value when Envoy runs
// with encode_raw_headers: true) and prints everything the answer says, the
// Bearer JWT decoded (signature not verified).
//
// The output is meant to be pasted into tickets, so it never contains the
// cookie or session token that was sent, nor the compact JWT unless asked for
// with --print-jwt: values of credential-bearing headers are shown as their
// size, and everything printed passes through a redactor that replaces any
// secret this run knows of.
//
// Run is the whole API; cmd/ory-ext-authz calls it for the `check` subcommand.
package checkcli
