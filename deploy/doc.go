// Package deploy holds no code: its folders are the files users copy to run
// ory-ext-authz (envoy/, istio/, kubernetes/, traefik/, haproxy-ingress/,
// plus kratos/, a separate module with the local Kratos). Its tests load
// every one of those files into the types of the software that reads them
// (go-control-plane for Envoy, istio.io/api, k8s.io/api, strict mirrors of
// Traefik's types) and check the wiring against the server's own code:
// ports, timeouts, the headers it reads, the flags it has, the services its
// health server registers, and the issuer of the JWTs Kratos mints. The
// forward-auth proxies' tests play the proxy's part against the real server
// (forwardauth_test.go).
//
// TestEnvoyEndToEnd runs Envoy itself on the rendered envoy.yaml when
// ENVOY_BIN names an Envoy binary, and is skipped otherwise.
package deploy
