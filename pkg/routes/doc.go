// Package routes is the route table of ory-ext-authz: per-route settings
// read from a YAML file, for proxies that cannot send Envoy's
// context_extensions (Istio's CUSTOM action, nginx, Traefik, Caddy).
//
// A file is a list of rules; the first whose host, path and methods match a
// request wins, and a request no rule matches gets the defaults (the
// server's flags). A rule sets the tokenizer template (tokenize_as), what
// a request without a session gets (on_missing), the least assurance level
// (require_aal), a CEL expression over the JWT's claims, the session and
// the request that must hold (authorize), identity headers for the
// upstream (headers) and pass_client_authorization. Parse checks all of it
// strictly, every problem with its line and column, and compiles the
// expressions (type-checked, with a cost limit); a Watcher reloads the
// file when it changes and keeps the last good table on a bad one.
//
// Paths are matched as Envoy forwards them with normalize_path and
// merge_slashes on, both of which must be set on the listener (Istio:
// meshConfig.pathNormalization MERGE_SLASHES or DECODE_AND_MERGE_SLASHES).
// A path that an upstream could read otherwise (not in that normal form,
// with escaped slashes, with ';' parameters) is matched in every reading,
// and when the readings match different rules Match returns the ambiguous
// path rule, which lets nothing through. docs/routes.md has the format, the
// matching and the reasoning.
//
// This package only parses, validates, compiles and matches: the Check
// path of pkg/authz does not use it yet; that lands in a follow-up.
package routes
