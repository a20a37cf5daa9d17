package jwkspub_test

import (
	"crypto"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testclock"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
)

// symmetric is an "oct" JWK: a shared secret.
const symmetric = `{"kty":"oct","kid":"hmac","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}`

// keyPair is a private JWKS of one key and its public JWKS.
type keyPair struct {
	kid           string
	private, pub  []byte
	privateValues []string // the private members' values, which no log may hold
}

func newKey(t *testing.T, alg, kid string) keyPair {
	t.Helper()
	priv, pub := testpki.KeySet(t, alg, kid)
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(priv, &raw); err != nil {
		t.Fatal(err)
	}
	kp := keyPair{kid: kid, private: priv, pub: pub}
	for _, m := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if v, ok := raw.Keys[0][m].(string); ok {
			kp.privateValues = append(kp.privateValues, v)
		}
	}
	return kp
}

// set joins the keys of JWK Sets into one set.
func set(t *testing.T, sets ...[]byte) []byte {
	t.Helper()
	var all []json.RawMessage
	for _, s := range sets {
		var one struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(s, &one); err != nil {
			t.Fatal(err)
		}
		all = append(all, one.Keys...)
	}
	b, err := json.Marshal(map[string]any{"keys": all})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// write replaces path atomically (write and rename, as a Kubernetes
// volume or a deploy script does), so no read sees half a file.
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	testpki.ReplaceFile(t, path, data)
}

// countingObserver counts loads by result.
type countingObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingObserver) ObserveJWKSLoad(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[result]++
}

func (c *countingObserver) count(result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[result]
}

// fixture is a Publisher on a file, served over real HTTP on 127.0.0.1.
type fixture struct {
	file string
	url  string
	obs  *countingObserver
	logs *logcapture.Buffer
}

func start(t *testing.T, content []byte, secrets []string, clock func() time.Time) fixture {
	t.Helper()
	f := fixture{file: filepath.Join(t.TempDir(), "jwks.public.json"), obs: &countingObserver{}}
	write(t, f.file, content)
	log, logs := logcapture.Logger(t, func() []string { return secrets })
	f.logs = logs
	p, err := jwkspub.New(jwkspub.Options{File: f.file, Logger: log, Observer: f.obs, Now: clock})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+jwkspub.Path, p)
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	f.url = srv.URL + jwkspub.Path
	return f
}

// get fetches the JWKS with the given request headers.
func get(t *testing.T, method, url string, h map[string]string) (*http.Response, []byte) {
	t.Helper()
	return servertest.Do(t, method, url, h)
}

// kidsOf parses a served body and returns its kids; it fails t if the
// body holds anything but public keys.
func kidsOf(t *testing.T, body []byte) []string {
	t.Helper()
	var s jose.JSONWebKeySet
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("served body is no JWKS: %v", err)
	}
	var out []string
	for _, k := range s.Keys {
		if !k.IsPublic() || !k.Valid() {
			t.Fatalf("served key %q is not a valid public key", k.KeyID)
		}
		out = append(out, k.KeyID)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	_ = json.Unmarshal(body, &raw)
	for _, k := range raw.Keys {
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, ok := k[m]; ok {
				t.Fatalf("served key %v has the private member %q", k["kid"], m)
			}
		}
	}
	return out
}

// TestServe: the body is the file's public keys (the same keys, as a
// verifier compares them), with the caching headers; HEAD has no body.
func TestServe(t *testing.T) {
	es, rs, ed := newKey(t, jwks.ES256, "es"), newKey(t, jwks.RS256, "rs"), newKey(t, jwks.EdDSA, "ed")
	file := set(t, es.pub, rs.pub, ed.pub)
	f := start(t, file, nil, nil)

	resp, body := get(t, http.MethodGet, f.url, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if jwkspub.DefaultMaxAge != 5*time.Minute {
		t.Errorf("DefaultMaxAge %s: the docs say 5 minutes", jwkspub.DefaultMaxAge)
	}
	if etag := resp.Header.Get("ETag"); len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Errorf("ETag %q is not a strong entity tag", etag)
	}
	if got := kidsOf(t, body); !slices.Equal(got, []string{"es", "rs", "ed"}) {
		t.Errorf("served kids %v, want es, rs, ed", got)
	}
	// The same keys as the file: what a verifier loads from either is equal.
	var served, want jose.JSONWebKeySet
	if err := json.Unmarshal(body, &served); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(file, &want); err != nil {
		t.Fatal(err)
	}
	for i := range want.Keys {
		a, _ := served.Keys[i].Thumbprint(crypto.SHA256)
		b, _ := want.Keys[i].Thumbprint(crypto.SHA256)
		if string(a) != string(b) || served.Keys[i].Algorithm != want.Keys[i].Algorithm || served.Keys[i].Use != want.Keys[i].Use {
			t.Errorf("key %d: served %q/%s/%s differs from the file's %q/%s/%s", i, served.Keys[i].KeyID, served.Keys[i].Algorithm, served.Keys[i].Use, want.Keys[i].KeyID, want.Keys[i].Algorithm, want.Keys[i].Use)
		}
	}

	resp, body = get(t, http.MethodHead, f.url, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("ETag") == "" {
		t.Errorf("HEAD: status %d, %d body bytes, ETag %q; want 200, none, the ETag", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}
	resp, _ = get(t, http.MethodPost, f.url, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", resp.StatusCode)
	}
	if n := f.obs.count(jwkspub.ResultOK); n != 1 {
		t.Errorf("%d loads observed, want the one at New", n)
	}
}

// TestNotModified: If-None-Match with the current ETag (alone, in a list,
// weak, or *) is answered 304 without a body, keeping the caching headers.
func TestNotModified(t *testing.T) {
	f := start(t, newKey(t, jwks.ES256, "a").pub, nil, nil)
	resp, _ := get(t, http.MethodGet, f.url, nil)
	etag := resp.Header.Get("ETag")
	tests := []struct {
		name, ifNoneMatch string
		want              int
	}{
		{"current", etag, http.StatusNotModified},
		{"in a list", `"other", ` + etag, http.StatusNotModified},
		{"weak", "W/" + etag, http.StatusNotModified},
		{"any", "*", http.StatusNotModified},
		{"other", `"other"`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, http.MethodGet, f.url, map[string]string{"If-None-Match": tt.ifNoneMatch})
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") != "public, max-age=300" {
				t.Errorf("ETag %q, Cache-Control %q; want %q and the max-age", resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"), etag)
			}
			if tt.want == http.StatusNotModified && len(body) != 0 {
				t.Errorf("304 with %d body bytes", len(body))
			}
		})
	}
}

// TestRotation: a changed file is served on the next request, with a new
// ETag; the old ETag no longer gets a 304. A key rotation publishes the new
// key next to the old one first, then drops the old one.
func TestRotation(t *testing.T) {
	old, next := newKey(t, jwks.ES256, "old"), newKey(t, jwks.ES256, "new")
	f := start(t, old.pub, nil, nil)
	resp, _ := get(t, http.MethodGet, f.url, nil)
	oldTag := resp.Header.Get("ETag")

	for _, step := range []struct {
		file []byte
		want []string
	}{
		{set(t, old.pub, next.pub), []string{"old", "new"}},
		{next.pub, []string{"new"}},
	} {
		write(t, f.file, step.file)
		// Bounded: the change is seen on a request, not by a timer.
		testwait.For(t, "the rotated set to be served", func() bool {
			_, body := get(t, http.MethodGet, f.url, nil)
			return slices.Equal(kidsOf(t, body), step.want)
		})
	}
	resp, _ = get(t, http.MethodGet, f.url, map[string]string{"If-None-Match": oldTag})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == oldTag {
		t.Errorf("old ETag after rotation: status %d, ETag %q; want 200 and a new ETag", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if n := f.obs.count(jwkspub.ResultOK); n != 3 {
		t.Errorf("%d ok loads, want 3 (start and two rotations)", n)
	}
	if !strings.Contains(f.logs.String(), "JWKS file reloaded") {
		t.Errorf("no reload logged:\n%s", f.logs.String())
	}
}

// TestRecheck: a rewrite that leaves size and modification time as they
// were is still seen, once Recheck has passed since the last read.
func TestRecheck(t *testing.T) {
	clock := testclock.New(time.Unix(1_700_000_000, 0))
	a, b := newKey(t, jwks.ES256, "a"), newKey(t, jwks.ES256, "b")
	if len(a.pub) != len(b.pub) {
		t.Fatalf("the two sets differ in size (%d, %d): the test needs equal sizes", len(a.pub), len(b.pub))
	}
	f := start(t, a.pub, nil, clock.Now)
	fi, err := os.Stat(f.file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.file, b.pub, 0o600); err != nil { // in place, same size
		t.Fatal(err)
	}
	if err := os.Chtimes(f.file, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, http.MethodGet, f.url, nil); !slices.Equal(kidsOf(t, body), []string{"a"}) {
		t.Fatalf("served %v before Recheck, want the set as last read (a)", kidsOf(t, body))
	}
	clock.Advance(jwkspub.Recheck)
	if _, body := get(t, http.MethodGet, f.url, nil); !slices.Equal(kidsOf(t, body), []string{"b"}) {
		t.Fatalf("served %v after Recheck, want the rewritten set (b)", kidsOf(t, body))
	}
	// An unchanged file read again is no new load.
	clock.Advance(jwkspub.Recheck)
	get(t, http.MethodGet, f.url, nil)
	if n := f.obs.count(jwkspub.ResultOK); n != 2 {
		t.Errorf("%d ok loads, want 2", n)
	}
}

// refusedFiles are the contents New and a reload refuse, with the class
// of error.
func refusedFiles(t *testing.T) []struct {
	name    string
	content []byte
	want    error
	secrets []string
} {
	es, rs, ed := newKey(t, jwks.ES256, "es"), newKey(t, jwks.RS256, "rs"), newKey(t, jwks.EdDSA, "ed")
	all := slices.Concat(es.privateValues, rs.privateValues, ed.privateValues)
	// A private key that go-jose reads, but whose members are not the
	// ones it writes: an RSA key with d but without its primes.
	var rsaRaw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(rs.private, &rsaRaw); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"p", "q", "dp", "dq", "qi"} {
		delete(rsaRaw.Keys[0], m)
	}
	rsaD, err := json.Marshal(rsaRaw)
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name    string
		content []byte
		want    error
		secrets []string
	}{
		{"private ES256 (Kratos' jwks_url file)", es.private, jwkspub.ErrPrivateKey, all},
		{"private RS256", rs.private, jwkspub.ErrPrivateKey, all},
		{"private EdDSA", ed.private, jwkspub.ErrPrivateKey, all},
		{"public and private mixed", set(t, es.pub, rs.private), jwkspub.ErrPrivateKey, all},
		{"RSA d without primes", rsaD, jwkspub.ErrPrivateKey, all},
		{"symmetric", []byte(`{"keys":[` + symmetric + `]}`), jwkspub.ErrSymmetricKey, []string{"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}},
		{"public and symmetric", set(t, es.pub, []byte(`{"keys":[`+symmetric+`]}`)), jwkspub.ErrSymmetricKey, []string{"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}},
		{"no keys", []byte(`{"keys":[]}`), jwkspub.ErrInvalid, nil},
		{"one JWK, not a set", []byte(`{"kty":"EC","crv":"P-256","x":"LwoahdmObSufysAKzpfcmYJB_b1SBUu9QKaIw7CwT5I","y":"G7GgK_cvIso8wNsBl5bFYSTDJdguGv5HRf0C6e6Y0I4"}`), jwkspub.ErrInvalid, nil},
		{"not JSON", []byte("-----BEGIN PUBLIC KEY-----\n"), jwkspub.ErrInvalid, nil},
		{"unknown kty", []byte(`{"keys":[{"kty":"XYZ","kid":"x"}]}`), jwkspub.ErrInvalid, nil},
		{"incomplete EC key", []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"x","x":"LwoahdmObSufysAKzpfcmYJB_b1SBUu9QKaIw7CwT5I"}]}`), jwkspub.ErrInvalid, nil},
		{"too large", append(append([]byte(`{"keys":[],"pad":"`), make([]byte, jwkspub.MaxFileBytes)...), `"}`...), jwkspub.ErrInvalid, nil},
	}
}

// TestRefusedAtStart: New refuses a file with a private or a symmetric key,
// or that is no JWKS of public keys, and one it cannot read; the error
// names the file and the key, never the key's material.
func TestRefusedAtStart(t *testing.T) {
	for _, tt := range refusedFiles(t) {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "jwks.json")
			write(t, file, tt.content)
			obs := &countingObserver{}
			p, err := jwkspub.New(jwkspub.Options{File: file, Observer: obs})
			if !errors.Is(err, tt.want) || p != nil {
				t.Fatalf("New = %v, %v; want %v", p, err, tt.want)
			}
			if !strings.Contains(err.Error(), file) {
				t.Errorf("error %q does not name the file", err)
			}
			logcapture.AssertNoSecrets(t, err.Error(), tt.secrets)
			if obs.count(jwkspub.ResultRefused) != 1 {
				t.Errorf("refusal not observed: %v", obs.n)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		obs := &countingObserver{}
		if _, err := jwkspub.New(jwkspub.Options{File: filepath.Join(t.TempDir(), "absent.json"), Observer: obs}); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("New = %v, want a not-exist error", err)
		}
		if obs.count(jwkspub.ResultUnreadable) != 1 {
			t.Errorf("unreadable not observed: %v", obs.n)
		}
	})
}

// TestRefusedOnReload: a changed file that is refused, or that cannot be
// read, keeps the last good set served, is logged once (without key
// material) and observed; a good file afterwards is served again.
func TestRefusedOnReload(t *testing.T) {
	good := newKey(t, jwks.ES256, "good")
	cases := refusedFiles(t)
	var secrets []string
	for _, c := range cases {
		secrets = append(secrets, c.secrets...)
	}
	f := start(t, good.pub, secrets, nil)
	servesGood := func(t *testing.T) {
		t.Helper()
		resp, body := get(t, http.MethodGet, f.url, nil)
		if resp.StatusCode != http.StatusOK || !slices.Equal(kidsOf(t, body), []string{"good"}) {
			t.Fatalf("status %d, kids %v; want 200 and the last good set", resp.StatusCode, kidsOf(t, body))
		}
	}
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			write(t, f.file, tt.content)
			servesGood(t)
			servesGood(t) // not retried or logged again while unchanged
			if n := f.obs.count(jwkspub.ResultRefused); n != i+1 {
				t.Errorf("%d refusals observed, want %d", n, i+1)
			}
		})
	}
	if n := strings.Count(f.logs.String(), "is refused; still serving the previous keys"); n != len(cases) {
		t.Errorf("%d refusals logged, want %d:\n%s", n, len(cases), f.logs.String())
	}
	t.Run("removed", func(t *testing.T) {
		if err := os.Remove(f.file); err != nil {
			t.Fatal(err)
		}
		servesGood(t)
		servesGood(t)
		if n := f.obs.count(jwkspub.ResultUnreadable); n != 1 {
			t.Errorf("%d unreadable observed, want 1", n)
		}
	})
	t.Run("good again", func(t *testing.T) {
		next := newKey(t, jwks.ES256, "next")
		write(t, f.file, next.pub)
		if _, body := get(t, http.MethodGet, f.url, nil); !slices.Equal(kidsOf(t, body), []string{"next"}) {
			t.Fatalf("served %v, want the new good set", kidsOf(t, body))
		}
	})
}

func TestOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "jwks.json")
	write(t, file, newKey(t, jwks.ES256, "a").pub)
	if _, err := jwkspub.New(jwkspub.Options{}); err == nil {
		t.Error("New without a file succeeded")
	}
	if _, err := jwkspub.New(jwkspub.Options{File: file, MaxAge: -time.Second}); err == nil {
		t.Error("New with a negative max-age succeeded")
	}
	p, err := jwkspub.New(jwkspub.Options{File: file, MaxAge: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, jwkspub.Path, nil))
	if got := rec.Header().Get("Cache-Control"); got != "public, max-age=90" {
		t.Errorf("Cache-Control %q, want public, max-age=90", got)
	}
	if len(p.Keys().Keys) != 1 {
		t.Errorf("Keys() = %d keys, want 1", len(p.Keys().Keys))
	}
}
