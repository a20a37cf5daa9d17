// Command memory measures what a cached session costs: it fills an
// authz.Server (the real cache, the real answers) with N sessions whose JWTs
// are real ES256 JWTs shaped like Kratos' (about 500 bytes), then reports the
// Go heap and the RSS after a GC, per cached session and beyond the JWT. With
// a small --cache-max-bytes it shows that the bound holds: Ory is then made to
// fail, and every session is checked again, so that only the sessions still
// cached answer OK.
//
// It prints one JSON object (bench.MemoryResult) to stdout. Run it as a process of its
// own: the figures are those of this process.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

func main() { bench.Main("memory", run) }

func run() error {
	sessions := flag.Int("sessions", 100_000, "sessions to cache")
	maxBytes := flag.Int64("cache-max-bytes", 512<<20, "the server's --cache-max-bytes")
	bare := flag.Bool("bare", false, "measure pkg/tokencache alone, with an 8-byte value: the cache's own cost per entry (its entry and ristretto's bookkeeping)")
	flag.Parse()
	if *bare {
		return runBare(*sessions, *maxBytes)
	}

	tk, err := newTokenizer()
	if err != nil {
		return err
	}
	cfg := bench.Config()
	cfg.CacheMaxBytes = *maxBytes
	s, err := authz.New(cfg.AuthzOptions(tk))
	if err != nil {
		return err
	}
	defer s.Close()

	var r bench.MemoryResult
	r.Sessions, r.CacheMaxBytes = *sessions, *maxBytes
	r.HeapBefore, r.RSSBefore = settle()

	ctx := context.Background()
	t0 := time.Now()
	half := *sessions / 2
	for i := range *sessions {
		if i == half {
			r.HeapMid, r.RSSMid = settle()
		}
		resp, err := s.Check(ctx, load.CheckRequest(cookie(i)))
		if err != nil {
			return fmt.Errorf("fill %d: %w", i, err)
		}
		if resp.GetStatus().GetCode() != 0 {
			return fmt.Errorf("fill %d: status %v", i, resp.GetStatus())
		}
	}
	r.FillSeconds = time.Since(t0).Seconds()
	r.HeapAfter, r.RSSAfter = settle()

	// Count what is still cached: with Ory failing only a hit answers OK,
	// and a failure is never cached.
	tk.down.Store(true)
	for i := range *sessions {
		resp, err := s.Check(ctx, load.CheckRequest(cookie(i)))
		if err == nil && resp.GetStatus().GetCode() == 0 {
			r.Cached++
		}
	}
	r.JWTAvgBytes = float64(tk.jwtBytes.Load()) / float64(tk.minted.Load())
	if r.Cached > 0 {
		r.HeapPerEntry = (float64(r.HeapAfter) - float64(r.HeapBefore)) / float64(r.Cached)
		r.RSSPerEntry = (float64(r.RSSAfter) - float64(r.RSSBefore)) / float64(r.Cached)
	}
	if r.Cached == r.Sessions && r.Sessions > half {
		r.HeapMarginalPerEntry = (float64(r.HeapAfter) - float64(r.HeapMid)) / float64(r.Sessions-half)
		r.RSSMarginalPerEntry = (float64(r.RSSAfter) - float64(r.RSSMid)) / float64(r.Sessions-half)
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// runBare fills a tokencache.Cache whose values are one pointer, so that
// what it costs per entry is the cache's own bookkeeping.
func runBare(n int, maxBytes int64) error {
	type value struct{ _ *int }
	c, err := tokencache.New(tokencache.Config[int, *value]{
		MaxBytes: maxBytes, Leeway: 5 * time.Second, FetchTimeout: time.Second,
		Fetch: func(context.Context, int) (*value, tokencache.Meta, error) {
			return &value{}, tokencache.Meta{Expiry: time.Now().Add(time.Hour), Cost: 1000}, nil
		},
		Classify: func(error) tokencache.Outcome { return tokencache.Transient },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	var r bench.MemoryResult
	r.Sessions, r.CacheMaxBytes = n, maxBytes
	r.HeapBefore, r.RSSBefore = settle()
	for i := range n {
		if _, _, err := c.Get(context.Background(), tokencache.NewKey("mesh", 2, cookie(i)), i); err != nil {
			return err
		}
	}
	r.HeapAfter, r.RSSAfter = settle()
	r.Cached = n
	r.HeapPerEntry = (float64(r.HeapAfter) - float64(r.HeapBefore)) / float64(n)
	r.RSSPerEntry = (float64(r.RSSAfter) - float64(r.RSSBefore)) / float64(n)
	return json.NewEncoder(os.Stdout).Encode(r)
}

// settle collects garbage, returns freed memory to the OS, and reads the heap
// in use and the resident set.
func settle() (heap, rss uint64) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, vmRSS()
}

// vmRSS reads VmRSS of /proc/self/status, in bytes (0 where unavailable).
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cookie is session i's cookie pair, derived from i so that the program
// keeps no list of them (it would count as cache memory).
func cookie(i int) string {
	h := sha256.Sum256([]byte(strconv.Itoa(i)))
	return "ory_kratos_session=MTc" + hex.EncodeToString(h[:]) + hex.EncodeToString(h[:16])
}

// tokenizer mints JWTs in process as Kratos' tokenizer does (ES256, the
// claims of internal/fakeory), without HTTP: only the cache is being measured.
type tokenizer struct {
	signer   jose.Signer
	down     atomic.Bool
	minted   atomic.Int64
	jwtBytes atomic.Int64
}

func newTokenizer() (*tokenizer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "fake"))
	if err != nil {
		return nil, err
	}
	return &tokenizer{signer: signer}, nil
}

var errDown = &ory.Error{Class: ory.ErrUnavailable, Reason: "memory probe: Ory is down on purpose"}

func (t *tokenizer) Tokenize(_ context.Context, _ credential.Credential, template string) (ory.Token, error) {
	if t.down.Load() {
		return ory.Token{}, errDown
	}
	now := time.Now()
	sub, sid := uuid(), uuid()
	claims := map[string]any{
		"sub": sub, "sid": sid, "iss": "http://127.0.0.1:43219", "jti": uuid(),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": sub + "@example.org", "aal": "aal1", "template": template,
	}
	tok, err := jwt.Signed(t.signer).Claims(claims).Serialize()
	if err != nil {
		return ory.Token{}, errors.Join(ory.ErrUnavailable, err)
	}
	t.minted.Add(1)
	t.jwtBytes.Add(int64(len(tok)))
	return ory.Token{JWT: tok, Expiry: now.Add(time.Hour).Truncate(time.Second), IssuedAt: now.Truncate(time.Second),
		SessionID: sid, IdentityID: sub, AAL: "aal1"}, nil
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
