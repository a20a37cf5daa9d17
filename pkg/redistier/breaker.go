package redistier

import (
	"sync"
	"sync/atomic"
)

// breaker is a circuit breaker over consecutive failures. Closed, every
// operation goes to Redis; FailureThreshold failures in a row open it, and
// then operations fail fast without touching the network while the Tier's
// maintain loop waits a backoff and probes (half-open). Only a successful
// probe closes it again, so no request ever pays for a probe.
type breaker struct {
	threshold int64
	state     atomic.Int32  // one of stateClosed, stateOpen, stateHalfOpen
	fails     atomic.Int64  // consecutive failures while closed
	tripped   chan struct{} // cap 1: wakes the maintain loop
	mu        sync.Mutex    // serialises transitions (and their observer calls)
	onChange  func(state string)
}

const (
	stateClosed int32 = iota
	stateOpen
	stateHalfOpen
)

var stateNames = [...]string{stateClosed: BreakerClosed, stateOpen: BreakerOpen, stateHalfOpen: BreakerHalfOpen}

// newBreaker starts open: nothing is known to work until the first probe
// (the first connection) succeeds.
func newBreaker(threshold int, onChange func(string)) *breaker {
	b := &breaker{threshold: int64(threshold), tripped: make(chan struct{}, 1), onChange: onChange}
	b.state.Store(stateOpen)
	onChange(BreakerOpen)
	b.tripped <- struct{}{}
	return b
}

func (b *breaker) allow() bool { return b.state.Load() == stateClosed }

func (b *breaker) current() string { return stateNames[b.state.Load()] }

// success resets the count of consecutive failures.
func (b *breaker) success() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
}

// failure counts one; the threshold-th in a row opens the breaker. It
// reports whether this call opened it.
func (b *breaker) failure() bool {
	if b.fails.Add(1) < b.threshold {
		return false
	}
	return b.set(stateClosed, stateOpen)
}

// set moves from one state to another; false if the breaker was not in from.
func (b *breaker) set(from, to int32) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.state.CompareAndSwap(from, to) {
		return false
	}
	if to == stateClosed {
		b.fails.Store(0)
	}
	b.onChange(stateNames[to])
	if to == stateOpen {
		select {
		case b.tripped <- struct{}{}:
		default:
		}
	}
	return true
}
