package redistier_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

func TestSetGetRoundTrip(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := healthyTier(t, srv, nil)
	k := key("alice")
	mustMiss(t, env.tier, k)
	mustSet(t, env.tier, k, []byte("Bearer jwt-of-alice"))
	mustGet(t, env.tier, k, []byte("Bearer jwt-of-alice"))
	mustMiss(t, env.tier, key("bob"))

	names := redistest.Values(srv.Dump())
	if len(names) != 1 {
		t.Fatalf("value keys in Redis: %q, want one", names)
	}
	// The TTL is the one asked for (Redis counts it down from 60000 ms).
	if pttl, _ := srv.Do("PTTL", names[0]).AsInt64(); pttl <= 55_000 || pttl > 60_000 {
		t.Fatalf("PTTL = %d ms, want about 60000", pttl)
	}
	// A TTL under a millisecond stores nothing.
	if err := env.tier.Set(t.Context(), key("carol"), []byte("x"), time.Microsecond); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, env.tier, key("carol"))
	if env.obs.count("get/hit") != 1 || env.obs.count("get/miss") != 3 || env.obs.count("set/ok") != 1 {
		t.Fatalf("observed %v", env.obs.counts)
	}
}

// A stored value changed by one byte, moved to another entry's key, or
// replaced by another type is a miss with a warning, never served.
func TestTamperedValueIsAMissNeverServed(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := healthyTier(t, srv, nil)
	alice, bob := key("alice"), key("bob")
	for _, k := range [][32]byte{alice, bob} {
		mustSet(t, env.tier, k, []byte("Bearer jwt-of-"+string(k[:5])))
	}
	names := redistest.Values(srv.Dump())
	if len(names) != 2 {
		t.Fatalf("value keys: %q", names)
	}
	// Which name is alice's: the one whose removal makes alice miss.
	raw := map[string]string{}
	for _, n := range names {
		raw[n], _ = srv.Do("GET", n).ToString()
	}
	srv.Do("DEL", names[0])
	aliceName, bobName := names[1], names[0]
	if _, ok, _ := env.tier.Get(t.Context(), alice); !ok {
		aliceName, bobName = names[0], names[1]
	}
	srv.Do("SET", names[0], raw[names[0]])

	for i := range len(raw[aliceName]) {
		if i%7 != 0 && i != len(raw[aliceName])-1 {
			continue // every 7th byte and the last: header, key id, nonce, ciphertext, tag
		}
		b := []byte(raw[aliceName])
		b[i] ^= 0x01
		srv.Do("SET", aliceName, string(b))
		mustMiss(t, env.tier, alice)
	}
	// Bob's sealed value under alice's name: bound to bob's name, so no.
	srv.Do("SET", aliceName, raw[bobName])
	mustMiss(t, env.tier, alice)
	// Something that is not a string at all.
	srv.Do("DEL", aliceName)
	srv.Do("HSET", aliceName, "f", "v")
	mustMiss(t, env.tier, alice)
	// Empty and short garbage.
	for _, g := range []string{"", "x", strings.Repeat("\x01", 40)} {
		srv.Do("SET", aliceName, g)
		mustMiss(t, env.tier, alice)
	}
	mustGet(t, env.tier, bob, []byte("Bearer jwt-of-bob  "))
	if n := env.obs.count("get/forged"); n == 0 {
		t.Fatalf("no get/forged observed: %v", env.obs.counts)
	}
	if !strings.Contains(env.log.String(), "failed authentication") && !strings.Contains(env.log.String(), "something else") {
		t.Fatalf("no warning logged:\n%s", env.log.String())
	}
	if !env.tier.Healthy() {
		t.Fatal("garbage in Redis opened the breaker")
	}
}

// Rotation: a Tier with [new, old] reads what [old] wrote, and writes what
// [new, old] and [new] read; [old] cannot read [new]'s values (a miss, not
// an error).
func TestRotationReadsThePreviousSecret(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	old := healthyTier(t, srv, nil)
	rotating := healthyTier(t, srv, func(o *redistier.Options) { o.Secrets = [][]byte{secretB, secretA} })
	rotated := healthyTier(t, srv, func(o *redistier.Options) { o.Secrets = [][]byte{secretB} })
	k1, k2 := key("written-by-old"), key("written-by-rotating")
	mustSet(t, old.tier, k1, []byte("v1"))
	mustGet(t, rotating.tier, k1, []byte("v1"))
	mustMiss(t, rotated.tier, k1)

	mustSet(t, rotating.tier, k2, []byte("v2"))
	mustGet(t, rotating.tier, k2, []byte("v2"))
	mustGet(t, rotated.tier, k2, []byte("v2"))
	mustMiss(t, old.tier, k2)

	// Both names present (old's and rotating's value of one key): the
	// current one wins.
	mustSet(t, old.tier, k2, []byte("stale"))
	mustGet(t, rotating.tier, k2, []byte("v2"))

	// Invalidations and pauses from a rotating replica reach the old one.
	at := time.Unix(1_800_000_000, 0)
	if _, err := rotating.tier.Invalidate(t.Context(), redistier.KindSession, "sess-1", at); err != nil {
		t.Fatal(err)
	}
	for _, e := range []tierEnv{old, rotating} {
		got, ok, err := e.tier.InvalidatedAt(t.Context(), redistier.KindSession, "sess-1")
		if err != nil || !ok || !got.Equal(at) {
			t.Fatalf("InvalidatedAt = %v, %v, %v; want %v", got, ok, err, at)
		}
	}
	until := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	if err := rotating.tier.Pause(t.Context(), until); err != nil {
		t.Fatal(err)
	}
	if got, err := old.tier.PausedUntil(t.Context()); err != nil || got.After(until) || until.Sub(got) > 5*time.Second {
		t.Fatalf("old PausedUntil = %v, %v; want about %v", got, err, until)
	}
}

// Nothing in Redis (names or values) carries the credential-ish inputs: the
// cache key, the JWT, session and identity ids, in plain, hex or base64.
func TestRedisHoldsNoPlaintext(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := healthyTier(t, srv, nil)
	cookie := "ory_kratos_session=MTcwMDAwMDAwMHxzZWNyZXQtY29va2llLXZhbHVl"
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJpZGVudGl0eS0xMjMifQ.c2lnbmF0dXJlLWJ5dGVz"
	sid, iid := "session-7f3a9c-secret-id", "identity-42b1e0-secret-id"
	k := tokencache.NewKey("mesh", 2, cookie)
	ctx := t.Context()
	if err := env.tier.Set(ctx, k, []byte("Bearer "+jwt+" sid="+sid+" iid="+iid), time.Minute); err != nil {
		t.Fatal(err)
	}
	mustLock(t, env.tier, k, time.Minute)
	for kind, id := range map[string]string{redistier.KindSession: sid, redistier.KindIdentity: iid} {
		if _, err := env.tier.Invalidate(ctx, kind, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.tier.Pause(ctx, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	dump := srv.Dump()
	if len(dump) < 5 {
		t.Fatalf("dump has %d keys, want value, lock, 2 records, pause", len(dump))
	}
	var all bytes.Buffer
	for name, v := range dump {
		all.WriteString(name)
		all.WriteByte(0)
		all.Write(v)
		all.WriteByte(0)
	}
	probes := map[string]string{"cookie": cookie, "cookie value": cookie[len("ory_kratos_session="):], "jwt": jwt,
		"session id": sid, "identity id": iid, "key": string(k[:])}
	for _, part := range strings.Split(jwt, ".") {
		probes["jwt part "+part[:4]] = part
	}
	for what, p := range probes {
		for enc, s := range map[string]string{
			"plain": p, "hex": hex.EncodeToString([]byte(p)),
			"base64": base64.StdEncoding.EncodeToString([]byte(p)), "base64url": base64.RawURLEncoding.EncodeToString([]byte(p)),
		} {
			if len(s) > 24 {
				s = s[:24] // a long prefix is enough, and survives base64 alignment
			}
			if bytes.Contains(all.Bytes(), []byte(s)) {
				t.Errorf("Redis holds the %s in %s", what, enc)
			}
		}
	}
	// The key's digest itself is not a key name either.
	if bytes.Contains(all.Bytes(), []byte(hex.EncodeToString(k[:8]))) {
		t.Error("Redis holds the cache key's hex")
	}
}

func TestLockOneWinnerUnlockOnlyByHolderExpiry(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b := healthyTier(t, srv, nil), healthyTier(t, srv, nil)
	k := key("contended")

	var won atomic.Int32
	var wg sync.WaitGroup
	unlocks := make(chan func(), 20)
	for i := range 20 {
		tier := a.tier
		if i%2 == 1 {
			tier = b.tier
		}
		wg.Go(func() {
			unlock, ok, err := tier.Lock(t.Context(), k, time.Minute)
			if err != nil {
				t.Errorf("Lock: %v", err)
			}
			if ok {
				won.Add(1)
				unlocks <- unlock
			} else {
				unlock() // a loser's unlock is a no-op
			}
		})
	}
	wg.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("%d of 20 lockers acquired, want 1", n)
	}
	// The losers' unlocks did not free it.
	if _, ok, _ := a.tier.Lock(t.Context(), k, time.Minute); ok {
		t.Fatal("lock acquired again while held")
	}
	(<-unlocks)()
	mustLock(t, b.tier, k, time.Minute)() // free again after the unlock

	// Expiry: a short lock is free again after its ttl, and the holder's
	// late unlock does not delete the new holder's lock.
	lateUnlock := mustLock(t, a.tier, k, 50*time.Millisecond)
	var unlockNew func()
	testwait.Within(t, 5*time.Second, "the short lock to expire", func() bool {
		u, ok, _ := b.tier.Lock(t.Context(), k, time.Minute)
		unlockNew = u
		return ok
	})
	lateUnlock()
	if _, ok, _ := a.tier.Lock(t.Context(), k, time.Minute); ok {
		t.Fatal("the expired holder's unlock deleted the new holder's lock")
	}
	unlockNew()
	if a.obs.count("lock/busy") == 0 || b.obs.count("unlock/ok") == 0 {
		t.Fatalf("observed %v / %v", a.obs.counts, b.obs.counts)
	}
}

func TestWaitFor(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	holder, waiter := healthyTier(t, srv, nil), healthyTier(t, srv, nil)

	t.Run("value set by the holder", func(t *testing.T) {
		k := key("filled")
		unlock := mustLock(t, holder.tier, k, time.Minute)
		started := make(chan struct{})
		go func() {
			<-started
			time.Sleep(30 * time.Millisecond) // the holder "asks Ory"
			if err := holder.tier.Set(t.Context(), k, []byte("the value"), time.Minute); err != nil {
				t.Error(err)
			}
			unlock()
		}()
		close(started)
		v, ok := waiter.tier.WaitFor(t.Context(), k, 10*time.Second)
		if !ok || string(v) != "the value" {
			t.Fatalf("WaitFor = %q, %v", v, ok)
		}
	})
	t.Run("bound passes while the lock is held", func(t *testing.T) {
		k := key("never filled")
		unlock := mustLock(t, holder.tier, k, time.Minute)
		defer unlock()
		const bound = 150 * time.Millisecond
		start := time.Now()
		v, ok := waiter.tier.WaitFor(t.Context(), k, bound)
		if ok || v != nil {
			t.Fatalf("WaitFor = %q, %v; want nothing", v, ok)
		}
		if d := time.Since(start); d < bound || d > 20*bound {
			t.Fatalf("WaitFor returned after %v, want at the bound %v", d, bound)
		}
	})
	t.Run("lock released without a value", func(t *testing.T) {
		k := key("holder failed")
		unlock := mustLock(t, holder.tier, k, time.Minute)
		go func() {
			time.Sleep(30 * time.Millisecond)
			unlock() // Ory failed: no value
		}()
		const bound = 30 * time.Second
		start := time.Now()
		if _, ok := waiter.tier.WaitFor(t.Context(), k, bound); ok {
			t.Fatal("WaitFor found a value")
		}
		if d := time.Since(start); d > bound/2 {
			t.Fatalf("WaitFor waited %v after the holder gave up", d)
		}
	})
	if waiter.obs.count("wait/hit") != 1 || waiter.obs.count("wait/bound") != 1 || waiter.obs.count("wait/miss") != 1 {
		t.Fatalf("observed %v", waiter.obs.counts)
	}
}

func TestPauseSharedBetweenTiers(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b := healthyTier(t, srv, nil), healthyTier(t, srv, nil)
	ctx := t.Context()
	if got, err := b.tier.PausedUntil(ctx); err != nil || !got.IsZero() {
		t.Fatalf("PausedUntil before any pause = %v, %v", got, err)
	}
	until := time.Now().Add(30 * time.Second).Truncate(time.Millisecond)
	if err := a.tier.Pause(ctx, until); err != nil {
		t.Fatal(err)
	}
	near := func(got, want time.Time) bool { return !got.After(want) && want.Sub(got) < 5*time.Second }
	if got, err := b.tier.PausedUntil(ctx); err != nil || !near(got, until) {
		t.Fatalf("b PausedUntil = %v, %v; want about %v", got, err, until)
	}
	// A shorter pause does not shorten it; a longer one extends it.
	if err := b.tier.Pause(ctx, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.tier.PausedUntil(ctx); !near(got, until) {
		t.Fatalf("a shorter pause moved it to %v", got)
	}
	later := until.Add(30 * time.Second)
	if err := b.tier.Pause(ctx, later); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.tier.PausedUntil(ctx); !near(got, later) {
		t.Fatalf("PausedUntil = %v, want about %v", got, later)
	}
	// A pause in the past is no pause.
	if err := a.tier.Pause(ctx, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	// A forged marker is ignored.
	srv.Do("SET", redistier.DefaultPrefix+"pause", "forged")
	if got, err := a.tier.PausedUntil(ctx); err != nil || !got.IsZero() {
		t.Fatalf("forged PausedUntil = %v, %v", got, err)
	}
}

func TestBadOptions(t *testing.T) {
	good := redistier.Options{URL: "redis://127.0.0.1:1", Secrets: [][]byte{secretA}}
	for _, tc := range []struct {
		name string
		edit func(*redistier.Options)
		want string
	}{
		{"no URL", func(o *redistier.Options) { o.URL = "" }, "URL is required"},
		{"bad scheme", func(o *redistier.Options) { o.URL = "http://127.0.0.1:6379" }, "invalid URL scheme"},
		{"unparsable URL keeps its password", func(o *redistier.Options) { o.URL = "redis://user:hunter2-password@[::1" }, "URL"},
		{"bad db", func(o *redistier.Options) { o.URL = "redis://127.0.0.1:6379/x" }, "database"},
		{"no secret", func(o *redistier.Options) { o.Secrets = nil }, "at least one secret"},
		{"short secret", func(o *redistier.Options) { o.Secrets = [][]byte{[]byte("short")} }, "at least 32"},
		{"short previous", func(o *redistier.Options) { o.Secrets = [][]byte{secretA, []byte("short")} }, "Secrets[1]"},
		{"three secrets", func(o *redistier.Options) { o.Secrets = [][]byte{secretA, secretB, secretA} }, "at most one previous"},
		{"previous is current", func(o *redistier.Options) { o.Secrets = [][]byte{secretA, secretA} }, "previous secret is the current"},
		{"CA without TLS", func(o *redistier.Options) { o.CAFile = "/etc/hostname" }, "rediss://"},
		{"missing CA file", func(o *redistier.Options) { o.URL = "rediss://127.0.0.1:1"; o.CAFile = "/nonexistent/ca.pem" }, "CAFile"},
		{"CA file without PEM", func(o *redistier.Options) { o.URL = "rediss://127.0.0.1:1"; o.CAFile = "/etc/hostname" }, "no PEM"},
		{"cert without key", func(o *redistier.Options) { o.URL = "rediss://127.0.0.1:1"; o.CertFile = "/etc/hostname" }, "go together"},
		{"negative timeout", func(o *redistier.Options) { o.Timeout = -time.Second }, "Timeout"},
		{"max below min backoff", func(o *redistier.Options) { o.MinBackoff, o.MaxBackoff = time.Second, time.Millisecond }, "MaxBackoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			tier, err := redistier.New(t.Context(), o)
			if err == nil {
				tier.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestInvalidationKindsChecked(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := healthyTier(t, srv, nil)
	for _, tc := range []struct{ kind, id string }{
		{"bogus", "x"}, {redistier.KindSession, ""}, {redistier.KindPurge, "x"},
	} {
		if _, err := env.tier.Invalidate(t.Context(), tc.kind, tc.id, time.Now()); err == nil {
			t.Errorf("Invalidate(%q, %q) succeeded", tc.kind, tc.id)
		}
		if _, _, err := env.tier.InvalidatedAt(t.Context(), tc.kind, tc.id); err == nil {
			t.Errorf("InvalidatedAt(%q, %q) succeeded", tc.kind, tc.id)
		}
	}
}
