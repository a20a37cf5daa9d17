package tokencache

import (
	"sync"
	"sync/atomic"
	"time"
)

// revocations records invalidations of sessions and identities so that
// invalidation needs no scan of the cache. Order is kept with an epoch, not a
// clock: every invalidation bumps the epoch and records the new value, every
// fetch notes the epoch when it starts, and an entry whose fetch started
// before the record (fetched < record) is void. A fetch that started after
// the bump sees Ory's state after the caller's revocation. So concurrent
// invalidations, a slow caller or a wall clock that steps back can never
// leave an entry alive that an invalidation which has returned should have
// voided.
//
// Records older than the longest entry lifetime seen can no longer match a
// live entry and are pruned; past maxRecords they collapse into one purge,
// so memory stays bounded whatever the rate of invalidations.
type revocations struct {
	epoch  atomic.Uint64 // bumped by every invalidation and purge
	purged atomic.Uint64 // epoch of the last purge
	// purgedAt is the clock time of the last purge, for values fetched
	// elsewhere (the shared tier), which carry a time and no epoch.
	purgedAt atomic.Int64
	count    atomic.Int64 // records held; 0 skips the lookups on the hot path
	// lifetime is the longest lifetime of any entry (nanos), for pruning.
	lifetime  atomic.Int64
	lastPrune atomic.Int64

	mu         sync.RWMutex
	sessions   map[string]record
	identities map[string]record
}

type record struct {
	epoch uint64
	at    int64 // unix nanos, only to prune
}

// maxRecords bounds the records of each kind.
const maxRecords = 100_000

func newRevocations() *revocations {
	return &revocations{sessions: map[string]record{}, identities: map[string]record{}}
}

// started is the epoch a fetch starting now records.
func (r *revocations) started() uint64 { return r.epoch.Load() }

// revoked tells whether an entry whose fetch started at epoch fetched, for
// sid/iid, was invalidated since.
func (r *revocations) revoked(fetched uint64, sid, iid []byte) bool {
	if fetched < r.purged.Load() {
		return true
	}
	if r.count.Load() == 0 {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	// m[string(b)] looks up without copying b.
	if rec, ok := r.sessions[string(sid)]; ok && len(sid) > 0 && fetched < rec.epoch {
		return true
	}
	if rec, ok := r.identities[string(iid)]; ok && len(iid) > 0 && fetched < rec.epoch {
		return true
	}
	return false
}

// revokedSince tells whether the session or identity was invalidated, or
// everything purged, at or after t (unix nanos): the check of a value
// fetched by another replica at t.
func (r *revocations) revokedSince(t int64, sid, iid []byte) bool {
	if r.purgedAt.Load() >= t {
		return true
	}
	if r.count.Load() == 0 {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rec, ok := r.sessions[string(sid)]; ok && len(sid) > 0 && rec.at >= t {
		return true
	}
	if rec, ok := r.identities[string(iid)]; ok && len(iid) > 0 && rec.at >= t {
		return true
	}
	return false
}

func (r *revocations) observeLifetime(d time.Duration) {
	for cur := r.lifetime.Load(); int64(d) > cur; cur = r.lifetime.Load() {
		if r.lifetime.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

func (r *revocations) add(kind map[string]record, id string, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := kind[id]; !ok {
		r.count.Add(1)
	}
	kind[id] = record{epoch: r.epoch.Add(1), at: now}
	r.pruneLocked(now)
	if len(r.sessions) > maxRecords || len(r.identities) > maxRecords {
		r.purgeLocked(now)
	}
}

func (r *revocations) session(id string, now int64)  { r.add(r.sessions, id, now) }
func (r *revocations) identity(id string, now int64) { r.add(r.identities, id, now) }

func (r *revocations) purge(now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purgeLocked(now)
}

// voidEntries voids every entry fetched before now, and nothing else: no
// record, no purge time for values of the shared tier, which are checked
// against the tier's own records when read. It is what a replica does when
// it may have missed invalidations (its subscription was lost).
func (r *revocations) voidEntries() { r.purged.Store(r.epoch.Add(1)) }

// purgeLocked voids everything fetched before now. Clearing the records
// loses nothing: each voided only entries older than the purge's epoch.
func (r *revocations) purgeLocked(now int64) {
	r.purged.Store(r.epoch.Add(1))
	r.purgedAt.Store(now)
	clear(r.sessions)
	clear(r.identities)
	r.count.Store(0)
}

// pruneLocked drops records that no live entry can be older than, at most
// once a second.
func (r *revocations) pruneLocked(now int64) {
	if now-r.lastPrune.Load() < int64(time.Second) {
		return
	}
	r.lastPrune.Store(now)
	// An entry lives at most lifetime after its fetch started (plus the
	// fetch timeout and clock slack, covered by the margin).
	horizon := now - r.lifetime.Load() - int64(time.Minute)
	for _, m := range []map[string]record{r.sessions, r.identities} {
		for id, rec := range m {
			if rec.at < horizon {
				delete(m, id)
				r.count.Add(-1)
			}
		}
	}
}
