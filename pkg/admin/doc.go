// Package admin is the admin API of ory-ext-authz (ory_ext_authz.admin.v1.Admin,
// proto/ory_ext_authz/admin/v1/admin.proto). Its command-line client,
// `ory-ext-authz admin`, is internal/admincli.
//
// The API ends cached sessions before their JWTs expire, for a logout, a
// revoked session or a blocked identity, and reports cache statistics:
//
//   - InvalidateSession(session_id): every cached JWT of the session, for every
//     template and credential kind (cookie, session token), is void before the
//     call returns. The next Check of that session asks Ory again; if Ory now
//     answers 401, the request is denied.
//   - InvalidateIdentity(identity_id): likewise for every session of the identity.
//   - Purge(): every cached JWT and every remembered 401.
//   - Stats(): entries and bytes held, hits, misses, negative hits, refreshes,
//     and the whoami calls to Ory and how many failed.
//
// Invalidation does not scan the cache: pkg/tokencache records when a session
// or identity was invalidated and treats every entry fetched before that as
// absent, with bounded memory.
//
// Server is served on its own listener (--admin-addr, loopback by default,
// optionally mTLS), never on the ext_authz listener: pkg/server runs it as a
// separate gRPC server, so nothing Envoy can reach can call it.
//
// The ids are the JWT's sid and sub claims (Kratos' session and identity
// UUIDs). They are validated (not empty, at most MaxIDLen bytes, printable
// ASCII, not an Ory session token) and each invalidation is logged at info
// with the id and the caller's address (and client certificate name over
// mTLS). An id that is not a UUID is logged as a short hash only, because a
// string pasted into the wrong place may be a credential. A UUID in another
// spelling (upper case, braces, urn:uuid:, no hyphens) is first turned into
// the lower-case hyphenated form Kratos writes (CanonicalID), so that it
// matches; other ids are used as given. An id that matches no cached session
// is not an error: there is nothing to end.
package admin
