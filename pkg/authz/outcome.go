package authz

import (
	"context"
	"errors"
	"log/slog"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// answerKind is how an outcome is answered.
type answerKind uint8

const (
	// answerMissing: no valid session; on_missing decides (401, allow or
	// a redirect to the login URL).
	answerMissing answerKind = iota
	// answerForbidden: 403, or for a browser in redirect mode a 303 to
	// Kratos' redirect_browser_to (step-up to aal2).
	answerForbidden
	// answerStepUp: the session is below the rule's require_aal: for a
	// browser a 303 to the step-up URL, otherwise 403 naming the level.
	answerStepUp
	// answerRule: 403 naming the rule whose authorize denies.
	answerRule
	// answerInvalid: 400, the request is over a limit or its path is
	// ambiguous to the route table.
	answerInvalid
	// answerError: a gRPC error, so that Envoy's failure_mode_allow and
	// status_on_error decide.
	answerError
)

// outcome is what one kind of failure means everywhere: how the token cache
// treats a fetch that failed so, the reason it is counted under, the log
// line and the answer. The table below is the one place that says it; the
// cache's classification (classify) and the answers (respond) both read it.
type outcome struct {
	match  func(error) bool
	cache  tokencache.Outcome
	reason Reason
	level  slog.Level
	log    string
	answer answerKind
	// code and message of an answerError; an empty message means the
	// error's own text (a misconfigured route names its problem).
	code    codes.Code
	message string
	// denial of an answerInvalid; nil means denyInvalid.
	denial *authv3.CheckResponse
}

// outcomes, first match wins. Only failures of a fetch (Ory's answers) can
// reach the cache; the rest come from the request itself.
var outcomes = []outcome{
	{match: as[*limitError], reason: ReasonInvalidRequest, level: slog.LevelInfo,
		log: "request denied as invalid", answer: answerInvalid},
	// Never allowed, whatever on_missing says: an upstream may read the
	// path as a protected one.
	{match: is(errAmbiguousPath), reason: ReasonAmbiguousPath, level: slog.LevelInfo,
		log: "request denied: ambiguous path", answer: answerInvalid, denial: denyAmbiguousPath},
	{match: is(errNoCredential), reason: ReasonNoCredential, level: slog.LevelInfo,
		log: "no valid session", answer: answerMissing},
	{match: is(credential.ErrTooLarge), reason: ReasonTooLarge, level: slog.LevelInfo,
		log: "no valid session", answer: answerMissing},
	{match: is(credential.ErrInvalid), reason: ReasonInvalidCredential, level: slog.LevelInfo,
		log: "no valid session", answer: answerMissing},
	// A 401 is remembered for the negative TTL: invalid cookies must not
	// flood Ory. On a refresh it drops the entry (the session was revoked).
	{match: is(ory.ErrUnauthenticated), cache: tokencache.Negative, reason: ReasonInvalidSession, level: slog.LevelInfo,
		log: "no valid session", answer: answerMissing},
	// Final: not remembered (a second factor may follow at once), but a
	// refresh that gets it drops the entry.
	{match: is(ory.ErrForbidden), cache: tokencache.Final, reason: ReasonForbidden, level: slog.LevelInfo,
		log: "session refused by Ory", answer: answerForbidden},
	// The route table's checks of a session Ory accepted; they come after
	// the cache, so never reach it.
	{match: is(errAALRequired), reason: ReasonAALRequired, level: slog.LevelInfo,
		log: "session below the route's assurance level", answer: answerStepUp},
	{match: as[*ruleDenied], reason: ReasonRuleDenied, level: slog.LevelInfo,
		log: "request denied by the route's authorize expression", answer: answerRule},
	// Never an allow: a policy that cannot be evaluated denies, and says
	// so at error level, since the rule (or the claims) needs fixing.
	{match: as[*ruleError], reason: ReasonRuleError, level: slog.LevelError,
		log: "the route's authorize expression failed: request denied", answer: answerRule},
	{match: as[*claimsError], cache: tokencache.Final, reason: ReasonBadJWT, level: slog.LevelError,
		log:    "the JWT's claims do not decode: no identity headers or authorize possible",
		answer: answerError, code: codes.Internal, message: "Ory minted a JWT whose claims do not decode"},
	{match: as[*routeError], reason: ReasonBadRoute, level: slog.LevelError,
		log: "misconfigured route", answer: answerError, code: codes.FailedPrecondition},
	{match: is(ory.ErrBadTemplate), cache: tokencache.Final, reason: ReasonBadTemplate, level: slog.LevelError,
		log:    "Ory rejected the tokenizer template: is it configured under session.whoami.tokenizer.templates?",
		answer: answerError, code: codes.FailedPrecondition, message: "Ory rejected the tokenizer template"},
	{match: is(ory.ErrExpired), cache: tokencache.Final, reason: ReasonBadJWT, level: slog.LevelError,
		log:    "Ory minted an already expired JWT: give the tokenizer template a ttl",
		answer: answerError, code: codes.Internal, message: "Ory minted an expired JWT"},
	{match: is(ory.ErrNoExpiry), cache: tokencache.Final, reason: ReasonBadJWT, level: slog.LevelError,
		log:    "Ory minted a JWT without exp: give the tokenizer template a ttl",
		answer: answerError, code: codes.Internal, message: "Ory minted a JWT without exp"},
}

// canceled is the caller (Envoy) giving up, by its own deadline or
// cancellation: whatever the error, nobody waits for the answer.
var canceled = outcome{reason: ReasonCanceled, level: slog.LevelWarn, log: "check abandoned by the caller", answer: answerError}

// unavailable is every other failure: Ory unreachable, slow, 5xx, 429, an
// unusable answer. Transient: not remembered, and warm entries keep serving
// until their hard expiry.
var unavailable = outcome{cache: tokencache.Transient, reason: ReasonOryUnavailable, level: slog.LevelWarn,
	log: "Ory unavailable", answer: answerError, code: codes.Unavailable, message: "Ory unavailable"}

// outcomeOf finds the outcome of err for a check whose context is ctx.
func outcomeOf(ctx context.Context, err error) *outcome {
	for i := range outcomes {
		if outcomes[i].match(err) {
			return &outcomes[i]
		}
	}
	if ctx.Err() != nil {
		return &canceled
	}
	return &unavailable
}

// classify tells the cache what to do with a failed fetch: the cache column
// of the table. A fetch runs detached from the callers, so a caller's
// cancellation is never its outcome.
func classify(err error) tokencache.Outcome {
	return outcomeOf(context.Background(), err).cache
}

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func as[T error](err error) bool {
	var t T
	return errors.As(err, &t)
}
