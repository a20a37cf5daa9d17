package tokencache

import (
	"context"
	"encoding/binary"
	"errors"
	"time"
)

// Shared is a second tier of the cache shared by replicas (pkg/redistier
// implements it over Redis). An L1 miss reads it before asking Ory, and
// every value fetched from Ory is written to it; a hit never touches it.
// Every method must be bounded in time and fail fast when the tier is sick:
// the cache takes any error as a miss of the tier and goes on to Ory.
type Shared interface {
	Get(ctx context.Context, key [32]byte) (value []byte, ok bool, err error)
	Set(ctx context.Context, key [32]byte, value []byte, ttl time.Duration) error
	// Lock takes the short fill lock of key: one replica asks Ory.
	Lock(ctx context.Context, key [32]byte, ttl time.Duration) (unlock func(), acquired bool, err error)
	// WaitFor waits, at most bound, for the lock holder's value of key.
	WaitFor(ctx context.Context, key [32]byte, bound time.Duration) ([]byte, bool)
	// InvalidatedAt is the time of the last invalidation of the session
	// or identity (kind SharedSession or SharedIdentity) or of a purge,
	// whichever is later; ok is false when there was none.
	InvalidatedAt(ctx context.Context, kind, id string) (at time.Time, ok bool, err error)
}

// The kinds of invalidation records a Shared tier keeps.
const (
	SharedSession  = "session"
	SharedIdentity = "identity"
)

// clockSkew is the margin by which an invalidation recorded by another
// replica voids values fetched after it by that replica's clock or this
// one's: replicas' clocks differ a little, and voiding too much costs one
// more call to Ory, voiding too little would serve a revoked session.
const clockSkew = time.Second

// sharedVersion starts every record this package writes to the tier; a
// record of another version is a miss.
const sharedVersion = 2

// A record in the shared tier: version, expiry, issued at, fetched at (the
// wall clock when the fetch that made the value started, for the
// invalidation records), cost, the refresh point the fetching replica
// chose, then the value's own encoding.
const sharedHeader = 1 + 5*8

var errSharedRecord = errors.New("tokencache: not a record of the shared tier")

func encodeShared(value []byte, meta Meta, fetchedAt, soft time.Time) []byte {
	b := make([]byte, 0, sharedHeader+len(value))
	b = append(b, sharedVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(meta.Expiry.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(meta.IssuedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(fetchedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(meta.Cost))
	b = binary.BigEndian.AppendUint64(b, uint64(soft.UnixNano()))
	return append(b, value...)
}

func decodeShared(b []byte) (value []byte, meta Meta, fetchedAt, soft time.Time, err error) {
	if len(b) < sharedHeader || b[0] != sharedVersion {
		return nil, Meta{}, time.Time{}, time.Time{}, errSharedRecord
	}
	u := func(i int) int64 { return int64(binary.BigEndian.Uint64(b[1+8*i:])) }
	meta = Meta{Expiry: time.Unix(0, u(0)), IssuedAt: time.Unix(0, u(1)), Cost: u(3)}
	if meta.IssuedAt.UnixNano() == 0 {
		meta.IssuedAt = time.Time{}
	}
	return b[sharedHeader:], meta, time.Unix(0, u(2)), time.Unix(0, u(4)), nil
}

// toShared writes a value fetched from Ory to the shared tier, to live
// until its hard expiry.
func (c *Cache[R, V]) toShared(ctx context.Context, key Key, v V, meta Meta, fetchedAt, soft time.Time, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	_ = c.cfg.Shared.Set(ctx, key, encodeShared(c.cfg.EncodeValue(v), meta, fetchedAt, soft), ttl)
}

// fromShared looks for the key's value in the shared tier: on a miss
// (current 0) any live one, on a refresh only one newer than the entry it
// replaces, so that a replica whose neighbour refreshed first does not ask
// Ory again. The error is the tier's, when it could not be read.
func (c *Cache[R, V]) fromShared(ctx context.Context, key Key, started uint64, current int64) (*entry[V], error) {
	b, ok, err := c.cfg.Shared.Get(ctx, key)
	if err != nil || !ok {
		return nil, err
	}
	return c.sharedEntry(ctx, key, b, started, current), nil
}

// sharedEntry checks a record from the shared tier exactly as a value from
// Ory is checked (expiry and leeway, the invalidation records here and in
// the tier) and keeps it as the key's entry. It returns nil when the record
// cannot be used; the fill then asks Ory.
func (c *Cache[R, V]) sharedEntry(ctx context.Context, key Key, b []byte, started uint64, current int64) *entry[V] {
	raw, meta, fetchedAt, soft, err := decodeShared(b)
	if err != nil {
		c.log.Warn("shared tier: unreadable record, asking Ory", "key", key.Short(), "error", err.Error())
		return nil
	}
	now := c.now()
	hard := meta.Expiry.Add(-c.cfg.Leeway)
	if !hard.After(now) || (current != 0 && hard.UnixNano() <= current) {
		return nil
	}
	v, err := c.cfg.DecodeValue(raw)
	if err != nil {
		c.log.Warn("shared tier: undecodable value, asking Ory", "key", key.Short(), "error", err.Error())
		return nil
	}
	if c.voidedShared(ctx, v, fetchedAt) {
		return nil
	}
	meta.Cost = max(meta.Cost, int64(len(raw)))
	e, cached := c.keep(key, v, meta, started, fetchedAt, now, current != 0, soft)
	if !cached {
		return nil
	}
	c.stats.sharedHits.add(key)
	return e
}

// voidedShared tells whether an invalidation since fetchedAt (with the
// clock skew margin) ended a value from the shared tier: one recorded here
// (received from any replica) or one recorded in the tier (made before this
// replica started, or while it was not subscribed). When the tier cannot
// say, the value is not used.
func (c *Cache[R, V]) voidedShared(ctx context.Context, v V, fetchedAt time.Time) bool {
	since := fetchedAt.Add(-clockSkew)
	var sid, iid []byte
	if c.cfg.IDs != nil {
		sid, iid = c.cfg.IDs(v)
	}
	if c.rev.revokedSince(since.UnixNano(), sid, iid) {
		return true
	}
	for _, rec := range []struct {
		kind string
		id   []byte
	}{{SharedSession, sid}, {SharedIdentity, iid}} {
		if len(rec.id) == 0 {
			continue
		}
		at, ok, err := c.cfg.Shared.InvalidatedAt(ctx, rec.kind, string(rec.id))
		if err != nil || (ok && !at.Before(since)) {
			return true
		}
	}
	return false
}
