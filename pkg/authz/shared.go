package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// SharedTier is the cache tier shared by replicas (*redistier.Tier): the
// token cache's second tier, and the channel that takes an invalidation
// from the replica that got it to every other one.
type SharedTier interface {
	tokencache.Shared
	// Invalidate records the invalidation in the tier (values there
	// fetched before it are void) and publishes it; receivers is how many
	// subscribed replicas got it.
	Invalidate(ctx context.Context, kind, id string, at time.Time) (receivers int64, err error)
	// Subscribe delivers the invalidations of every replica until ctx
	// ends; onLost and onRestored bracket the times it is not subscribed.
	Subscribe(ctx context.Context, onInvalidate func(kind, id string, at time.Time), onLost, onRestored func())
}

// The kinds of Invalidate.
const (
	KindSession  = "session"
	KindIdentity = "identity"
	KindPurge    = "purge" // every cached JWT and remembered 401; the id is ""
)

// ErrNotShared is the error of an Invalidate that holds on this replica but
// could not be passed on to the others: the shared tier cannot be reached.
var ErrNotShared = errors.New("applied on this replica only: the shared tier (Redis) cannot be reached, the other replicas serve the session until its JWT expires")

// Invalidate ends the cached JWTs of a session (KindSession), of every
// session of an identity (KindIdentity) or all of them (KindPurge) on this
// replica before it returns. With a shared tier it also records the
// invalidation there and publishes it to every replica; replicas is how
// many received it (this one's own subscription included). Without a
// shared tier replicas is 1. When the tier cannot be reached the
// invalidation still holds here and the error wraps ErrNotShared.
func (s *Server) Invalidate(ctx context.Context, kind, id string) (replicas int64, err error) {
	if err := s.invalidateLocal(kind, id); err != nil {
		return 0, err
	}
	if s.shared == nil {
		return 1, nil
	}
	n, err := s.shared.Invalidate(ctx, kind, id, s.now())
	if err != nil {
		return n, fmt.Errorf("%w: %w", ErrNotShared, err)
	}
	return n, nil
}

func (s *Server) invalidateLocal(kind, id string) error {
	switch kind {
	case KindSession:
		s.cache.InvalidateSession(id)
	case KindIdentity:
		s.cache.InvalidateIdentity(id)
	case KindPurge:
		s.cache.Purge()
	default:
		return fmt.Errorf("authz: unknown invalidation kind %q", kind)
	}
	return nil
}

// subscribe applies the invalidations of the other replicas until ctx
// ends. A replica that is not subscribed cannot know what it missed: when
// the subscription is lost, and again when it is back, every L1 entry
// filled before is void. Values in the shared tier stay usable: they are
// checked against the tier's own invalidation records when read, which a
// lost subscription does not miss.
func (s *Server) subscribe(ctx context.Context) {
	s.shared.Subscribe(ctx,
		func(kind, id string, _ time.Time) {
			if err := s.invalidateLocal(kind, id); err != nil {
				s.log.Warn("shared tier: invalidation of an unknown kind ignored", "kind", kind)
			}
		},
		func() {
			s.cache.VoidLocal()
			s.log.Warn("shared tier: invalidation subscription lost; every cached JWT is void until it is back")
		},
		func() {
			s.cache.VoidLocal()
			s.log.LogAttrs(ctx, slog.LevelInfo, "shared tier: subscribed to invalidations; JWTs cached while not subscribed are void")
		})
}
