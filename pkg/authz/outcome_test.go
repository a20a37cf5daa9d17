package authz

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// TestOutcomeTable: every kind of failure gets, from the one table, the
// cache treatment, the reason and the answer the README's Answers and
// "When Ory fails" tables promise; a denial never carries status OK and an
// error is a gRPC error, never an answer.
func TestOutcomeTable(t *testing.T) {
	wrap := func(class error) error { return &ory.Error{Class: class, Status: 500, Reason: "test"} }
	tests := []struct {
		err    error
		cache  tokencache.Outcome
		reason Reason
		code   codes.Code // of the gRPC error, or of the denial's status
		denial bool
	}{
		{&limitError{"header count", 200, 128}, tokencache.Transient, ReasonInvalidRequest, codes.InvalidArgument, true},
		{errAmbiguousPath, tokencache.Transient, ReasonAmbiguousPath, codes.InvalidArgument, true},
		{errNoCredential, tokencache.Transient, ReasonNoCredential, codes.Unauthenticated, true},
		{credential.ErrTooLarge, tokencache.Transient, ReasonTooLarge, codes.Unauthenticated, true},
		{credential.ErrInvalid, tokencache.Transient, ReasonInvalidCredential, codes.Unauthenticated, true},
		{wrap(ory.ErrUnauthenticated), tokencache.Negative, ReasonInvalidSession, codes.Unauthenticated, true},
		{wrap(ory.ErrForbidden), tokencache.Final, ReasonForbidden, codes.PermissionDenied, true},
		{&routeError{fmt.Errorf("context extension on_missing: bad")}, tokencache.Transient, ReasonBadRoute, codes.FailedPrecondition, false},
		{wrap(ory.ErrBadTemplate), tokencache.Final, ReasonBadTemplate, codes.FailedPrecondition, false},
		{wrap(ory.ErrExpired), tokencache.Final, ReasonBadJWT, codes.Internal, false},
		{wrap(ory.ErrNoExpiry), tokencache.Final, ReasonBadJWT, codes.Internal, false},
		{wrap(ory.ErrUnavailable), tokencache.Transient, ReasonOryUnavailable, codes.Unavailable, false},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), tokencache.Transient, ReasonOryUnavailable, codes.Unavailable, false},
	}
	s := &Server{log: slog.New(slog.DiscardHandler), logLimit: rate.NewLimiter(rate.Inf, 0)}
	r := newRequest(&authv3.CheckRequest{})
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			if got := classify(tt.err); got != tt.cache {
				t.Errorf("classify = %v, want %v", got, tt.cache)
			}
			resp, reason, err := s.respond(t.Context(), r, settings{mode: OnMissingDeny}, tokencache.Key{}, tt.err)
			if reason != tt.reason {
				t.Errorf("reason = %v, want %v", reason, tt.reason)
			}
			if tt.denial {
				if err != nil || resp == nil || codes.Code(resp.GetStatus().GetCode()) != tt.code || resp.GetDeniedResponse() == nil {
					t.Errorf("answer = %v, %v; want a denial with status %v", resp, err, tt.code)
				}
				return
			}
			if resp != nil || status.Code(err) != tt.code {
				t.Errorf("answer = %v, %v; want the gRPC error %v", resp, err, tt.code)
			}
		})
	}
	// The caller giving up is its own outcome, whatever the error says.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, reason, err := s.respond(ctx, r, settings{mode: OnMissingDeny}, tokencache.Key{}, wrap(ory.ErrUnavailable)); reason != ReasonCanceled || status.Code(err) != codes.Canceled {
		t.Errorf("canceled caller: %v %v, want ReasonCanceled and codes.Canceled", reason, err)
	}
}
