package authz

// Reason is why Check answered as it did. Reasons are a fixed set, so they
// can label metrics: no label ever holds a value from a request.
type Reason uint8

// The reasons, grouped by decision.
const (
	ReasonCached            Reason = iota // allow: JWT from the cache
	ReasonFresh                           // allow: JWT fetched from Ory for this request
	ReasonPreflight                       // allow: CORS preflight, the client's authorization removed
	ReasonAllowMissing                    // allow: no valid session, on_missing=allow; authorization removed (unless --pass-client-authorization)
	ReasonNoCredential                    // deny: no Ory credential
	ReasonInvalidSession                  // deny: Ory said 401 (or it is remembered)
	ReasonTooLarge                        // deny: credential over 16 KiB
	ReasonInvalidCredential               // deny: credential not a valid header value
	ReasonForbidden                       // deny: Ory said 403 (AAL)
	ReasonInvalidRequest                  // deny: over a request limit
	ReasonAmbiguousPath                   // deny: a path the route table cannot match with certainty
	ReasonAALRequired                     // deny: the session is below the route's require_aal (403, or 303 to step up)
	ReasonRuleDenied                      // deny: the route's authorize expression is false
	ReasonRuleError                       // deny: the route's authorize expression failed to evaluate
	ReasonBadRoute                        // error: bad context_extensions
	ReasonBadTemplate                     // error: Ory rejected the template
	ReasonBadJWT                          // error: JWT without exp or already expired
	ReasonOryUnavailable                  // error: Ory unreachable, slow, 5xx, 429, garbage
	ReasonCanceled                        // error: the caller gave up
	numReasons
)

var reasonNames = [numReasons]string{
	"cached", "fresh", "preflight", "allow_missing",
	"no_credential", "invalid_session", "credential_too_large", "invalid_credential", "forbidden", "invalid_request", "ambiguous_path",
	"aal_required", "rule_denied", "rule_error",
	"bad_route", "bad_template", "bad_jwt", "ory_unavailable", "canceled",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Decision is "allow", "deny" or "error" (a gRPC error, for Envoy's
// failure_mode_allow and status_on_error).
func (r Reason) Decision() string {
	switch {
	case r <= ReasonAllowMissing:
		return "allow"
	case r <= ReasonRuleError:
		return "deny"
	}
	return "error"
}

// Reasons lists every reason, for pre-creating metric series.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}
