package tokencache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
)

// Key identifies one credential presented for one template.
type Key [sha256.Size]byte

// NewKey derives the key of (template, kind, value). Every field is length
// prefixed, so no two different triples share an input.
func NewKey(template string, kind uint8, value string) Key {
	// A stack buffer covers the common sizes (cookies are a few hundred
	// bytes) without a heap allocation on the hit path.
	var stack [1024]byte
	b := stack[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(len(template)))
	b = append(b, template...)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	b = append(b, value...)
	return sha256.Sum256(b)
}

// Short is a short hex prefix of the key, safe to log for correlation.
func (k Key) Short() string { return fmt.Sprintf("%x", k[:6]) }

func (k Key) hash() uint64 { return binary.LittleEndian.Uint64(k[:8]) }

// Meta is what the cache needs to know of a fetched value.
type Meta struct {
	// Expiry is the JWT's exp.
	Expiry time.Time
	// IssuedAt is the JWT's iat; zero means the fill time.
	IssuedAt time.Time
	// Cost is the size of the value in bytes.
	Cost int64
}

// Outcome tells the cache what to do with a failed fetch.
type Outcome int

// The outcomes of a failed fetch.
const (
	// Transient: not remembered; a warm entry keeps serving until hard expiry.
	Transient Outcome = iota
	// Negative: remembered for the negative TTL; drops a warm entry.
	Negative
	// Final: not remembered; drops a warm entry (Ory has given a definitive
	// answer that this credential no longer gets a JWT).
	Final
)

// Source tells where an answer came from.
type Source uint8

// The sources of an answer.
const (
	Miss        Source = iota // this request fetched from Ory (alone or sharing the flight)
	Hit                       // served from the cache
	NegativeHit               // a remembered 401
)

// Config configures a Cache. R is the request passed to the fetch function,
// V the value cached (built once at fill time and returned on every hit).
type Config[R, V any] struct {
	// MaxBytes bounds the cache (ristretto MaxCost).
	MaxBytes int64
	// Leeway: an entry is served only until Expiry - Leeway (hard expiry).
	Leeway time.Duration
	// FirstJitter moves the refresh-ahead point of an entry filled on a
	// miss earlier by a random part of up to this fraction of the time
	// left until it (0 turns it off): sessions filled together (a cold
	// start, a purge) then have their refreshes spread over that part of
	// the lifetime instead of in one wave of whoami calls, and as a
	// refresh keeps the phase of the entry it replaces, the waves do not
	// come back. It costs at most one early refresh per fill from cold.
	FirstJitter float64
	// RefreshJitter is the same for an entry filled by a background
	// refresh; small, it keeps phases from locking together again while
	// costing little (every refresh pays it).
	RefreshJitter float64
	// NegativeTTL is how long a Negative outcome is remembered; 0 disables.
	NegativeTTL time.Duration
	// FetchTimeout bounds the shared fetch, which runs detached from the
	// callers' contexts.
	FetchTimeout time.Duration
	// Fetch asks Ory.
	Fetch func(ctx context.Context, req R) (V, Meta, error)
	// IDs returns the session and identity a value was issued for, so
	// that InvalidateSession and InvalidateIdentity find its entry. It is
	// called on a hit only while invalidation records are held, so the
	// entry need not keep copies of the ids. Nil: entries can only be
	// purged.
	// The ids may share the value's memory: they are only compared.
	IDs func(V) (sessionID, identityID []byte)
	// Classify sorts fetch errors.
	Classify func(error) Outcome
	// Shared, when set, is the second tier shared by replicas. It needs
	// EncodeValue and DecodeValue (a value as bytes and back) and IDs (the
	// invalidation records of a value read from it are checked).
	Shared      Shared
	EncodeValue func(V) []byte
	DecodeValue func([]byte) (V, error)
	// SharedWait bounds how long a miss waits for the value of the replica
	// holding the fill lock before asking Ory itself; FetchTimeout/2 if 0.
	SharedWait time.Duration
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// refreshRetry is the pause between refresh attempts of one entry while Ory
// fails, so that a hot entry does not become a stream of calls to a sick Ory.
const refreshRetry = time.Second

// entryOverhead approximates the bytes of an entry beyond its value's cost,
// so that MaxBytes means bytes of heap. Measured with internal/bench/cmd/memory
// (--bare, and with --cache-max-bytes 8 MiB): about 260 for the entry and
// ristretto's bookkeeping, the rest allocation rounding of the value and
// ristretto's per-shard growth; it errs high, so that the bound holds.
const entryOverhead = 640

// entry is one cached answer. With a []byte value it is 80 bytes, an
// allocation class of its own: every byte of it is paid 100,000 times over,
// which is why the session and identity ids are not kept here but read from
// the value (Config.IDs) when an invalidation needs them.
type entry[V any] struct {
	// rest is the digest beyond the first 8 bytes, which are the ristretto
	// key the entry is stored under: with it the whole digest is compared
	// on every hit.
	rest  [len(Key{}) - 8]byte
	value V
	neg   *negative // non-nil for a remembered 401
	hard  int64     // unix nanos; served while now < hard
	// fetched is the revocation epoch when the fetch that made the entry
	// started: a later invalidation of its session or identity voids it.
	fetched uint64
	// nextRefresh is when a hit next starts a background refresh (unix
	// nanos); it starts at the soft expiry and moves on with each attempt.
	nextRefresh atomic.Int64
}

// negative is what a remembered 401 answers.
type negative struct{ err error }

// matches tells whether e is the entry of key (stored under key.hash()).
func (e *entry[V]) matches(key Key) bool { return e.rest == [len(Key{}) - 8]byte(key[8:]) }

// Cache is safe for concurrent use.
type Cache[R, V any] struct {
	cfg    Config[R, V]
	store  *ristretto.Cache[uint64, *entry[V]]
	group  singleflight.Group
	now    func() time.Time
	log    *slog.Logger
	wg     sync.WaitGroup // background refreshes
	closed atomic.Bool
	rev    *revocations
	stats  stats
	// clearing is above 0 while the store is cleared (Purge, VoidLocal,
	// Close): what ristretto hands OnEvict then is not an eviction.
	clearing atomic.Int32
	// evictions counts entries ristretto evicted to make room under
	// MaxBytes (Stats.Evictions).
	evictions atomic.Uint64
}

// New builds a Cache.
func New[R, V any](cfg Config[R, V]) (*Cache[R, V], error) {
	if cfg.Fetch == nil || cfg.Classify == nil {
		return nil, errors.New("tokencache: Fetch and Classify are required")
	}
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("tokencache: MaxBytes must be positive")
	}
	if cfg.FetchTimeout <= 0 {
		return nil, errors.New("tokencache: FetchTimeout must be positive")
	}
	if cfg.Shared != nil && (cfg.EncodeValue == nil || cfg.DecodeValue == nil) {
		return nil, errors.New("tokencache: Shared needs EncodeValue and DecodeValue")
	}
	if cfg.SharedWait <= 0 {
		cfg.SharedWait = cfg.FetchTimeout / 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// ristretto wants about 10 counters per item it may hold; entries are
	// about 1 KiB, so MaxBytes/100 counters is ten per entry.
	counters := max(cfg.MaxBytes/100, 1000)
	c := &Cache[R, V]{cfg: cfg, now: cfg.Now, log: cfg.Logger, rev: newRevocations()}
	store, err := ristretto.NewCache(&ristretto.Config[uint64, *entry[V]]{
		NumCounters: counters,
		MaxCost:     cfg.MaxBytes,
		BufferItems: 64,
		// For Stats: entries and bytes held (sharded counters, cheap).
		Metrics: true,
		// The key already is a uniform hash; the digest in the entry is the
		// collision check, so no conflict hash is needed.
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
		// ristretto calls OnEvict for the victims of its policy (the
		// cache is at MaxBytes), for entries past their TTL (which carry
		// their expiration) and for every entry a Clear drops; only the
		// first are evictions.
		OnEvict: func(it *ristretto.Item[*entry[V]]) {
			if it.Expiration.IsZero() && c.clearing.Load() == 0 {
				c.evictions.Add(1)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("tokencache: %w", err)
	}
	c.store = store
	return c, nil
}

// clear empties the store without counting what it drops as evictions.
func (c *Cache[R, V]) clear() {
	c.clearing.Add(1)
	defer c.clearing.Add(-1)
	c.store.Clear()
}

// Close waits for background refreshes and releases the cache.
func (c *Cache[R, V]) Close() {
	c.closed.Store(true)
	c.wg.Wait()
	c.clearing.Add(1)
	c.store.Close()
}

// WaitRefreshes waits for the background refreshes under way.
func (c *Cache[R, V]) WaitRefreshes() { c.wg.Wait() }

// Get returns the value for key, fetching it with req on a miss.
func (c *Cache[R, V]) Get(ctx context.Context, key Key, req R) (V, Source, error) {
	if e, ok := c.store.Get(key.hash()); ok && e.matches(key) {
		now := c.now().UnixNano()
		if now < e.hard && !c.voided(e) {
			if e.neg != nil {
				c.stats.negativeHits.add(key)
				var zero V
				return zero, NegativeHit, e.neg.err
			}
			if now >= e.nextRefresh.Load() {
				c.refresh(e, key, req, now)
			}
			c.stats.hits.add(key)
			return e.value, Hit, nil
		}
	}
	c.stats.misses.add(key)
	return c.miss(ctx, key, req)
}

// miss is kept out of Get so that the closure capturing req is only built,
// and only escapes to the heap, on a miss.
func (c *Cache[R, V]) miss(ctx context.Context, key Key, req R) (V, Source, error) {
	var zero V
	for attempt := 0; ; attempt++ {
		ch := c.group.DoChan(string(key[:]), func() (any, error) {
			// A flight for this key may have filled the entry between our
			// lookup and joining the group: look again before asking Ory.
			if e, ok := c.lookup(key); ok {
				if e.neg != nil {
					return e, e.neg.err
				}
				return e, nil
			}
			return c.fill(ctx, key, req, 0)
		})
		select {
		case r := <-ch:
			e, _ := r.Val.(*entry[V])
			// A flight that started before an invalidation this request
			// arrived after must not answer it: ask once more.
			if attempt == 0 && e != nil && c.voided(e) {
				continue
			}
			if r.Err != nil {
				return zero, Miss, r.Err
			}
			return e.value, Miss, nil
		case <-ctx.Done():
			return zero, Miss, ctx.Err()
		}
	}
}

// voided tells whether an invalidation or purge since e's fetch started
// ended e. The ids are only read while invalidation records are held.
func (c *Cache[R, V]) voided(e *entry[V]) bool {
	if e.fetched < c.rev.purged.Load() {
		return true
	}
	if c.rev.count.Load() == 0 || e.neg != nil || c.cfg.IDs == nil {
		return false
	}
	sid, iid := c.cfg.IDs(e.value)
	return c.rev.revoked(e.fetched, sid, iid)
}

// lookup returns a live entry.
func (c *Cache[R, V]) lookup(key Key) (*entry[V], bool) {
	if e, ok := c.store.Get(key.hash()); ok && e.matches(key) && c.now().UnixNano() < e.hard && !c.voided(e) {
		return e, true
	}
	return nil, false
}

// refresh starts one background refresh of e, unless one was started since
// nextRefresh was read.
func (c *Cache[R, V]) refresh(e *entry[V], key Key, req R, now int64) {
	next := e.nextRefresh.Load()
	if now < next || !e.nextRefresh.CompareAndSwap(next, now+int64(refreshRetry)) || c.closed.Load() {
		return
	}
	c.stats.refreshes.add(key)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// Sharing the key with misses means a miss arriving now joins this
		// call instead of making a second one.
		_, _, _ = c.group.Do(string(key[:]), func() (any, error) {
			return c.fill(context.Background(), key, req, e.hard)
		})
	}()
}

// fill fetches and stores the answer. It runs once per flight, on a context
// detached from the caller that started it (its values, such as a trace, are
// kept), so that caller's cancellation does not fail the others. current is
// the hard expiry of the entry a refresh replaces, 0 on a miss.
//
// With a shared tier, it first takes a value another replica put there
// (for a refresh, only a newer one), then takes the tier's lock of the key
// so that one replica asks Ory while the others wait for its value, bounded
// by SharedWait, and ask Ory themselves after that. Every failure of the
// shared tier is a miss of it: the fill goes on to Ory.
func (c *Cache[R, V]) fill(parent context.Context, key Key, req R, current int64) (*entry[V], error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.cfg.FetchTimeout)
	defer cancel()
	refresh := current != 0
	started := c.rev.started()
	startedAt := c.now()
	// sharedUp: the tier answered this fill's first read. When it did not
	// (down, hung, breaker open), the fill does not try it again: a sick
	// Redis delays a check by one --redis-timeout at most, not by one per
	// operation of the fill.
	sharedUp := false
	if c.cfg.Shared != nil {
		e, err := c.fromShared(ctx, key, started, current)
		if e != nil {
			return e, nil
		}
		sharedUp = err == nil
	}
	if sharedUp {
		unlock, acquired, err := c.cfg.Shared.Lock(ctx, key, c.cfg.FetchTimeout)
		switch {
		case err != nil:
			sharedUp = false
		case !acquired:
			if b, ok := c.cfg.Shared.WaitFor(ctx, key, c.cfg.SharedWait); ok {
				if e := c.sharedEntry(ctx, key, b, started, current); e != nil {
					return e, nil
				}
			}
		default:
			defer unlock()
			// The holder before us may have filled the tier between our
			// read and our lock.
			if e, _ := c.fromShared(ctx, key, started, current); e != nil {
				return e, nil
			}
		}
	}
	v, meta, err := c.fetch(ctx, key, req)
	now := c.now()
	if err != nil {
		switch c.cfg.Classify(err) {
		case Negative:
			if c.cfg.NegativeTTL > 0 {
				e := &entry[V]{rest: [len(Key{}) - 8]byte(key[8:]), neg: &negative{err}, hard: now.Add(c.cfg.NegativeTTL).UnixNano(), fetched: started}
				c.set(key, e, entryOverhead, c.cfg.NegativeTTL)
			} else if refresh {
				c.store.Del(key.hash())
			}
		case Final:
			if refresh {
				c.store.Del(key.hash())
			}
		case Transient:
			// Keep the warm entry, if any; it serves until its hard expiry.
		}
		return nil, err
	}
	e, cached := c.keep(key, v, meta, started, startedAt, now, refresh, time.Time{})
	if cached && sharedUp {
		c.toShared(ctx, key, v, meta, startedAt, time.Unix(0, e.nextRefresh.Load()), time.Unix(0, e.hard).Sub(now))
	}
	return e, nil
}

// keep makes the entry of a fetched value and stores it unless it expires
// within the leeway; cached tells which. soft, when not zero, is the
// refresh point the replica that fetched the value chose (a value from the
// shared tier keeps its phase, moved by the small refresh jitter only, so
// that replicas do not refresh it early one after the other).
func (c *Cache[R, V]) keep(key Key, v V, meta Meta, started uint64, startedAt, now time.Time, refresh bool, soft time.Time) (*entry[V], bool) {
	hard := meta.Expiry.Add(-c.cfg.Leeway)
	e := &entry[V]{rest: [len(Key{}) - 8]byte(key[8:]), value: v, hard: hard.UnixNano(), fetched: started}
	if !hard.After(now) {
		c.log.Warn("JWT from Ory expires within the expiry leeway: forwarded but not cached; raise the template's ttl or lower --expiry-leeway",
			"key", key.Short(), "expires_in", meta.Expiry.Sub(now).Round(time.Millisecond).String(), "leeway", c.cfg.Leeway.String())
		return e, false
	}
	jitter := c.cfg.FirstJitter
	if refresh || !soft.IsZero() {
		jitter = c.cfg.RefreshJitter
	}
	if soft.IsZero() || !soft.After(now) || !soft.Before(hard) {
		soft = softExpiry(meta, now, hard)
	}
	if j := int64(float64(soft.Sub(now)) * jitter); j > 0 {
		soft = soft.Add(-time.Duration(rand.Int64N(j)))
	}
	e.nextRefresh.Store(soft.UnixNano())
	c.rev.observeLifetime(hard.Sub(startedAt))
	c.set(key, e, meta.Cost+entryOverhead, hard.Sub(now))
	return e, true
}

// set stores e and waits until ristretto has applied it, so that a request
// arriving right after the flight finds it. ristretto may still refuse the
// entry; that costs one more fetch, never a wrong answer.
func (c *Cache[R, V]) set(key Key, e *entry[V], cost int64, ttl time.Duration) {
	// ristretto's own TTL runs on the wall clock; it only frees memory, the
	// hard expiry checked on every hit is what decides.
	c.store.SetWithTTL(key.hash(), e, cost, ttl+time.Second)
	c.store.Wait()
}

// ErrFetchPanicked is the error of a fetch that panicked. The fetch runs on
// a goroutine of its own (singleflight, background refresh), where a panic
// would end the process and every check in flight with it; it becomes a
// Transient failure instead.
var ErrFetchPanicked = errors.New("tokencache: the fetch panicked")

// fetch calls Config.Fetch, turning a panic into ErrFetchPanicked. The log
// line names the panic value's type and the stack, never the value: it may
// hold the request's credential.
func (c *Cache[R, V]) fetch(ctx context.Context, key Key, req R) (v V, meta Meta, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("fetch panicked; answered as a transient failure", "key", key.Short(), "panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
			var zero V
			v, meta, err = zero, Meta{}, ErrFetchPanicked
		}
	}()
	return c.cfg.Fetch(ctx, req)
}

// softExpiry is the refresh-ahead point: when a quarter of the JWT's lifetime
// is left, or, when the leeway leaves less than that, three quarters of the
// way to the hard expiry.
func softExpiry(meta Meta, now, hard time.Time) time.Time {
	issued := meta.IssuedAt
	if issued.IsZero() || issued.After(now) {
		issued = now
	}
	soft := meta.Expiry.Add(-meta.Expiry.Sub(issued) / 4)
	if !soft.Before(hard) {
		soft = now.Add(hard.Sub(now) * 3 / 4)
	}
	return soft
}

// InvalidateSession voids every entry of the session, whatever its template
// or credential kind, before it returns. Entries are not looked for: each is
// found void when next read.
func (c *Cache[R, V]) InvalidateSession(id string) { c.rev.session(id, c.now().UnixNano()) }

// InvalidateIdentity voids every entry of every session of the identity.
func (c *Cache[R, V]) InvalidateIdentity(id string) { c.rev.identity(id, c.now().UnixNano()) }

// VoidLocal voids every entry held here, remembered 401s included, without
// counting as an invalidation of what the shared tier holds (those values
// are checked against the tier's records when read): for a replica that
// may have missed invalidations while it was not subscribed to them.
func (c *Cache[R, V]) VoidLocal() {
	c.rev.voidEntries()
	c.clear()
}

// Purge voids every entry, remembered 401s included.
func (c *Cache[R, V]) Purge() {
	c.rev.purge(c.now().UnixNano())
	c.clear()
}
