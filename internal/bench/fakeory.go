package bench

// FakeOryInfo is what the fake Ory process (cmd/fakeory) prints as one JSON
// line when it is ready, and the orchestrator (cmd/bench) reads.
type FakeOryInfo struct {
	URL      string `json:"url"`
	Control  string `json:"control"`
	JWTBytes int    `json:"jwt_bytes"`
}

// FakeOryStats is the fake Ory's answer to GET /stats on its control
// listener: whoami calls in all, of unknown cookies, per session, and their
// times (unix nanoseconds, the first calls of each session).
type FakeOryStats struct {
	Calls      int64     `json:"calls"`
	Unknown    int64     `json:"unknown"`
	PerSession []int64   `json:"per_session"`
	Times      [][]int64 `json:"times"`
}
