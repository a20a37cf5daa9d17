// Package deploy holds no code: its folders are the files users copy to run
// ory-ext-authz (envoy/, istio/, kubernetes/, nginx/, caddy/, traefik/,
// haproxy-ingress/, plus kratos/ and caddy/'s go.mod, separate modules that
// pin the local Kratos and the tests' Caddy). Its tests load every one of
// those files into the types of the software that reads them
// (go-control-plane for Envoy, istio.io/api, k8s.io/api, strict mirrors of
// Traefik's types) or run that software's own validator on them (nginx -t,
// caddy validate), and check the wiring against the server's own code:
// ports, timeouts, the headers it reads, the flags it has, the services its
// health server registers, and the issuer of the JWTs Kratos mints. The
// real nginx and Caddy run the shipped configs in front of the real server
// (forwardauth_real_test.go); for Envoy's http_service, Traefik and
// haproxy-ingress, which cannot run here, the tests play the proxy's part
// against the real server (forwardauth_rules_test.go).
//
// TestEnvoyEndToEnd runs Envoy itself on the rendered envoy.yaml when
// ENVOY_BIN names an Envoy binary, and is skipped otherwise.
// TestForwardAuthProxies runs the real nginx and Caddy (internal/proxytest)
// on nginx/nginx.conf and caddy/Caddyfile in front of a forward-auth server
// (checkForwardAuth takes any, through forwardAuthServer).
package deploy
