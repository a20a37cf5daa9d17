package deploy_test

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/proxytest"
)

// The forward-auth contract as the shipped proxy configs see it (README.md
// of deploy/nginx and deploy/caddy). checkForwardAuth drives a real proxy
// running a shipped config in front of a forward-auth server and a
// recording upstream; TestForwardAuthProxies runs it with fakeForwardAuth,
// and the real ory-ext-authz endpoint plugs into the same helper through
// forwardAuthServer.

// forwardAuthServer is the auth server behind the proxy: fakeForwardAuth
// here, the real ory-ext-authz endpoint later.
type forwardAuthServer struct {
	// addr is host:port of the endpoint (/auth below it).
	addr string
	// session is what a client with a valid session sends (a Cookie).
	session http.Header
	// identityHeaders are the headers the answer for session sets besides
	// Authorization, which the proxy copies onto the request to the app.
	identityHeaders []string
	// checkUpstream checks the headers the app got for session: exactly
	// one Authorization, the identity headers.
	checkUpstream func(t *testing.T, h http.Header)
	// partialSession is a session whose answer lacks the identity header
	// partialMissing; nil skips that case.
	partialSession http.Header
	partialMissing string
	// loginURL is where a browser without a session is sent, with
	// return_to=<the original URL>.
	loginURL string
	// forbiddenPath is a path that session is answered 403 for,
	// unavailablePath one that is answered 503 (Ory unreachable), and
	// slowPath one that is not answered within the proxies' 2s; "" skips.
	forbiddenPath, unavailablePath, slowPath string
	// cookie is the name of a cookie that the 2xx answer for session sets;
	// "" skips.
	cookie string
	// challenge is the WWW-Authenticate of a 401 to an API client; ""
	// skips.
	challenge string
	// seen returns the last request the server got; nil when it cannot
	// tell (the real server).
	seen func() (authRequest, bool)
}

// authRequest is a request as the auth server got it.
type authRequest struct {
	Method, Path string
	Header       http.Header
	BodyLen      int64
}

// forwardAuthProxy is a proxy under test, running a shipped config.
type forwardAuthProxy struct {
	name string
	url  string
	// sets are the headers about the original request that the proxy sets
	// on the auth request, replacing any client copy. The others of
	// originalHeaders reach the auth server as the client sent them.
	sets []string
	// rejectsDuplicateAuthorization: a request with two Authorization
	// headers is the proxy's own 400 (nginx), never asked of the server.
	rejectsDuplicateAuthorization bool
	// passesAuthCookie: a Set-Cookie of a 2xx answer reaches the client.
	passesAuthCookie bool
	// unavailableStatus is what the client gets for a 503 answer, and
	// timeoutStatus for none within the config's 2s.
	unavailableStatus, timeoutStatus int
	// internalPath is the proxy's own auth location, which a client must
	// not reach; "" when it has none.
	internalPath string
}

// originalHeaders are the headers in which a proxy can tell the auth
// server about the original request, with their value for the request
// checkForwardAuth sends and a forged one that a client sends.
func originalHeaders(method, host, uri string) map[string][2]string {
	return map[string][2]string{
		"X-Forwarded-Method": {method, "GET"},
		"X-Forwarded-Uri":    {uri, "/public"},
		"X-Forwarded-Host":   {host, "evil.example"},
		"X-Forwarded-Proto":  {"http", "https"},
		"X-Forwarded-For":    {"127.0.0.1", "203.0.113.66"},
		"X-Original-Method":  {method, "GET"},
		"X-Original-Uri":     {uri, "/public"},
		"X-Original-Url":     {"http://" + host + uri, "https://evil.example/public"},
	}
}

// faClient sends requests to a proxy and tells whether they reached the
// upstream.
type faClient struct {
	c  *http.Client
	up *recordingUpstream
}

type faResponse struct {
	status   int
	header   http.Header
	body     []byte
	upstream *upstreamRequest // nil: the request did not reach the upstream
}

// faRequest is one request to the proxy.
type faRequest struct {
	method, path, host string
	header             http.Header
	body               string
}

func (c faClient) do(t *testing.T, base string, r faRequest) faResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for name, vs := range r.header {
		req.Header[http.CanonicalHeaderKey(name)] = vs
	}
	if r.host != "" {
		req.Host = r.host
	}
	before := c.up.hits()
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := faResponse{status: resp.StatusCode, header: resp.Header, body: b}
	if c.up.hits() != before {
		last := c.up.last()
		out.upstream = &last
	}
	return out
}

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// with returns a copy of h with the pairs added.
func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for name, vs := range headers(kv...) {
		out[name] = append(out[name], vs...)
	}
	return out
}

// checkForwardAuth drives proxy p, which runs a shipped config in front of
// the auth server a and the upstream up, through the contract.
func checkForwardAuth(t *testing.T, p forwardAuthProxy, a forwardAuthServer, up *recordingUpstream) {
	t.Helper()
	client := faClient{c: &http.Client{
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, up: up}
	t.Cleanup(client.c.CloseIdleConnections)
	const host = "app.example.test"
	// forged are headers a client sends to pose as someone: its own
	// Authorization and identity headers.
	forged := func(h http.Header) http.Header {
		h = with(h, "Authorization", "Bearer forged-by-the-client")
		for _, name := range a.identityHeaders {
			h = with(h, name, "mallory")
		}
		return h
	}
	denied := func(t *testing.T, r faResponse, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("status %d, want %d; body %q", r.status, status, r.body)
		}
		if r.upstream != nil {
			t.Fatalf("a %d reached the upstream", status)
		}
		if ct, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", r.header.Get("Content-Type"))
		}
		var body struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil || body.Error == "" {
			t.Errorf("body %q is no JSON error (%v)", r.body, err)
		}
	}

	t.Run("session: the app gets one Authorization, the auth server's", func(t *testing.T) {
		r := client.do(t, p.url, faRequest{path: "/app/page?x=1&y=%2F", host: host, header: forged(a.session)})
		if r.status != http.StatusOK || r.upstream == nil {
			t.Fatalf("status %d, reached the upstream: %v; body %q", r.status, r.upstream != nil, r.body)
		}
		a.checkUpstream(t, r.upstream.Header)
		for _, v := range r.upstream.Header.Values("Authorization") {
			if strings.Contains(v, "forged") || strings.HasPrefix(v, "Basic") {
				t.Errorf("the client's Authorization %q reached the app", v)
			}
		}
		for _, name := range a.identityHeaders {
			if slices.Contains(r.upstream.Header.Values(name), "mallory") {
				t.Errorf("the client's %s reached the app", name)
			}
		}
		if r.upstream.URI != "/app/page?x=1&y=%2F" || r.upstream.Host != host {
			t.Errorf("the app got %s %s (Host %s), want the original request", r.upstream.Method, r.upstream.URI, r.upstream.Host)
		}
	})

	t.Run("two client Authorization headers", func(t *testing.T) {
		r := client.do(t, p.url, faRequest{path: "/app/page", host: host,
			header: with(forged(a.session), "Authorization", "Basic bWFsbG9yeTo=")})
		if p.rejectsDuplicateAuthorization {
			if r.status != http.StatusBadRequest || r.upstream != nil {
				t.Errorf("status %d, reached the upstream %v; want the proxy's 400", r.status, r.upstream != nil)
			}
			return
		}
		if r.status != http.StatusOK || r.upstream == nil {
			t.Fatalf("status %d, reached the upstream: %v", r.status, r.upstream != nil)
		}
		a.checkUpstream(t, r.upstream.Header)
	})

	if a.partialSession != nil {
		t.Run("an identity header the answer lacks is removed", func(t *testing.T) {
			r := client.do(t, p.url, faRequest{path: "/app/page", host: host, header: forged(a.partialSession)})
			if r.status != http.StatusOK || r.upstream == nil {
				t.Fatalf("status %d, reached the upstream: %v", r.status, r.upstream != nil)
			}
			if v := r.upstream.Header.Values(a.partialMissing); len(v) > 0 {
				t.Errorf("the app got %s %q; the answer had none, so the client's must be removed", a.partialMissing, v)
			}
		})
	}

	t.Run("no session: the 401 reaches the client, not the app", func(t *testing.T) {
		r := client.do(t, p.url, faRequest{path: "/app/page", host: host, header: forged(headers("Accept", "application/json"))})
		denied(t, r, http.StatusUnauthorized)
		if a.challenge != "" && r.header.Get("WWW-Authenticate") != a.challenge {
			t.Errorf("WWW-Authenticate %q, want the answer's %q", r.header.Get("WWW-Authenticate"), a.challenge)
		}
		if r.header.Get("Location") != "" || r.header.Get(authRedirectHeader) != "" {
			t.Errorf("an API client got a redirect: Location %q, %s %q", r.header.Get("Location"), authRedirectHeader, r.header.Get(authRedirectHeader))
		}
	})

	t.Run("a browser without a session is sent to the login with return_to", func(t *testing.T) {
		r := client.do(t, p.url, faRequest{path: "/app/page?x=1", host: host, header: headers("Accept", "text/html,application/xhtml+xml")})
		if r.status != http.StatusFound || r.upstream != nil {
			t.Fatalf("status %d, reached the upstream %v; want a 302 before the app", r.status, r.upstream != nil)
		}
		loc, err := url.Parse(r.header.Get("Location"))
		if err != nil || !strings.HasPrefix(loc.String(), a.loginURL+"?") {
			t.Fatalf("Location %q, want the login URL %s", r.header.Get("Location"), a.loginURL)
		}
		if got, want := loc.Query().Get("return_to"), "http://"+host+"/app/page?x=1"; got != want {
			t.Errorf("return_to %q, want the original URL %q", got, want)
		}
		if v := r.header.Get(authRedirectHeader); v != "" {
			t.Errorf("the client got %s %q; it is between the auth server and nginx", authRedirectHeader, v)
		}
	})

	// Only an auth server that tells what it got (the fake) shows this; the
	// real server's side of it is TestForwardAuthRealServer's forged
	// original-request headers.
	if a.seen != nil {
		t.Run("the auth server gets the original request, whatever the client forged", func(t *testing.T) {
			const uri = "/app/form?q=a%20b&r=1"
			h := a.session.Clone()
			truth := originalHeaders(http.MethodPost, host, uri)
			for name, v := range truth {
				h.Set(name, v[1])
			}
			r := client.do(t, p.url, faRequest{method: http.MethodPost, path: uri, host: host, header: h, body: "payload"})
			if r.status != http.StatusOK || r.upstream == nil {
				t.Fatalf("status %d, reached the upstream %v", r.status, r.upstream != nil)
			}
			if r.upstream.Method != http.MethodPost || r.upstream.BodyLen != int64(len("payload")) {
				t.Errorf("the app got %s with %d body bytes, want the POST and its 7 bytes", r.upstream.Method, r.upstream.BodyLen)
			}
			seen, ok := a.seen()
			if !ok {
				t.Fatal("the auth server got no request")
			}
			if seen.Method != http.MethodGet || seen.Path != "/auth" || seen.BodyLen != 0 {
				t.Errorf("the auth request was %s %s with %d body bytes, want GET /auth without a body", seen.Method, seen.Path, seen.BodyLen)
			}
			for name, v := range truth {
				got := seen.Header.Values(name)
				switch {
				case slices.Contains(p.sets, name):
					if len(got) != 1 || got[0] != v[0] {
						t.Errorf("%s %q, want %q (the proxy sets it, replacing the client's %q)", name, got, v[0], v[1])
					}
				case len(got) != 1 || got[0] != v[1]:
					// Not set by the proxy: the client's copy goes through,
					// which the READMEs warn of. A proxy that changed would
					// make them wrong.
					t.Errorf("%s %q, want the client's %q passed on (the proxy does not set it; update the README if this changed)", name, got, v[1])
				}
			}
		})

	}

	t.Run("the app's own 401 reaches the client as the app sent it", func(t *testing.T) {
		r := client.do(t, p.url, faRequest{path: appOwn401, host: host, header: a.session})
		if r.status != http.StatusUnauthorized || r.upstream == nil || string(r.body) != appOwn401Body {
			t.Errorf("status %d, reached the upstream %v, body %q; want the app's 401 %q", r.status, r.upstream != nil, r.body, appOwn401Body)
		}
	})

	if a.forbiddenPath != "" {
		t.Run("403 reaches the client", func(t *testing.T) {
			denied(t, client.do(t, p.url, faRequest{path: a.forbiddenPath, host: host, header: a.session}), http.StatusForbidden)
		})
	}
	if a.unavailablePath != "" {
		t.Run("503 from the auth server fails closed", func(t *testing.T) {
			r := client.do(t, p.url, faRequest{path: a.unavailablePath, host: host, header: a.session})
			if r.status != p.unavailableStatus || r.upstream != nil {
				t.Errorf("status %d, reached the upstream %v; want %d before the app", r.status, r.upstream != nil, p.unavailableStatus)
			}
		})
	}
	if a.slowPath != "" {
		t.Run("no answer in time fails closed", func(t *testing.T) {
			r := client.do(t, p.url, faRequest{path: a.slowPath, host: host, header: a.session})
			if r.status != p.timeoutStatus || r.upstream != nil {
				t.Errorf("status %d, reached the upstream %v; want %d before the app", r.status, r.upstream != nil, p.timeoutStatus)
			}
		})
	}
	if a.cookie != "" {
		t.Run("Set-Cookie of a 2xx answer", func(t *testing.T) {
			r := client.do(t, p.url, faRequest{path: "/app/page", host: host, header: a.session})
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			got := slices.ContainsFunc(r.header.Values("Set-Cookie"), func(c string) bool { return strings.HasPrefix(c, a.cookie+"=") })
			if got != p.passesAuthCookie {
				t.Errorf("the client got the answer's cookie %s: %v, want %v (README)", a.cookie, got, p.passesAuthCookie)
			}
		})
	}
	if p.internalPath != "" {
		t.Run("the auth location is internal", func(t *testing.T) {
			if r := client.do(t, p.url, faRequest{path: p.internalPath, host: host, header: a.session}); r.status != http.StatusNotFound || r.upstream != nil {
				t.Errorf("GET %s = %d, want 404", p.internalPath, r.status)
			}
		})
	}
}

// upstreamRequest is a request as the upstream got it.
type upstreamRequest struct {
	Method, URI, Host string
	Header            http.Header
	BodyLen           int64
}

// The app answers appOwn401 with a 401 of its own.
const (
	appOwn401     = "/app/own-401"
	appOwn401Body = "the app's own 401"
)

// recordingUpstream is the app: it records every request.
type recordingUpstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	n    int
	prev upstreamRequest
}

func startRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.n++
		u.prev = upstreamRequest{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), BodyLen: n}
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		if r.URL.Path == appOwn401 {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, appOwn401Body)
			return
		}
		_, _ = io.WriteString(w, "app")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *recordingUpstream) addr() string { return u.srv.Listener.Addr().String() }

func (u *recordingUpstream) hits() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

func (u *recordingUpstream) last() upstreamRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.prev
}

// The fake's contract, minimal: a Cookie ok=1 is a session (ok=noemail one
// whose answer has no X-User-Email); a session on /forbidden... is a 403,
// any request on /unavailable... a 503, one on /slow... waits until the
// proxy gives up; without a session a browser
// (Accept: text/html) is redirected to fakeLoginURL (behind nginx, which
// sends X-Original-URL, as a 401 with X-Auth-Redirect) and anything else is
// a JSON 401.
const (
	fakeJWT      = "Bearer fake.jwt.user-1"
	fakeUserID   = "user-1"
	fakeEmail    = "user-1@example.test"
	fakeLoginURL = "http://login.example.test/self-service/login/browser"
	fakeCookie   = "ory_ext_authz_fake"
	// fakeChallenge is the WWW-Authenticate of the fake's JSON 401.
	fakeChallenge = `Bearer realm="fake"`
)

// fakeForwardAuth is a forward-auth server with the contract above.
type fakeForwardAuth struct {
	srv  *httptest.Server
	mu   sync.Mutex
	prev authRequest
	n    int
}

func startFakeForwardAuth(t *testing.T) *fakeForwardAuth {
	t.Helper()
	f := &fakeForwardAuth{}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeForwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.n++
	f.prev = authRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), BodyLen: n}
	f.mu.Unlock()
	if r.URL.Path != "/auth" {
		http.NotFound(w, r)
		return
	}
	answer := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body+"\n")
	}
	original := fakeOriginalURL(r)
	ok, _ := r.Cookie("ok")
	session := ok != nil && (ok.Value == "1" || ok.Value == "noemail")
	switch {
	case strings.HasPrefix(original.Path, "/slow"):
		// Past the proxies' 2s timeout: they give up and close the
		// connection, which ends the wait.
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		answer(http.StatusOK, `{}`)
	case strings.HasPrefix(original.Path, "/unavailable"):
		answer(http.StatusServiceUnavailable, `{"error":"unavailable","message":"Ory is unreachable"}`)
	case session && strings.HasPrefix(original.Path, "/forbidden"):
		answer(http.StatusForbidden, `{"error":"forbidden","message":"not for this session"}`)
	case session:
		w.Header().Set("Authorization", fakeJWT)
		w.Header().Set("X-User-Id", fakeUserID)
		if ok.Value == "1" {
			w.Header().Set("X-User-Email", fakeEmail)
		}
		http.SetCookie(w, &http.Cookie{Name: fakeCookie, Value: "1", Path: "/"})
		w.WriteHeader(http.StatusOK)
	case strings.Contains(r.Header.Get("Accept"), "text/html"):
		login := fakeLoginURL + "?return_to=" + url.QueryEscape(original.String())
		if r.Header.Get("X-Original-Url") != "" {
			w.Header().Set(authRedirectHeader, login)
			answer(http.StatusUnauthorized, `{"error":"unauthenticated","message":"no valid Ory session"}`)
			return
		}
		http.Redirect(w, r, login, http.StatusFound)
	default:
		w.Header().Set("WWW-Authenticate", fakeChallenge)
		answer(http.StatusUnauthorized, `{"error":"unauthenticated","message":"no valid Ory session"}`)
	}
}

// fakeOriginalURL is the original request's URL: from X-Forwarded-Proto,
// -Host and -Uri (Traefik, Caddy, and the shipped nginx.conf), else from
// X-Original-URL (ingress-nginx).
func fakeOriginalURL(r *http.Request) *url.URL {
	raw := r.Header.Get("X-Original-Url")
	if uri := r.Header.Get("X-Forwarded-Uri"); uri != "" {
		raw = r.Header.Get("X-Forwarded-Proto") + "://" + r.Header.Get("X-Forwarded-Host") + uri
	}
	u, err := url.Parse(raw)
	if err != nil {
		return &url.URL{}
	}
	return u
}

func (f *fakeForwardAuth) addr() string { return f.srv.Listener.Addr().String() }

// server is the fake as checkForwardAuth sees it.
func (f *fakeForwardAuth) server() forwardAuthServer {
	return forwardAuthServer{
		addr:            f.addr(),
		session:         headers("Cookie", "ok=1"),
		identityHeaders: []string{"X-User-Id", "X-User-Email"},
		checkUpstream: func(t *testing.T, h http.Header) {
			t.Helper()
			for name, want := range map[string]string{"Authorization": fakeJWT, "X-User-Id": fakeUserID, "X-User-Email": fakeEmail} {
				if got := h.Values(name); len(got) != 1 || got[0] != want {
					t.Errorf("the app got %s %q, want exactly %q", name, got, want)
				}
			}
		},
		partialSession:  headers("Cookie", "ok=noemail"),
		partialMissing:  "X-User-Email",
		loginURL:        fakeLoginURL,
		forbiddenPath:   "/forbidden/page",
		unavailablePath: "/unavailable/page",
		slowPath:        "/slow/page",
		cookie:          fakeCookie,
		challenge:       fakeChallenge,
		seen: func() (authRequest, bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.prev, f.n > 0
		},
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// shippedProxy starts one proxy on its shipped config.
type shippedProxy struct {
	name  string
	start func(t *testing.T, authAddr, upstreamAddr string) forwardAuthProxy
	// unreachableStatus is what a client gets when the auth server is down.
	unreachableStatus int
}

var shippedProxies = []shippedProxy{
	{
		name: "nginx",
		start: func(t *testing.T, authAddr, upstreamAddr string) forwardAuthProxy {
			p := proxytest.StartNginx(t, nginxTemplate(t), proxytest.Vars{"auth": authAddr, "upstream": upstreamAddr})
			return forwardAuthProxy{
				name: "nginx", url: p.URL(),
				sets: []string{
					"X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For",
					"X-Original-Method", "X-Original-Uri", "X-Original-Url",
				},
				rejectsDuplicateAuthorization: true,
				passesAuthCookie:              true,
				unavailableStatus:             http.StatusInternalServerError,
				timeoutStatus:                 http.StatusInternalServerError,
				internalPath:                  "/_ory_ext_authz",
			}
		},
		unreachableStatus: http.StatusInternalServerError,
	},
	{
		name: "caddy",
		start: func(t *testing.T, authAddr, upstreamAddr string) forwardAuthProxy {
			p := proxytest.StartCaddy(t, caddyTemplate(t), proxytest.Vars{"auth": authAddr, "upstream": upstreamAddr})
			return forwardAuthProxy{
				name: "caddy", url: p.URL(),
				sets:              []string{"X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For"},
				passesAuthCookie:  false,
				unavailableStatus: http.StatusServiceUnavailable,
				timeoutStatus:     http.StatusGatewayTimeout,
			}
		},
		unreachableStatus: http.StatusBadGateway,
	},
}

// TestForwardAuthProxies runs the real nginx and the real Caddy on the
// shipped deploy/nginx/nginx.conf and deploy/caddy/Caddyfile, with only
// addresses rewritten for loopback, in front of fakeForwardAuth and a
// recording upstream, through checkForwardAuth; then with the auth server
// down, which must fail closed.
func TestForwardAuthProxies(t *testing.T) {
	for _, sp := range shippedProxies {
		t.Run(sp.name, func(t *testing.T) {
			auth := startFakeForwardAuth(t)
			up := startRecordingUpstream(t)
			checkForwardAuth(t, sp.start(t, auth.addr(), up.addr()), auth.server(), up)
		})
		t.Run(sp.name+" with the auth server down", func(t *testing.T) {
			up := startRecordingUpstream(t)
			p := sp.start(t, closedAddr(t), up.addr())
			client := faClient{c: &http.Client{Transport: &http.Transport{Proxy: nil}}, up: up}
			t.Cleanup(client.c.CloseIdleConnections)
			r := client.do(t, p.url, faRequest{path: "/app/page", header: headers("Cookie", "ok=1")})
			if r.status != sp.unreachableStatus || r.upstream != nil {
				t.Errorf("status %d, reached the upstream %v; want %d before the app", r.status, r.upstream != nil, sp.unreachableStatus)
			}
		})
	}
}
