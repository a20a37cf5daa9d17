package tokencache

import "sync/atomic"

// Stats are the cache's counters since it was built, and what it holds now.
type Stats struct {
	Entries, Bytes                        uint64
	Hits, Misses, NegativeHits, Refreshes uint64
	// SharedHits are L1 misses answered from the shared tier.
	SharedHits uint64
	// Evictions are the entries dropped to make room for new ones while
	// the cache was at MaxBytes (expired and purged entries not counted).
	Evictions uint64
}

// Stats returns the current counters.
func (c *Cache[R, V]) Stats() Stats {
	s := Stats{
		Hits:         c.stats.hits.load(),
		Misses:       c.stats.misses.load(),
		NegativeHits: c.stats.negativeHits.load(),
		Refreshes:    c.stats.refreshes.load(),
		SharedHits:   c.stats.sharedHits.load(),
		Evictions:    c.evictions.Load(),
	}
	if m := c.store.Metrics; m != nil {
		s.Entries = sub(m.KeysAdded(), m.KeysEvicted())
		s.Bytes = sub(m.CostAdded(), m.CostEvicted())
	}
	return s
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

type stats struct {
	hits, misses, negativeHits, refreshes, sharedHits counter
}

// counter is a striped counter: cache hits on all cores would otherwise
// fight over one cache line. The stripe comes from the key, which is a
// uniform hash.
type counter [8]struct {
	n atomic.Uint64
	_ [56]byte
}

func (c *counter) add(k Key) { c[k[9]&7].n.Add(1) }

func (c *counter) load() uint64 {
	var n uint64
	for i := range c {
		n += c[i].n.Load()
	}
	return n
}
