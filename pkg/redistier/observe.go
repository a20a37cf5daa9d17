package redistier

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Observer receives what a metrics package needs: one call per operation
// and one per breaker transition. Every argument is one of the constants
// below, so label sets are fixed. Calls come from request goroutines and
// must be cheap and safe for concurrent use.
type Observer interface {
	// ObserveRedis is called once per operation with its Op* name, its
	// Result* and how long it took (0 for a fast fail).
	ObserveRedis(op, result string, d time.Duration)
	// ObserveBreaker is called with the new Breaker* state on every
	// transition (and once with the initial state from New).
	ObserveBreaker(state string)
}

// Operation names passed to Observer.ObserveRedis.
const (
	OpGet           = "get"
	OpSet           = "set"
	OpLock          = "lock"
	OpUnlock        = "unlock"
	OpWait          = "wait"
	OpPause         = "pause"
	OpPausedUntil   = "paused_until"
	OpInvalidate    = "invalidate"
	OpInvalidatedAt = "invalidated_at"
	OpSubscribe     = "subscribe" // a (re)subscription attempt
	OpMessage       = "message"   // one received invalidation message
	OpProbe         = "probe"     // the breaker's connect or PING probe
)

// Results passed to Observer.ObserveRedis.
const (
	ResultOK          = "ok"
	ResultHit         = "hit"         // Get, WaitFor: a value that authenticated
	ResultMiss        = "miss"        // Get: no value; WaitFor: the lock holder finished without one
	ResultBusy        = "busy"        // Lock: held by someone else
	ResultBound       = "bound"       // WaitFor: the bound passed
	ResultForged      = "forged"      // a value or message failed authentication (or is garbage): a miss, never served
	ResultRejected    = "rejected"    // Redis refused a write (OOM under maxmemory noeviction): the breaker stays closed
	ResultError       = "error"       // any other failure: a network or protocol error, an error reply
	ResultTimeout     = "timeout"     // the per-operation timeout passed
	ResultUnavailable = "unavailable" // fast fail: the breaker is open or Redis was never reached; no network
	ResultCanceled    = "canceled"    // the caller's context ended first; not held against Redis
)

// Breaker states passed to Observer.ObserveBreaker.
const (
	BreakerClosed   = "closed"    // operations go to Redis
	BreakerOpen     = "open"      // operations fail fast; a probe runs after a backoff
	BreakerHalfOpen = "half_open" // a probe is in flight; operations still fail fast
)

// Ops lists every operation name passed to Observer.ObserveRedis: a fixed
// label set of a metrics package, as Results and BreakerStates are.
func Ops() []string {
	return []string{OpGet, OpSet, OpLock, OpUnlock, OpWait, OpPause, OpPausedUntil, OpInvalidate, OpInvalidatedAt, OpSubscribe, OpMessage, OpProbe}
}

// Results lists every result passed to Observer.ObserveRedis.
func Results() []string {
	return []string{ResultOK, ResultHit, ResultMiss, ResultBusy, ResultBound, ResultForged, ResultRejected, ResultError, ResultTimeout, ResultUnavailable, ResultCanceled}
}

// BreakerStates lists every state passed to Observer.ObserveBreaker.
func BreakerStates() []string { return []string{BreakerClosed, BreakerOpen, BreakerHalfOpen} }

type nopObserver struct{}

func (nopObserver) ObserveRedis(string, string, time.Duration) {}
func (nopObserver) ObserveBreaker(string)                      {}

// warner logs warnings of one kind at most once per interval, and says how
// many were left out since the last one, so a sick Redis under load cannot
// flood the log.
type warner struct {
	log   *slog.Logger
	mu    sync.Mutex
	kinds map[string]*warnKind
	every time.Duration
}

type warnKind struct {
	lim        *rate.Limiter
	suppressed atomic.Int64
}

func newWarner(log *slog.Logger, every time.Duration) *warner {
	return &warner{log: log, kinds: map[string]*warnKind{}, every: every}
}

// warn logs msg with attrs unless a warning of this kind was logged less
// than the interval ago. kind is one of a fixed set of names.
func (w *warner) warn(kind, msg string, attrs ...any) {
	w.mu.Lock()
	k, ok := w.kinds[kind]
	if !ok {
		k = &warnKind{lim: rate.NewLimiter(rate.Every(w.every), 1)}
		w.kinds[kind] = k
	}
	w.mu.Unlock()
	if !k.lim.Allow() {
		k.suppressed.Add(1)
		return
	}
	if n := k.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("suppressed", n))
	}
	w.log.Warn(msg, attrs...)
}
