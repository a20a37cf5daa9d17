// Package routes is the route table of ory-ext-authz: per-route settings
// read from a file, for proxies that cannot send Envoy's
// context_extensions (Istio's CUSTOM action, nginx, Traefik, Caddy).
//
// Paths are matched as Envoy forwards them with normalize_path and
// merge_slashes on (NormalizePath), both of which must be set on the
// listener. A path that an upstream could read otherwise (not in that
// normal form, with escaped slashes, with ';' parameters) has several
// readings, each of which a rule must match.
//
// The Check path of pkg/authz does not use this package yet; that lands
// in a follow-up.
package routes
