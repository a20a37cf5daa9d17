package tokencache

import (
	"sync"
	"sync/atomic"
	"time"
)

// revocations records when sessions and identities were invalidated, so
// that invalidation needs no scan of the cache: an entry whose fetch started
// at or before the revocation of its session or identity (or a purge) is
// treated as absent. Records older than the longest entry lifetime seen can
// no longer match a live entry and are pruned; past maxRecords the
// revocations collapse into one purge, so memory stays bounded whatever the
// rate of invalidations.
type revocations struct {
	purged atomic.Int64 // unix nanos of the last purge
	count  atomic.Int64 // records held; 0 skips the lookups on the hot path
	// lifetime is the longest hard-expiry lifetime of any entry (nanos).
	lifetime  atomic.Int64
	lastPrune atomic.Int64

	mu         sync.RWMutex
	sessions   map[string]int64
	identities map[string]int64
}

// maxRecords bounds the records of each kind.
const maxRecords = 100_000

func newRevocations() *revocations {
	return &revocations{sessions: map[string]int64{}, identities: map[string]int64{}}
}

// revoked tells whether an entry fetched at fetched for sid/iid was
// invalidated since.
func (r *revocations) revoked(fetched int64, sid, iid string) bool {
	if fetched <= r.purged.Load() {
		return true
	}
	if r.count.Load() == 0 {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t, ok := r.sessions[sid]; ok && sid != "" && fetched <= t {
		return true
	}
	if t, ok := r.identities[iid]; ok && iid != "" && fetched <= t {
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

func (r *revocations) add(kind map[string]int64, id string, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := kind[id]; !ok {
		r.count.Add(1)
	}
	kind[id] = now
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

func (r *revocations) purgeLocked(now int64) {
	r.purged.Store(now)
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
	// fetch timeout, covered by the margin).
	horizon := now - r.lifetime.Load() - int64(time.Minute)
	for _, m := range []map[string]int64{r.sessions, r.identities} {
		for id, t := range m {
			if t < horizon {
				delete(m, id)
				r.count.Add(-1)
			}
		}
	}
}
