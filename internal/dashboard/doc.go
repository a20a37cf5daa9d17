// Package dashboard builds the Grafana dashboard of ory-ext-authz
// (deploy/grafana/ory-ext-authz.json) with the Grafana Foundation SDK, and
// reads the PromQL out of it and out of the Prometheus rules
// (deploy/prometheus/alerts.yaml) so that tests can check every expression
// parses and names only metrics the server exports.
//
// `make dashboard` (internal/cmd/dashboard) writes the JSON; a test fails
// when the committed file differs from what Build generates.
package dashboard
