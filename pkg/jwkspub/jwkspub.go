package jwkspub

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Path is where the JWKS is served: the well-known name (RFC 8615) that
// OpenID Connect discovery documents conventionally give as jwks_uri.
const Path = "/.well-known/jwks.json"

// ContentType is the Content-Type of the served set. Envoy and Istio read
// any; application/json is what they and most JWT libraries expect.
const ContentType = "application/json"

// DefaultMaxAge is the Cache-Control max-age of the served set. A verifier
// that honours it sees a new key within this long; so publish a new key at
// least this long (and at least the verifiers' own cache duration) before
// the tokenizer signs with it. Five minutes keeps that wait short while a
// fleet of verifiers fetches rarely.
const DefaultMaxAge = 5 * time.Minute

// Recheck is how long a file whose size and modification time look
// unchanged is trusted before it is read again anyway: a rewrite of the same
// size within the file system's timestamp granularity leaves both as they
// were. Reading it is cheap; an unchanged content is recognised by its
// SHA-256 and changes nothing.
const Recheck = 30 * time.Second

// MaxFileBytes bounds the file: a JWKS of a few keys is a few KiB.
const MaxFileBytes = 1 << 20

// The classes of a refused set, for errors.Is.
var (
	// ErrPrivateKey: a key holds private material (the file Kratos'
	// jwks_url points at, or a mix). Nothing of such a file is served.
	ErrPrivateKey = errors.New("holds a private key: only public keys are published")
	// ErrSymmetricKey: a key is symmetric ("kty": "oct"); it has no
	// public part, and publishing it would let anyone sign.
	ErrSymmetricKey = errors.New(`is a symmetric ("oct") key: it has no public part and is never published`)
	// ErrInvalid: not a JWK Set, no keys, a key that does not parse or is
	// incomplete, or a file over MaxFileBytes.
	ErrInvalid = errors.New("not a JWK Set of public keys")
)

// privateMembers are the JWK members that carry private or secret key
// material (RFC 7518 section 6). A key with any of them is refused as it is
// written, whatever go-jose would make of it.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParsePublic parses a JWK Set and returns it if every key is a valid
// public key: it refuses a set without keys, a key with private members
// (ErrPrivateKey), a symmetric key (ErrSymmetricKey) and anything that does
// not parse (ErrInvalid). The errors name the key by index and kid, never
// by its material.
func ParsePublic(data []byte) (jose.JSONWebKeySet, error) {
	if len(data) > MaxFileBytes {
		return jose.JSONWebKeySet{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxFileBytes)
	}
	var raw struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(raw.Keys) == 0 {
		return jose.JSONWebKeySet{}, fmt.Errorf(`%w: no keys (want a JWK Set, {"keys":[...]})`, ErrInvalid)
	}
	for i, k := range raw.Keys {
		var kid, kty string
		_ = json.Unmarshal(k["kid"], &kid)
		_ = json.Unmarshal(k["kty"], &kty)
		if kty == "oct" {
			return jose.JSONWebKeySet{}, fmt.Errorf("key %d (kid %q) %w", i, kid, ErrSymmetricKey)
		}
		for _, m := range privateMembers {
			if _, ok := k[m]; ok {
				return jose.JSONWebKeySet{}, fmt.Errorf("key %d (kid %q) %w", i, kid, ErrPrivateKey)
			}
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for i := range set.Keys {
		k := &set.Keys[i]
		switch _, symmetric := k.Key.([]byte); {
		case symmetric:
			return jose.JSONWebKeySet{}, fmt.Errorf("key %d (kid %q) %w", i, k.KeyID, ErrSymmetricKey)
		case !k.IsPublic():
			return jose.JSONWebKeySet{}, fmt.Errorf("key %d (kid %q) %w", i, k.KeyID, ErrPrivateKey)
		case !k.Valid():
			return jose.JSONWebKeySet{}, fmt.Errorf("%w: key %d (kid %q) is incomplete", ErrInvalid, i, k.KeyID)
		}
	}
	return set, nil
}

// Observer sees every load of the file whose content is new, by result:
// ResultOK, ResultRefused or ResultUnreadable (pkg/metrics).
type Observer interface {
	ObserveJWKSLoad(result string)
}

// The results an Observer sees.
const (
	// ResultOK: a new set is served.
	ResultOK = "ok"
	// ResultRefused: the file was read but ParsePublic refused it.
	ResultRefused = "refused"
	// ResultUnreadable: the file could not be read (missing, no
	// permission).
	ResultUnreadable = "unreadable"
)

// Results lists the results an Observer sees, for metrics that pre-create
// a series per result.
func Results() []string { return []string{ResultOK, ResultRefused, ResultUnreadable} }

// Options configure New.
type Options struct {
	// File holds the public JWKS (required), as `ory-ext-authz jwks
	// public` prints it.
	File string
	// MaxAge is the Cache-Control max-age; zero means DefaultMaxAge.
	MaxAge time.Duration
	Logger *slog.Logger
	// Observer, when set, sees every load.
	Observer Observer
	// Now is the clock of Recheck; nil means time.Now.
	Now func() time.Time
}

// Publisher serves the public keys of one file; it is an http.Handler for
// GET and HEAD, meant to be mounted at Path.
type Publisher struct {
	file         string
	cacheControl string
	log          *slog.Logger
	obs          Observer
	now          func() time.Time

	mu      sync.Mutex
	stamp   fileStamp
	read    time.Time // when the file was last read
	digest  [sha256.Size]byte
	readErr string // the last read error, so it is logged once
	current atomic.Pointer[published]
}

// published is one served set, encoded once.
type published struct {
	keys jose.JSONWebKeySet
	body []byte
	etag string
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// New reads and checks the file. It fails if the file cannot be read or is
// refused (ParsePublic's errors), so that a server never starts without a
// set to serve, or with a private key in it.
func New(o Options) (*Publisher, error) {
	if o.File == "" {
		return nil, errors.New("jwkspub: no file")
	}
	if o.MaxAge < 0 {
		return nil, fmt.Errorf("jwkspub: negative max-age %s", o.MaxAge)
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Publisher{
		file:         o.File,
		cacheControl: "public, max-age=" + strconv.Itoa(int(o.MaxAge/time.Second)),
		log:          o.Logger,
		obs:          o.Observer,
		now:          o.Now,
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stamp, p.read = stat(p.file), p.now()
	data, err := readFile(p.file)
	if err != nil {
		p.observe(ResultUnreadable)
		return nil, err
	}
	p.digest = sha256.Sum256(data)
	pub, err := encode(data)
	if err != nil {
		p.observe(ResultRefused)
		return nil, fmt.Errorf("%s: %w", p.file, err)
	}
	p.current.Store(pub)
	p.observe(ResultOK)
	return p, nil
}

// Keys returns the set served now.
func (p *Publisher) Keys() jose.JSONWebKeySet {
	return p.current.Load().keys
}

// ServeHTTP answers GET and HEAD with the current set (re-reading the file
// first if it changed), with Cache-Control, an ETag, and 304 Not Modified
// when If-None-Match names the current ETag.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p.refresh()
	cur := p.current.Load()
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", p.cacheControl)
	h.Set("ETag", cur.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers If-None-Match (weak comparison, lists, "*")
	// with 304, keeping ETag and Cache-Control, and HEAD without a body.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(cur.body))
}

// refresh re-reads the file when its size or modification time changed,
// or when it was last read Recheck ago; new content that is refused or a
// file that cannot be read keeps the current set.
func (p *Publisher) refresh() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now, st := p.now(), stat(p.file)
	if st == p.stamp && now.Sub(p.read) < Recheck {
		return
	}
	p.stamp, p.read = st, now
	data, err := readFile(p.file)
	if err != nil {
		// Logged and counted once per distinct error, not on every
		// request while the file stays unreadable.
		if err.Error() != p.readErr {
			p.readErr = err.Error()
			p.log.Error("JWKS file cannot be read; still serving the previous keys", "file", p.file, "error", err.Error())
			p.observe(ResultUnreadable)
		}
		return
	}
	p.readErr = ""
	digest := sha256.Sum256(data)
	if digest == p.digest {
		return
	}
	p.digest = digest
	pub, err := encode(data)
	if err != nil {
		p.log.Error("JWKS file changed but is refused; still serving the previous keys", "file", p.file, "error", err.Error(), "keys", len(p.current.Load().keys.Keys))
		p.observe(ResultRefused)
		return
	}
	p.current.Store(pub)
	p.log.Info("JWKS file reloaded", "file", p.file, "keys", len(pub.keys.Keys), "kids", kids(pub.keys))
	p.observe(ResultOK)
}

func (p *Publisher) observe(result string) {
	if p.obs != nil {
		p.obs.ObserveJWKSLoad(result)
	}
}

// encode checks a file's content and encodes what is served: the parsed
// public keys, marshalled again, so nothing of the file that go-jose does
// not read as part of a public key is ever served.
func encode(data []byte) (*published, error) {
	set, err := ParsePublic(data)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	sum := sha256.Sum256(body)
	return &published{keys: set, body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`}, nil
}

func stat(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime(), fi.Size()}
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS %s: %w", path, err)
	}
	return data, nil
}

func kids(set jose.JSONWebKeySet) []string {
	out := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}
