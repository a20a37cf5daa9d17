// Claims mapper of the "mesh" tokenizer template (see kratos.yml).
//
// Kratos v1.3.1 (session/tokenizer.go) passes two external variables:
//   session: the session JSON as whoami returns it (identity expanded), and
//   claims:  the standard claims Kratos already set (jti, iss, sub, sid, iat, nbf, exp).
// The snippet must evaluate to an object with a "claims" object. Kratos merges
// those claims over its own and then sets "sub" again, so we only add claims
// here and never round-trip the numeric ones.
local session = std.extVar('session');
local traits = session.identity.traits;

{
  claims: {
    // Upstream policies key on the session's assurance level (aal1, aal2).
    aal: session.authenticator_assurance_level,
  } + (
    // Every identity of identity.schema.json has an email, but a missing trait
    // must not make whoami fail with 400 for identities of other schemas.
    if std.objectHas(traits, 'email') then { email: traits.email } else {}
  ),
}
