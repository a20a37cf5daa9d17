package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// redisMetrics are the shared tier's series. Every (op, result) pair of
// redistier's fixed lists is created up front, so the hot path is two map
// reads and an atomic add, and every series exists (at 0) from the start.
type redisMetrics struct {
	ops      map[string]map[string]prometheus.Counter // by op, then result
	duration map[string]prometheus.Observer           // by op
	mu       sync.Mutex                               // orders breaker transitions
	breaker  map[string]prometheus.Gauge              // by state
}

func (r *redisMetrics) init() []prometheus.Collector {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ory_ext_authz_redis_operations_total",
		Help: "Operations on the shared tier (Redis), by op and result (ok, hit, miss, busy, bound, forged, rejected, error, timeout, unavailable: failed fast with the circuit open, canceled).",
	}, []string{"op", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ory_ext_authz_redis_operation_duration_seconds",
		Help: "Duration of operations on the shared tier (Redis) that reached it, by op (fast fails with the circuit open are not observed).",
		// 20µs .. 1.3s: a loopback or in-zone round trip is well under a
		// millisecond, --redis-timeout is 50ms by default, a probe's dial
		// up to a second.
		Buckets: prometheus.ExponentialBuckets(20e-6, 2, 17),
	}, []string{"op"})
	breaker := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ory_ext_authz_redis_breaker_state",
		Help: "State of the shared tier's circuit breaker: 1 for the current state (closed: in use; open: failing fast, probing; half_open: a probe in flight), 0 for the others; all 0 without --redis-url.",
	}, []string{"state"})
	r.ops = map[string]map[string]prometheus.Counter{}
	r.duration = map[string]prometheus.Observer{}
	for _, op := range redistier.Ops() {
		r.ops[op] = map[string]prometheus.Counter{}
		for _, res := range redistier.Results() {
			r.ops[op][res] = ops.WithLabelValues(op, res)
		}
		r.duration[op] = duration.WithLabelValues(op)
	}
	r.breaker = map[string]prometheus.Gauge{}
	for _, st := range redistier.BreakerStates() {
		r.breaker[st] = breaker.WithLabelValues(st)
	}
	return []prometheus.Collector{ops, duration, breaker}
}

// ObserveRedis implements redistier.Observer. A result outside redistier's
// list counts as an error; an operation outside it is not counted (label
// values stay within the fixed sets).
func (m *Metrics) ObserveRedis(op, result string, d time.Duration) {
	byResult, ok := m.redis.ops[op]
	if !ok {
		return
	}
	c, ok := byResult[result]
	if !ok {
		c = byResult[redistier.ResultError]
	}
	c.Inc()
	if result != redistier.ResultUnavailable {
		m.redis.duration[op].Observe(d.Seconds())
	}
}

// ObserveBreaker implements redistier.Observer.
func (m *Metrics) ObserveBreaker(state string) {
	if _, ok := m.redis.breaker[state]; !ok {
		return
	}
	m.redis.mu.Lock()
	defer m.redis.mu.Unlock()
	for st, g := range m.redis.breaker {
		if st == state {
			g.Set(1)
		} else {
			g.Set(0)
		}
	}
}

var _ redistier.Observer = (*Metrics)(nil)
