// Package redistier is a shared second cache tier in Redis (or Valkey) for
// many replicas of ory-ext-authz: values by cache key, a fill lock so one
// replica asks Ory while the others wait, the shared pause after a 429 from
// Ory, and invalidation records with a pub/sub channel that carries them to
// every replica. It is a building block: the token cache stays the hit path
// (a hit never touches Redis), and its caller decides what to store and
// when to ask.
//
// # Redis is an optimisation, never a point of failure
//
// Every operation is bounded by Options.Timeout (50 ms by default) through
// its context; a connection made on the request path is bounded by it too.
// FailureThreshold consecutive failures (network errors, timeouts, error
// replies) open a circuit breaker: operations then fail at once with
// ErrUnavailable, without touching the network, while a background loop
// waits a backoff (MinBackoff doubling to MaxBackoff, with jitter) and
// probes with a PING (half-open); only a good probe closes it. New never
// fails because Redis is down: the breaker starts open and the loop keeps
// connecting. A full Redis (OOM under maxmemory noeviction) refuses writes
// without opening the breaker, as reads still work. Anything else at one
// of our keys (another type, a value that does not authenticate) is a miss.
// Every outcome goes to the Observer (fixed Op* and Result* label values)
// and every fault to a warning, at most one per kind per WarnEvery.
//
// # What is in Redis reveals nothing and cannot be forged
//
// Each secret (at least 32 bytes) gives, through HKDF-SHA256, an HMAC key for
// key names and an AES-256-GCM key for values. Key names are
// Prefix + "{" + base64url(HMAC(cache key)) + "}v" (the value) and "}l" (its
// fill lock, in the same Cluster slot), Prefix + "i:" + base64url(HMAC(kind,
// id)) (an invalidation record) and Prefix + "pause". A value is
//
//	version (1 byte) | key id (4 bytes) | nonce (12) | AES-GCM(plaintext, additional data = the key name)
//
// so it cannot be read, changed, or moved to another key (or channel)
// without failing authentication, and a value failing it is never returned.
// Neither the credential behind a cache key nor a session or identity id
// appears in Redis; invalidation messages are sealed the same way.
//
// # Rotating the secret
//
// Options.Secrets is [current] or [current, previous]. Values are written
// under the current secret; a read tries the current key name and the
// previous one (one round trip). Invalidation records are written under
// both secrets' names, and pause markers and invalidation messages are
// sealed under the oldest configured secret, so replicas mid-rotation
// honour them. To rotate from A to B: deploy [B, A] everywhere (until all
// replicas have it, values written by B-replicas are misses for A-only
// ones, never errors); then, once the longest JWT lifetime has passed,
// deploy [B].
//
// # Fill lock, pause, invalidations
//
// On a miss in both tiers a replica takes Lock (SET NX PX, a random token,
// a Lua unlock that deletes only its own token); the others WaitFor the
// value, bounded by the caller (a fraction of the whoami timeout), and ask
// Ory themselves if it does not come or the lock goes away without one.
// Pause and PausedUntil share a 429's Retry-After (the longest one wins;
// the TTL is compared on Redis' clock). Invalidate records the latest
// invalidation time of a session, an identity or of everything (a purge)
// for InvalidationTTL and publishes it; Subscribe delivers it to each
// replica and tells when the subscription is lost and restored, so the
// caller can void what it may have missed. On Cluster, sharded pub/sub
// (SPUBLISH) makes the receiver count cover every subscriber.
//
// Times given to Pause and Invalidate come from the callers' clocks;
// replicas with skewed clocks compare them as they are.
//
// # Deployments and clients
//
// The client is github.com/redis/rueidis (RESP3, auto-pipelining) with
// client-side caching off. Options.URL takes standalone, Sentinel and
// Cluster forms, rediss:// for TLS with CAFile and a client certificate, and
// ACL credentials in Username and Password (never logged; the URL is
// logged without its password).
//
// The Example compiles but does not run (it has no Output comment): a Tier
// needs a real Redis, which the package's tests start themselves
// (internal/redistest).
package redistier
