package redistier

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ErrUnavailable is returned, wrapped, by an operation that failed fast
// without touching the network: the breaker is open or Redis has not been
// reached yet. The wrapped text says why (the last error seen).
var ErrUnavailable = errors.New("redistier: redis unavailable")

// Tier is a shared cache tier in Redis. It is safe for concurrent use.
type Tier struct {
	o      Options
	ropt   rueidis.ClientOption
	keys   keyring
	warn   *warner
	br     *breaker
	client atomic.Pointer[clientRef]
	// lastErr is the last connect or probe error, for the text of
	// ErrUnavailable.
	lastErr atomic.Pointer[string]
	pause   string // key of the shared 429 pause

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

type clientRef struct{ c rueidis.Client }

// Scripts. Every one touches a single key, so they run on Cluster too, and
// is safe to run twice, so rueidis may retry it over a new connection when
// the old one broke (after a Redis restart each connection fails once).
var (
	// unlock deletes the lock only while it holds our token.
	unlockScript = rueidis.NewLuaScriptRetryable(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
	// pauseScript sets the pause unless one that lasts longer is set, so
	// concurrent 429s keep the longest Retry-After. TTLs compare on
	// Redis' clock, not the replicas'.
	pauseScript = rueidis.NewLuaScriptRetryable(`if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0`)
	// casScript replaces the value only if it is still ARGV[1] ("" for
	// none): a compare-and-set, since values are sealed and cannot be
	// compared in Lua.
	casScript = rueidis.NewLuaScriptRetryable(`local c = redis.call('GET', KEYS[1]) if (c == false and ARGV[1] == '') or c == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0`)
)

// New validates o and returns a Tier. It fails only on bad options: when
// Redis cannot be reached, New still succeeds, logs a warning, and every
// operation fails fast (ErrUnavailable) while a background loop keeps
// trying to connect. Close releases it.
func New(ctx context.Context, o Options) (*Tier, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ropt, err := o.clientOption()
	if err != nil {
		return nil, err
	}
	keys := make(keyring, 0, len(o.Secrets))
	for i, s := range o.Secrets {
		k, err := newSecretKey(s)
		if err != nil {
			return nil, fmt.Errorf("redistier: Secrets[%d]: %w", i, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 2 && keys[0].id == keys[1].id {
		return nil, errors.New("redistier: Secrets: the previous secret is the current one")
	}
	t := &Tier{o: o, ropt: ropt, keys: keys, warn: newWarner(o.Logger, o.WarnEvery), pause: o.Prefix + "pause"}
	t.br = newBreaker(o.FailureThreshold, o.Observer.ObserveBreaker)
	msg := "not connected yet"
	t.lastErr.Store(&msg)
	// The Tier outlives New's context (it ends with Close), but keeps its values.
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	t.wg.Add(1)
	go t.maintain()
	return t, nil
}

// Close stops the background loop and closes the connections. Operations
// after Close fail fast; a running Subscribe returns.
func (t *Tier) Close() {
	t.closed.Do(func() {
		t.cancel()
		t.wg.Wait()
		if ref := t.client.Swap(nil); ref != nil {
			ref.c.Close()
		}
	})
}

// Healthy tells whether operations currently go to Redis (connected and
// the breaker closed).
func (t *Tier) Healthy() bool { return t.client.Load() != nil && t.br.allow() }

// maintain connects, then probes while the breaker is open: it waits a
// backoff (doubling from MinBackoff to MaxBackoff, with jitter), moves to
// half-open, connects if no client exists yet, PINGs, and closes the
// breaker on success or opens it again.
func (t *Tier) maintain() {
	defer t.wg.Done()
	first := true // the first connection attempt goes at once
	wait := t.o.MinBackoff
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.br.tripped:
		}
		for !t.br.allow() {
			if !first && !t.sleep(t.ctx, jitter(wait)) {
				return
			}
			if !t.br.set(stateOpen, stateHalfOpen) {
				continue
			}
			start := time.Now()
			err := t.probe()
			if err == nil {
				t.o.Observer.ObserveRedis(OpProbe, ResultOK, time.Since(start))
				t.br.set(stateHalfOpen, stateClosed)
				if !first {
					t.o.Logger.Info("redis reachable again", slog.String("url", redactedURL(t.o.URL)))
				}
				first, wait = false, t.o.MinBackoff
				break
			}
			t.o.Observer.ObserveRedis(OpProbe, classify(err, nil), time.Since(start))
			msg := err.Error()
			t.lastErr.Store(&msg)
			t.warn.warn("probe", "redis unreachable; checks go on without it", slog.String("url", redactedURL(t.o.URL)), slog.String("error", msg))
			t.br.set(stateHalfOpen, stateOpen)
			if !first {
				wait = min(2*wait, t.o.MaxBackoff)
			}
			first = false
		}
	}
}

// probe makes the client if there is none yet (rueidis dials in
// NewClient, so it fails while Redis is down), then PINGs.
func (t *Tier) probe() error {
	ref := t.client.Load()
	if ref == nil {
		c, err := rueidis.NewClient(t.ropt)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		if t.ctx.Err() != nil { // closed while dialling
			c.Close()
			return t.ctx.Err()
		}
		ref = &clientRef{c: c}
		t.client.Store(ref)
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.o.DialTimeout)
	defer cancel()
	return ref.c.Do(ctx, ref.c.B().Ping().Build()).Error()
}

// sleep waits d or until ctx ends (false).
func (t *Tier) sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter is d ± 20%, so replicas that lost Redis together do not probe in step.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/5 + mrand.N(d/5*2+1)
}

// unavailable is the fast-fail error.
func (t *Tier) unavailable() error {
	state := "circuit " + t.br.current()
	if t.client.Load() == nil {
		state = "not connected"
	}
	return fmt.Errorf("%w (%s): %s", ErrUnavailable, state, *t.lastErr.Load())
}

// conn returns the client if the breaker lets the operation through.
func (t *Tier) conn(bypass bool) (rueidis.Client, error) {
	ref := t.client.Load()
	if ref == nil || t.ctx.Err() != nil || (!bypass && !t.br.allow()) {
		return nil, t.unavailable()
	}
	return ref.c, nil
}

// classify names the result of a failed call; parent is the caller's
// context (nil for background work).
func classify(err error, parent context.Context) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, ErrUnavailable):
		return ResultUnavailable
	case parent != nil && parent.Err() != nil:
		return ResultCanceled
	case errors.Is(err, context.DeadlineExceeded), isNetTimeout(err):
		return ResultTimeout
	case isOOM(err):
		return ResultRejected
	case isGarbage(err):
		return ResultForged
	default:
		return ResultError
	}
}

// isNetTimeout: a connection deadline passed (rueidis sets one from the
// context's deadline on a synchronous call).
func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isOOM(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(re.Error(), "OOM")
}

// isGarbage: something else stored at one of our keys.
func isGarbage(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(re.Error(), "WRONGTYPE")
}

// done records a finished call: the breaker, the observer and, for
// failures, a rate-limited warning. It returns err, wrapped with op.
func (t *Tier) done(op string, parent context.Context, start time.Time, result string, err error) error {
	d := time.Since(start)
	if err == nil {
		t.br.success()
		t.o.Observer.ObserveRedis(op, result, d)
		return nil
	}
	result = classify(err, parent)
	t.o.Observer.ObserveRedis(op, result, d)
	switch result {
	case ResultUnavailable:
		return err // no network was used; the text says why
	case ResultCanceled:
		// The caller gave up: nothing against Redis.
		return fmt.Errorf("redistier: %s: %w", op, err)
	case ResultRejected:
		// Redis answered: it is reachable, only full.
		t.br.success()
		t.warn.warn("rejected", "redis refused a write (maxmemory?); checks go on without it", slog.String("op", op), slog.String("error", err.Error()))
	case ResultForged:
		t.br.success()
		t.warn.warn("forged", "redis holds something else at one of our keys; treated as a miss", slog.String("op", op))
	default:
		if t.br.failure() {
			t.warn.warn("breaker", "redis failing; circuit open, checks go on without it", slog.String("op", op), slog.String("error", err.Error()))
		} else {
			t.warn.warn("op", "redis operation failed; checks go on without it", slog.String("op", op), slog.String("result", result), slog.String("error", err.Error()))
		}
	}
	return fmt.Errorf("redistier: %s: %w", op, err)
}

// Key names. The value and the lock of one entry share a hash tag, so on
// Cluster they live in one slot and WaitFor reads both in order on one
// connection.
func (t *Tier) entryTag(k *secretKey, key [32]byte) string {
	return t.o.Prefix + "{" + k.tag([]byte("entry"), key[:]) + "}"
}

func (t *Tier) recordName(k *secretKey, kind, id string) string {
	return t.o.Prefix + "i:" + k.tag([]byte("invalidation"), []byte(kind), []byte(id))
}

// Get returns the value stored for key, if one is there and authenticates.
// A value that fails authentication is a miss (ok false, err nil) with a
// rate-limited warning, never returned. With a previous secret, the value
// written under it is read too (one round trip).
func (t *Tier) Get(ctx context.Context, key [32]byte) (plaintext []byte, ok bool, err error) {
	c, ctx2, cancel, start, err := t.begin(ctx, false)
	defer cancel()
	if err != nil {
		return nil, false, t.done(OpGet, ctx, start, "", err)
	}
	names := make([]string, len(t.keys))
	cmds := make(rueidis.Commands, len(t.keys))
	for i, k := range t.keys {
		names[i] = t.entryTag(k, key) + "v"
		cmds[i] = c.B().Get().Key(names[i]).Build()
	}
	v, found, forged, err := t.firstOpen(c.DoMulti(ctx2, cmds...), names)
	if err != nil {
		return nil, false, t.done(OpGet, ctx, start, "", err)
	}
	result := ResultMiss
	switch {
	case found:
		result = ResultHit
	case forged:
		result = ResultForged
		t.warn.warn("forged", "a redis value failed authentication; treated as a miss", slog.String("op", OpGet))
	}
	_ = t.done(OpGet, ctx, start, result, nil)
	return v, found, nil
}

// firstOpen returns the first of the GET results that opens. A WRONGTYPE
// reply counts as a forged value; any other error fails the whole read.
func (t *Tier) firstOpen(res []rueidis.RedisResult, names []string) (v []byte, found, forged bool, err error) {
	forged, err = replies(res, func(i int, b []byte) (stop, bad bool) {
		pt, e := t.keys.open(names[i], b)
		if e != nil {
			return false, true
		}
		v, found = pt, true
		return true, false
	})
	if err != nil {
		return nil, false, false, err
	}
	return v, found, forged, nil
}

// replies walks the bulk-string replies of GETs, in order: a nil reply is
// skipped, a WRONGTYPE or garbage reply counts as forged, any other error
// ends the walk with it. each says whether to stop, and whether the value
// failed to open (forged too).
func replies(res []rueidis.RedisResult, each func(i int, b []byte) (stop, bad bool)) (forged bool, err error) {
	for i, r := range res {
		b, e := r.AsBytes()
		switch {
		case rueidis.IsRedisNil(e):
			continue
		case isGarbage(e):
			forged = true
			continue
		case e != nil:
			return forged, e
		}
		stop, bad := each(i, b)
		forged = forged || bad
		if stop {
			break
		}
	}
	return forged, nil
}

// begin starts one operation: its start time, a connection (none while the
// breaker is open: the error then fails fast, with no network) and the
// operation's deadline. The caller defers cancel, also on an error.
func (t *Tier) begin(ctx context.Context, bypass bool) (c rueidis.Client, opCtx context.Context, cancel context.CancelFunc, start time.Time, err error) {
	start = time.Now()
	if c, err = t.conn(bypass); err != nil {
		return nil, ctx, func() {}, start, err
	}
	opCtx, cancel = context.WithTimeout(ctx, t.o.Timeout)
	return c, opCtx, cancel, start, nil
}

// Set stores plaintext for key, sealed under the current secret, for ttl
// (the time left to the value's hard expiry; ttl under a millisecond
// stores nothing).
func (t *Tier) Set(ctx context.Context, key [32]byte, plaintext []byte, ttl time.Duration) error {
	return t.write(ctx, OpSet, ttl, func(opCtx context.Context, c rueidis.Client) error {
		name := t.entryTag(t.keys.current(), key) + "v"
		sealed := t.keys.current().seal(name, plaintext)
		return c.Do(opCtx, c.B().Set().Key(name).Value(rueidis.BinaryString(sealed)).Px(ttl).Build().ToRetryable()).Error()
	})
}

// write runs op, a write of something that lives for ttl: nothing at all
// under a millisecond (Redis' PX cannot hold it), else do within Timeout,
// recorded by done.
func (t *Tier) write(ctx context.Context, op string, ttl time.Duration, do func(opCtx context.Context, c rueidis.Client) error) error {
	if ttl < time.Millisecond {
		return nil
	}
	c, opCtx, cancel, start, err := t.begin(ctx, false)
	defer cancel()
	if err != nil {
		return t.done(op, ctx, start, "", err)
	}
	return t.done(op, ctx, start, ResultOK, do(opCtx, c))
}

// Lock takes the fill lock of key for ttl (SET NX PX with a random token),
// so that one replica asks Ory while the others WaitFor its value. unlock
// is never nil; it deletes the lock only while it is still ours (a lock
// that expired and was taken by another replica is left alone) and is
// bounded by Timeout. On an error, acquired is false and the caller goes
// on alone.
func (t *Tier) Lock(ctx context.Context, key [32]byte, ttl time.Duration) (unlock func(), acquired bool, err error) {
	nop := func() {}
	c, ctx2, cancel, start, err := t.begin(ctx, false)
	defer cancel()
	if err != nil {
		return nop, false, t.done(OpLock, ctx, start, "", err)
	}
	var raw [16]byte
	_, _ = crand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	name := t.entryTag(t.keys.current(), key) + "l"
	err = c.Do(ctx2, c.B().Set().Key(name).Value(token).Nx().Px(max(ttl, time.Millisecond)).Build()).Error()
	if rueidis.IsRedisNil(err) {
		_ = t.done(OpLock, ctx, start, ResultBusy, nil)
		return nop, false, nil
	}
	if err != nil {
		return nop, false, t.done(OpLock, ctx, start, "", err)
	}
	_ = t.done(OpLock, ctx, start, ResultOK, nil)
	var once sync.Once
	return func() {
		once.Do(func() {
			start := time.Now()
			c, err := t.conn(false)
			if err == nil {
				uctx, cancel := context.WithTimeout(t.ctx, t.o.Timeout)
				defer cancel()
				err = unlockScript.Exec(uctx, c, []string{name}, []string{token}).Error()
			}
			_ = t.done(OpUnlock, nil, start, ResultOK, err)
		})
	}, true, nil
}

// WaitFor is the waiting side of Lock: it polls (every 2 ms at first,
// backing off to 25 ms) until key has a value, which it returns, or the
// bound (or ctx) passes, or the lock is gone without a value (its holder
// failed or got no JWT), and then returns false so the caller asks Ory
// itself. Each poll reads the lock before the value in one round trip: a
// holder sets the value before it unlocks, so "no lock" followed by "no
// value" means no value is coming.
func (t *Tier) WaitFor(ctx context.Context, key [32]byte, bound time.Duration) ([]byte, bool) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	lock := t.entryTag(t.keys.current(), key) + "l"
	names := make([]string, len(t.keys))
	for i, k := range t.keys {
		names[i] = t.entryTag(k, key) + "v"
	}
	interval := 2 * time.Millisecond
	for {
		v, found, held, err := t.poll(ctx, lock, names)
		switch {
		case found:
			t.o.Observer.ObserveRedis(OpWait, ResultHit, time.Since(start))
			return v, true
		case err != nil && ctx.Err() != nil:
			t.o.Observer.ObserveRedis(OpWait, ResultBound, time.Since(start))
			return nil, false
		case err != nil:
			t.o.Observer.ObserveRedis(OpWait, classify(err, ctx), time.Since(start))
			return nil, false
		case !held:
			t.o.Observer.ObserveRedis(OpWait, ResultMiss, time.Since(start))
			return nil, false
		}
		if !t.sleep(ctx, interval) {
			t.o.Observer.ObserveRedis(OpWait, ResultBound, time.Since(start))
			return nil, false
		}
		interval = min(2*interval, 25*time.Millisecond)
	}
}

// poll is one round trip of WaitFor. Failures count for the breaker; the
// caller observes WaitFor as a whole.
func (t *Tier) poll(ctx context.Context, lock string, names []string) (v []byte, found, held bool, err error) {
	c, err := t.conn(false)
	if err != nil {
		return nil, false, false, err
	}
	ctx2, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	cmds := make(rueidis.Commands, 0, 1+len(names))
	cmds = append(cmds, c.B().Exists().Key(lock).Build())
	for _, n := range names {
		cmds = append(cmds, c.B().Get().Key(n).Build())
	}
	res := c.DoMulti(ctx2, cmds...)
	n, err := res[0].AsInt64()
	if err == nil {
		var forged bool
		v, found, forged, err = t.firstOpen(res[1:], names)
		if forged && !found {
			t.warn.warn("forged", "a redis value failed authentication; treated as a miss", slog.String("op", OpWait))
		}
	}
	if err != nil {
		if ctx.Err() == nil { // the bound passing is no fault of Redis
			t.recordFailure(OpWait, err)
		}
		return nil, false, false, err
	}
	t.br.success()
	return v, found, n > 0, nil
}

// recordFailure holds a failure against Redis without an observer call.
func (t *Tier) recordFailure(op string, err error) {
	switch classify(err, nil) {
	case ResultRejected, ResultForged, ResultUnavailable:
		return
	}
	if t.br.failure() {
		t.warn.warn("breaker", "redis failing; circuit open, checks go on without it", slog.String("op", op), slog.String("error", err.Error()))
	}
}

// Pause records that Ory asked every replica to wait until until (a 429's
// Retry-After). A longer pause already set is kept. The marker is sealed
// under the oldest configured secret, so replicas mid-rotation read it.
// The caller caps until (Retry-After can be anything).
func (t *Tier) Pause(ctx context.Context, until time.Time) error {
	d := until.Sub(t.o.Now())
	return t.write(ctx, OpPause, d, func(opCtx context.Context, c rueidis.Client) error {
		sealed := t.keys.oldest().seal(t.pause, binary.BigEndian.AppendUint64(nil, uint64(until.UnixNano())))
		px := strconv.FormatInt(d.Milliseconds(), 10)
		return pauseScript.Exec(opCtx, c, []string{t.pause}, []string{string(sealed), px}).Error()
	})
}

// PausedUntil returns the shared pause, or the zero time if none is set.
// The time is the earlier of what the pausing replica asked for and what
// Redis' TTL of the marker says, so clock skew cannot stretch it.
func (t *Tier) PausedUntil(ctx context.Context) (time.Time, error) {
	c, ctx2, cancel, start, err := t.begin(ctx, false)
	defer cancel()
	if err != nil {
		return time.Time{}, t.done(OpPausedUntil, ctx, start, "", err)
	}
	res := c.DoMulti(ctx2, c.B().Get().Key(t.pause).Build(), c.B().Pttl().Key(t.pause).Build())
	b, err := res[0].AsBytes()
	if rueidis.IsRedisNil(err) {
		return time.Time{}, t.done(OpPausedUntil, ctx, start, ResultMiss, nil)
	}
	var pttl int64
	if err == nil {
		pttl, err = res[1].AsInt64()
	}
	if err != nil {
		return time.Time{}, t.done(OpPausedUntil, ctx, start, "", err)
	}
	pt, err := t.keys.open(t.pause, b)
	if err != nil || len(pt) != 8 {
		t.warn.warn("forged", "the redis pause marker failed authentication; ignored", slog.String("op", OpPausedUntil))
		return time.Time{}, t.done(OpPausedUntil, ctx, start, ResultForged, nil)
	}
	until := time.Unix(0, int64(binary.BigEndian.Uint64(pt)))
	if pttl >= 0 {
		if byTTL := t.o.Now().Add(time.Duration(pttl) * time.Millisecond); byTTL.Before(until) {
			until = byTTL
		}
	}
	return until, t.done(OpPausedUntil, ctx, start, ResultHit, nil)
}
