// Package testclock is a clock a test moves by hand, for anything with TTLs
// (the cache, the fake Ory's JWTs), so that those tests need not wait for
// real time to pass.
package testclock

import (
	"sync"
	"time"
)

// Clock is an injectable clock for anything with TTLs; safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d (backwards for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
