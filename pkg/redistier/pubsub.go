package redistier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Invalidation kinds.
const (
	KindSession  = "session"
	KindIdentity = "identity"
	KindPurge    = "purge" // every entry; its id is ""
)

var kindCodes = map[string]byte{KindSession: 1, KindIdentity: 2, KindPurge: 3}

var kindNames = map[byte]string{1: KindSession, 2: KindIdentity, 3: KindPurge}

// casAttempts bounds the compare-and-set loop of a record under contention.
const casAttempts = 5

func checkKind(kind, id string) error {
	if _, ok := kindCodes[kind]; !ok {
		return fmt.Errorf("redistier: unknown invalidation kind %q", kind)
	}
	if (kind == KindPurge) != (id == "") {
		return fmt.Errorf("redistier: a %s invalidation needs an id exactly when it is not a purge", kind)
	}
	return nil
}

// Invalidate records that entries of (kind, id) fetched before at are void,
// and publishes it to every subscribed replica. receivers is the number of
// subscribed connections that got the message (this Tier's own, if it is
// subscribed, included; on Cluster, sharded pub/sub makes the count cover
// the whole cluster).
//
// The record is kept for InvalidationTTL under every configured secret's
// key name (ids are HMACed: Redis never sees them), holding the latest at
// of all invalidations of (kind, id). The message is sealed under the
// oldest configured secret, so replicas mid-rotation can open it.
//
// Unlike the other operations, Invalidate does not fail fast on an open
// breaker: an admin's call is rare and worth a try (each step still bounded
// by Timeout). On any error the caller must still apply the invalidation
// locally, and report that other replicas may not have it.
func (t *Tier) Invalidate(ctx context.Context, kind, id string, at time.Time) (receivers int64, err error) {
	if err := checkKind(kind, id); err != nil {
		return 0, err
	}
	start := time.Now()
	c, err := t.conn(true)
	if err != nil {
		return 0, t.done(OpInvalidate, ctx, start, "", err)
	}
	for _, k := range t.keys {
		if err := t.keepLatest(ctx, c, k, t.recordName(k, kind, id), at); err != nil {
			return 0, t.done(OpInvalidate, ctx, start, "", fmt.Errorf("record: %w", err))
		}
	}
	msg := make([]byte, 0, 9+len(id))
	msg = append(msg, kindCodes[kind])
	msg = binary.BigEndian.AppendUint64(msg, uint64(at.UnixNano()))
	msg = append(msg, id...)
	sealed := rueidis.BinaryString(t.keys.oldest().seal(t.messageAD(), msg))
	ctx2, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	var pub rueidis.Completed
	if c.Mode() == rueidis.ClientModeCluster {
		pub = c.B().Spublish().Channel(t.o.Channel).Message(sealed).Build()
	} else {
		pub = c.B().Publish().Channel(t.o.Channel).Message(sealed).Build()
	}
	// Retried over a new connection if the old one broke: a message
	// delivered twice is applied twice, which changes nothing.
	receivers, err = c.Do(ctx2, pub.ToRetryable()).AsInt64()
	if err != nil {
		return 0, t.done(OpInvalidate, ctx, start, "", fmt.Errorf("publish: %w", err))
	}
	return receivers, t.done(OpInvalidate, ctx, start, ResultOK, nil)
}

func (t *Tier) messageAD() string { return t.o.Prefix + "message:" + t.o.Channel }

// keepLatest sets the record name (of secret k, and sealed under it, so
// that a replica that knows only k reads it) to at unless it holds a later
// time: read, compare, then compare-and-set, retried while another writer
// wins.
func (t *Tier) keepLatest(ctx context.Context, c rueidis.Client, k *secretKey, name string, at time.Time) error {
	px := t.o.InvalidationTTL.Milliseconds()
	for range casAttempts {
		ctx2, cancel := context.WithTimeout(ctx, t.o.Timeout)
		cur, err := c.Do(ctx2, c.B().Get().Key(name).Build()).AsBytes()
		cancel()
		switch {
		case rueidis.IsRedisNil(err):
			cur = nil
		case err != nil && !isGarbage(err):
			return err
		case err == nil:
			if prev, ok := t.openTime(name, cur); ok && !prev.Before(at) {
				return nil
			}
		}
		if isGarbage(err) {
			// Not a string: replace it outright (SET overwrites any type).
			ctx2, cancel = context.WithTimeout(ctx, t.o.Timeout)
			err = c.Do(ctx2, c.B().Set().Key(name).Value(rueidis.BinaryString(t.sealTime(k, name, at))).Px(t.o.InvalidationTTL).Build().ToRetryable()).Error()
			cancel()
			return err
		}
		ctx2, cancel = context.WithTimeout(ctx, t.o.Timeout)
		n, err := casScript.Exec(ctx2, c, []string{name}, []string{string(cur), string(t.sealTime(k, name, at)), fmt.Sprint(px)}).AsInt64()
		cancel()
		if err != nil {
			return err
		}
		if n == 1 {
			return nil
		}
	}
	return errors.New("record kept changing under concurrent invalidations")
}

func (t *Tier) sealTime(k *secretKey, name string, at time.Time) []byte {
	return k.seal(name, binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())))
}

func (t *Tier) openTime(name string, sealed []byte) (time.Time, bool) {
	pt, err := t.keys.open(name, sealed)
	if err != nil || len(pt) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(pt))), true
}

// InvalidatedAt returns the latest recorded invalidation that covers
// (kind, id): its own record or the last purge, whichever is later. ok is
// false when neither is recorded. A record that fails authentication is
// ignored with a warning.
func (t *Tier) InvalidatedAt(ctx context.Context, kind, id string) (at time.Time, ok bool, err error) {
	if err := checkKind(kind, id); err != nil {
		return time.Time{}, false, err
	}
	c, ctx2, cancel, start, err := t.begin(ctx, false)
	defer cancel()
	if err != nil {
		return time.Time{}, false, t.done(OpInvalidatedAt, ctx, start, "", err)
	}
	var names []string
	for _, k := range t.keys {
		names = append(names, t.recordName(k, KindPurge, ""))
		if kind != KindPurge {
			names = append(names, t.recordName(k, kind, id))
		}
	}
	cmds := make(rueidis.Commands, len(names))
	for i, n := range names {
		cmds[i] = c.B().Get().Key(n).Build()
	}
	forged, err := replies(c.DoMulti(ctx2, cmds...), func(i int, b []byte) (stop, bad bool) {
		rec, good := t.openTime(names[i], b)
		if !good {
			return false, true
		}
		if !ok || rec.After(at) {
			at, ok = rec, true
		}
		return false, false
	})
	if err != nil {
		return time.Time{}, false, t.done(OpInvalidatedAt, ctx, start, "", err)
	}
	result := ResultMiss
	switch {
	case ok:
		result = ResultHit
	case forged:
		result = ResultForged
	}
	if forged {
		t.warn.warn("forged", "a redis invalidation record failed authentication; ignored", slog.String("op", OpInvalidatedAt))
	}
	return at, ok, t.done(OpInvalidatedAt, ctx, start, result, nil)
}

// Subscribe receives invalidations published by any replica (this one
// included) and calls onInvalidate for each, until ctx ends or the Tier is
// closed. It resubscribes after any loss, with backoff.
//
// The subscription starts lost: onRestored is called each time a
// subscription is confirmed (the first one included), onLost each time a
// confirmed one ends (a killed connection, a restarted or hung Redis). In
// between, invalidations of other replicas may be missed, so the caller
// treats every L1 entry filled before the loss as void until onRestored.
// The callbacks are serialised, must be quick, and may be nil.
// A message that fails authentication is dropped with a warning.
func (t *Tier) Subscribe(ctx context.Context, onInvalidate func(kind, id string, at time.Time), onLost, onRestored func()) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel)
	defer stop()

	var mu sync.Mutex // serialises the callbacks
	call := func(f func()) {
		mu.Lock()
		defer mu.Unlock()
		f()
	}
	var subscribed, confirmed atomic.Bool
	hooked := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
		if (s.Kind == "subscribe" || s.Kind == "ssubscribe") && s.Channel == t.o.Channel && subscribed.CompareAndSwap(false, true) {
			confirmed.Store(true)
			t.o.Observer.ObserveRedis(OpSubscribe, ResultOK, 0)
			if onRestored != nil {
				call(onRestored)
			}
		}
	})
	// rueidis resubscribes by itself after a broken connection (a retry
	// inside Receive), so a loss shows only in this hook, which runs each
	// time one connection's subscription ends.
	lost := func() {
		if subscribed.CompareAndSwap(true, false) && onLost != nil {
			call(onLost)
		}
	}
	hooked = rueidis.WithOnReceiveReturnHook(hooked, func(err error, _ rueidis.CommandClient) error {
		lost()
		return err
	})
	onMessage := func(m rueidis.PubSubMessage) {
		kind, id, at, err := t.openMessage(m.Message)
		if err != nil {
			t.o.Observer.ObserveRedis(OpMessage, ResultForged, 0)
			t.warn.warn("forged", "an invalidation message failed authentication; dropped", slog.String("op", OpMessage))
			return
		}
		t.o.Observer.ObserveRedis(OpMessage, ResultOK, 0)
		if onInvalidate != nil {
			call(func() { onInvalidate(kind, id, at) })
		}
	}
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		ref := t.client.Load()
		var err error
		if ref == nil {
			err = t.unavailable()
		} else {
			var sub rueidis.Completed
			if ref.c.Mode() == rueidis.ClientModeCluster {
				sub = ref.c.B().Ssubscribe().Channel(t.o.Channel).Build()
			} else {
				sub = ref.c.B().Subscribe().Channel(t.o.Channel).Build()
			}
			err = ref.c.Receive(hooked, sub, onMessage)
		}
		lost()
		if confirmed.Swap(false) { // it worked for a while: retry at once
			backoff = 0
		}
		if ctx.Err() != nil {
			return
		}
		if ref != nil {
			t.o.Observer.ObserveRedis(OpSubscribe, classify(err, ctx), 0)
			t.warn.warn("subscribe", "redis subscription lost; resubscribing", slog.String("error", fmt.Sprint(err)))
		}
		backoff = min(max(2*backoff, t.o.MinBackoff/2), t.o.MaxBackoff)
		if !t.sleep(ctx, jitter(backoff)) {
			return
		}
	}
}

func (t *Tier) openMessage(s string) (kind, id string, at time.Time, err error) {
	pt, err := t.keys.open(t.messageAD(), []byte(s))
	if err != nil {
		return "", "", time.Time{}, err
	}
	if len(pt) < 9 {
		return "", "", time.Time{}, errForged
	}
	kind, ok := kindNames[pt[0]]
	if !ok {
		return "", "", time.Time{}, errForged
	}
	return kind, string(pt[9:]), time.Unix(0, int64(binary.BigEndian.Uint64(pt[1:9]))), nil
}
