package bench

// MemoryResult is what the memory probe (cmd/memory) prints as JSON and
// the orchestrator (cmd/bench) reads.
type MemoryResult struct {
	Sessions      int     `json:"sessions"`
	CacheMaxBytes int64   `json:"cache_max_bytes"`
	Cached        int     `json:"cached"`
	JWTAvgBytes   float64 `json:"jwt_avg_bytes"`
	HeapBefore    uint64  `json:"heap_before"`
	HeapAfter     uint64  `json:"heap_after"`
	RSSBefore     uint64  `json:"rss_before"`
	RSSAfter      uint64  `json:"rss_after"`
	// HeapPerEntry and RSSPerEntry are (after - before) / cached.
	HeapPerEntry float64 `json:"heap_per_entry"`
	RSSPerEntry  float64 `json:"rss_per_entry"`
	// HeapMid and RSSMid are measured when half the sessions are filled;
	// the Marginal figures are (after - mid) per session of the second
	// half: what one more session costs, without the fixed costs that the
	// first fills page in (ristretto's admission counters are allocated up
	// front but become resident only when touched).
	HeapMid              uint64  `json:"heap_mid"`
	RSSMid               uint64  `json:"rss_mid"`
	HeapMarginalPerEntry float64 `json:"heap_marginal_per_entry"`
	RSSMarginalPerEntry  float64 `json:"rss_marginal_per_entry"`
	FillSeconds          float64 `json:"fill_seconds"`
}
