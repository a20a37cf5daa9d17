// Package tokencache keeps the JWTs Ory minted, keyed by a SHA-256 digest of
// (template, credential kind, credential value), until just before they
// expire.
//
// It is a ristretto cache with four rules on top:
//   - a hit never calls Ory, and the digest stored in the entry is compared on
//     every hit, so a hash collision is a miss, never another user's JWT;
//   - concurrent misses on one key make one fetch (singleflight) on a context
//     of its own, while every caller keeps its own deadline;
//   - a hit past the soft expiry serves the entry and starts one background
//     refresh, so no request waits on Ory at expiry;
//   - a 401 is remembered for a short negative TTL; a transient failure is not
//     remembered and keeps warm entries serving until their hard expiry.
package tokencache
