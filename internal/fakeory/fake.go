// Package fakeory is a fake Ory for tests: an httptest server on loopback that
// answers /sessions/whoami?tokenize_as= like Kratos v1.3.1 does, signs real ES256
// JWTs, counts calls and records what it received. Hooks let a test inject the
// faults a real Kratos cannot be made to show (slow, garbage, 429).
//
// Use a real Kratos (internal/kratosdev) for behaviour Kratos can show.
package fakeory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Session is a session the fake knows.
type Session struct {
	ID         string
	IdentityID string
	// Cookie is the ory_kratos_session cookie value, Token the session token.
	Cookie, Token string
	AAL           string
	// RequireAAL2 makes whoami answer 403 session_aal2_required.
	RequireAAL2 bool
}

// CookiePair is "ory_kratos_session=<value>", ready for a Cookie header.
func (s Session) CookiePair() string { return CookieName + "=" + s.Cookie }

// CookieName is the cookie the fake reads (self-hosted Kratos' name).
const CookieName = "ory_kratos_session"

// Received is what the fake got in one whoami call.
type Received struct {
	Template string
	Header   http.Header
}

// Fake is a fake Ory. Its fields may be set before the first call.
type Fake struct {
	Server *httptest.Server
	// URL is the base URL, also the JWT issuer.
	URL string
	// TTL is the JWT lifetime (default 1m); a zero Now means time.Now.
	TTL time.Duration
	Now func() time.Time
	// Forget stops recording what the fake received, for long runs.
	Forget bool

	key  *ecdsa.PrivateKey
	jwks jose.JSONWebKeySet

	calls       atomic.Int64
	inflight    atomic.Int64
	maxInflight atomic.Int64

	mu       sync.Mutex
	sessions []*Session
	// cookies and tokens index sessions (the first one added wins, as in
	// a scan of sessions), so that a lookup costs the same with 10
	// sessions or 100,000 (make bench).
	cookies   map[string]*Session
	tokens    map[string]*Session
	templates map[string]bool
	received  []Received
	secrets   []string
	// hook, when set, may answer a call itself (return true) to inject a fault.
	hook func(w http.ResponseWriter, r *http.Request) bool
	// claims, when set, may change the claims of each minted JWT.
	claims func(map[string]any)
	// setCookie, when set, is sent as Set-Cookie on every 200.
	setCookie string
}

// New starts a fake Ory on 127.0.0.1 that knows the template "mesh". Close it
// with Close (or t.Cleanup(f.Close)).
func New() *Fake {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	f := &Fake{TTL: time.Minute, key: key, templates: map[string]bool{"mesh": true}, cookies: map[string]*Session{}, tokens: map[string]*Session{}}
	f.jwks = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "fake", Algorithm: string(jose.ES256), Use: "sig"}}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.Server.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() {
	f.mu.Lock()
	srv := f.Server
	f.mu.Unlock()
	srv.Close()
}

// Down stops the server so that connections to its address are refused
// (until Up).
func (f *Fake) Down() { f.Close() }

// Up starts the server again on the same address after Down.
func (f *Fake) Up() error {
	addr := strings.TrimPrefix(f.URL, "http://")
	var l net.Listener
	var err error
	// The port was just released; retry briefly if the kernel still holds it.
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener = l
	srv.Start()
	f.mu.Lock()
	f.Server = srv
	f.mu.Unlock()
	return nil
}

// MaxConcurrent is the most whoami calls the fake had in flight at once.
func (f *Fake) MaxConcurrent() int64 { return f.maxInflight.Load() }

// JWKS is the public key set the fake signs with.
func (f *Fake) JWKS() jose.JSONWebKeySet { return f.jwks }

// Calls is how many whoami calls the fake answered or refused.
func (f *Fake) Calls() int64 { return f.calls.Load() }

// AddTemplate makes another template known.
func (f *Fake) AddTemplate(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.templates[name] = true
}

// SetHook installs (or with nil removes) a fault hook.
func (f *Fake) SetHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

// SetClaims installs (or with nil removes) a claims editor.
func (f *Fake) SetClaims(c func(map[string]any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = c
}

// SetCookie makes every 200 carry this Set-Cookie value ("" for none).
func (f *Fake) SetCookie(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setCookie = v
}

// NewSession adds a session with a fresh cookie and token.
func (f *Fake) NewSession() *Session {
	s := &Session{ID: randID(), IdentityID: randID(), Cookie: "MTc" + randHex(48), Token: "ory_st_" + randHex(16), AAL: "aal1"}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.add(s)
	return s
}

// add records s; f.mu is held.
func (f *Fake) add(s *Session) {
	f.sessions = append(f.sessions, s)
	f.secrets = append(f.secrets, s.Cookie, s.Token)
	f.index(s, false)
}

// index adds s to the lookup maps; replace says whether it wins over a
// session already there. f.mu is held.
func (f *Fake) index(s *Session, replace bool) {
	if _, ok := f.cookies[s.Cookie]; s.Cookie != "" && (replace || !ok) {
		f.cookies[s.Cookie] = s
	}
	if _, ok := f.tokens[s.Token]; s.Token != "" && (replace || !ok) {
		f.tokens[s.Token] = s
	}
}

// AddSession adds a session with the given values (for fixed test data such
// as fuzz seeds); empty fields are filled in.
func (f *Fake) AddSession(s Session) *Session {
	if s.ID == "" {
		s.ID = randID()
	}
	if s.IdentityID == "" {
		s.IdentityID = randID()
	}
	if s.AAL == "" {
		s.AAL = "aal1"
	}
	p := &s
	f.mu.Lock()
	defer f.mu.Unlock()
	f.add(p)
	return p
}

// Revoke forgets a session: whoami answers 401 for it from now on.
func (f *Fake) Revoke(s *Session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.Index(f.sessions, s)
	if i < 0 {
		return
	}
	f.sessions = slices.Delete(f.sessions, i, i+1)
	// Another session with the same cookie or token now answers for it.
	clear(f.cookies)
	clear(f.tokens)
	for _, x := range slices.Backward(f.sessions) {
		f.index(x, true)
	}
}

// Received returns what the fake got, in order.
func (f *Fake) Received() []Received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Received(nil), f.received...)
}

// Secrets returns every cookie value, token and JWT the fake handed out, for
// asserting that none of them reached a log.
func (f *Fake) Secrets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.secrets...)
}

func (f *Fake) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/sessions/whoami" {
		http.NotFound(w, r)
		return
	}
	f.calls.Add(1)
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for m := f.maxInflight.Load(); n > m && !f.maxInflight.CompareAndSwap(m, n); m = f.maxInflight.Load() {
	}
	f.mu.Lock()
	if !f.Forget {
		f.received = append(f.received, Received{Template: r.URL.Query().Get("tokenize_as"), Header: r.Header.Clone()})
	}
	hook := f.hook
	f.mu.Unlock()
	if hook != nil && hook(w, r) {
		return
	}
	s := f.lookup(r)
	if s == nil {
		writeError(w, http.StatusUnauthorized, "session_inactive", "No active session was found in this request.", "")
		return
	}
	if s.RequireAAL2 {
		writeError(w, http.StatusForbidden, "session_aal2_required", "An active session was found but it does not fulfil the Authenticator Assurance Level.",
			f.URL+"/self-service/login/browser?aal=aal2")
		return
	}
	template := r.URL.Query().Get("tokenize_as")
	f.mu.Lock()
	known := f.templates[template]
	f.mu.Unlock()
	body := map[string]any{
		"id":                            s.ID,
		"active":                        true,
		"authenticator_assurance_level": s.AAL,
		"identity":                      map[string]any{"id": s.IdentityID, "schema_id": "default", "schema_url": f.URL + "/schemas/default", "traits": map[string]any{"email": s.IdentityID + "@example.org"}},
	}
	if template != "" {
		if !known {
			writeError(w, http.StatusBadRequest, "", "Unable to find tokenizer template", "")
			return
		}
		tok, err := f.Mint(s, template)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body["tokenized"] = tok
	}
	f.mu.Lock()
	sc := f.setCookie
	f.mu.Unlock()
	if sc != "" {
		w.Header().Add("Set-Cookie", sc)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// Mint signs a JWT for s as Kratos' tokenizer would.
func (f *Fake) Mint(s *Session, template string) (string, error) {
	now := f.now()
	claims := map[string]any{
		"sub": s.IdentityID, "sid": s.ID, "iss": f.URL, "jti": randID(),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(f.TTL).Unix(),
		"email": s.IdentityID + "@example.org", "aal": s.AAL, "template": template,
	}
	f.mu.Lock()
	edit := f.claims
	f.mu.Unlock()
	if edit != nil {
		edit(claims)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "fake"))
	if err != nil {
		return "", err
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.secrets = append(f.secrets, tok)
	f.mu.Unlock()
	return tok, nil
}

// lookup finds the session in Kratos' order: X-Session-Token, the session
// cookie, Authorization: Bearer.
func (f *Fake) lookup(r *http.Request) *Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tok := r.Header.Get("X-Session-Token"); tok != "" {
		return f.byToken(tok)
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return f.cookies[c.Value]
	}
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "bearer") {
		return f.byToken(tok)
	}
	return nil
}

func (f *Fake) byToken(tok string) *Session { return f.tokens[tok] }

func writeError(w http.ResponseWriter, code int, id, reason, redirect string) {
	body := map[string]any{"error": map[string]any{"code": code, "status": http.StatusText(code), "id": id, "reason": reason, "message": reason}}
	if id == "" {
		delete(body["error"].(map[string]any), "id")
	}
	if redirect != "" {
		body["redirect_browser_to"] = redirect
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Faults a test can install with SetHook.

// Status answers every call with code and, when retryAfter is not empty, a
// Retry-After header.
func Status(code int, retryAfter string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		return true
	}
}

// Body answers every call with 200 and this JSON (or not JSON) body.
func Body(body string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
		return true
	}
}

// Slow holds every call for d (or until the client gives up), then answers
// normally.
func Slow(d time.Duration) func(http.ResponseWriter, *http.Request) bool {
	return func(_ http.ResponseWriter, r *http.Request) bool {
		select {
		case <-time.After(d):
			return false
		case <-r.Context().Done():
			return true
		}
	}
}

// Reset starts a 200 answer, then resets the connection (TCP RST) halfway
// through the body.
func Reset(w http.ResponseWriter, _ *http.Request) bool {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"id\":\"abc\",\"active\":tr")
	_ = buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST instead of FIN
	}
	_ = conn.Close()
	return true
}
