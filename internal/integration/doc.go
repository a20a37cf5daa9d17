// Package integration proves ory-ext-authz against a real Ory Kratos v1.3.1,
// not a fake: the production wiring (the pkg/ory client, pkg/authz and
// pkg/server on 127.0.0.1, as `ory-ext-authz serve` builds them) answers gRPC
// CheckRequests for real browser cookies and session tokens that Kratos
// issued through its login flows, and the JWTs it forwards are the ones
// Kratos' tokenizer signed.
//
// The tests show, each against its own Kratos (internal/kratosdev/kratostest):
//
//   - a browser cookie or a session token (x-session-token, or
//     Authorization: Bearer ory_st_...) is allowed with an authorization
//     mutation that overwrites (append false, OVERWRITE_IF_EXISTS_OR_ADD)
//     whatever the client sent, e.g. a forged bearer token; the JWT verifies
//     against the template's public JWKS and carries the identity, the
//     session, Kratos' issuer URL and the template's lifetime;
//   - only the Ory credential reaches Kratos, never the client's other
//     cookies or its Authorization header;
//   - an invalid cookie is denied 401; an unknown template in a route's
//     context_extensions is a FailedPrecondition error while the default
//     template keeps working;
//   - 200 concurrent checks of one cookie on a cold cache reach Kratos'
//     whoami exactly once (counted by a reverse proxy in front of Kratos);
//   - a session revoked in Kratos is served from the cache at most until the
//     JWT's exp minus the leeway, and denied after it;
//   - a session revoked with Kratos' admin API and then invalidated through
//     the admin API (InvalidateSession, or InvalidateIdentity with the
//     identity id, by gRPC or `ory-ext-authz admin invalidate`) is denied 401
//     at the next Check, while a session only revoked is still served from
//     the cache;
//   - with Kratos stopped, cached sessions keep passing and uncached ones get
//     gRPC Unavailable;
//   - a Set-Cookie of Kratos (cookie refresh after the session was extended)
//     reaches the client through response_headers_to_add;
//   - no log line holds a cookie, a session token or a JWT.
//
// With a real redis-server (internal/redistest) shared by three replicas
// (replicas_test.go):
//
//   - three real `ory-ext-authz serve` processes, configured through the
//     --redis-* flags and ORY_EXT_AUTHZ_REDIS_USERNAME/PASSWORD, answer a cold
//     storm of 100 sessions, each checked at once on every replica, with
//     exactly one whoami call per session and one JWT per session;
//   - an InvalidateSession on one replica answers replicas=3 and the next
//     check of that session on every replica asks Kratos again and is denied;
//     with Redis down it is UNAVAILABLE and still holds on that replica;
//   - while Redis is frozen (SIGSTOP), full (maxmemory 1, noeviction), cut
//     off (CLIENT KILL), restarted, or asks another password, warm and cold
//     checks keep passing within a liveness bound, and the tier recovers on
//     its own afterwards;
//   - Redis never holds a cookie, a session token, a JWT or an id in clear.
//
// The package has test files only. Run it with `make test`, which builds
// bin/kratos first, or directly:
//
//	KRATOS_BIN=bin/kratos go test ./internal/integration
//
// Without a Kratos binary (or, for the replica tests, a redis-server) the
// tests skip; with ORY_EXT_AUTHZ_REQUIRE_KRATOS=1 and
// ORY_EXT_AUTHZ_REQUIRE_REDIS=1 (as `make test` sets them) they fail instead.
package integration
