package deploy_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// realForwardAuthRoutes is the route table of the real server behind the
// proxies: an open /public/, an aal2 /admin/, a /broken/ area whose
// template Kratos cannot sign (Ory failing), and the default: browsers to
// the login, the identity headers the shipped proxy configs copy.
const realForwardAuthRoutes = `rules:
  - name: public
    match: {path: {prefix: /public/}}
    on_missing: allow
  - name: admin
    match: {path: {prefix: /admin/}}
    require_aal: aal2
  - name: broken
    match: {path: {prefix: /broken/}}
    tokenize_as: broken
  - name: app
    on_missing: redirect
    headers: {x-user-id: sub, x-user-email: email}
`

const realLoginURL = "http://127.0.0.1:4455/login"

// realForwardAuth is ory-ext-authz's forward-auth endpoint, wired as serve
// wires it, in front of a real Kratos.
type realForwardAuth struct {
	kratos   *kratosdev.Kratos
	addr     string
	identity string
	cookie   string
	keys     jose.JSONWebKeySet
	logs     *logcapture.Buffer
}

func startRealForwardAuth(t *testing.T) *realForwardAuth {
	t.Helper()
	k := kratostest.Start(t, kratosdev.Options{Templates: map[string]kratosdev.TokenizerTemplate{
		// Kratos answers 500 for this template: Ory failing.
		"broken": {TTL: time.Minute, JWKSURL: "http://127.0.0.1:1/unreachable.json"},
	}})
	r := &realForwardAuth{kratos: k}
	pub, err := jwks.Public(k.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(pub, &r.keys); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if r.identity, err = k.CreateIdentity(ctx, stackEmail, stackPassword); err != nil {
		t.Fatal(err)
	}
	// A session Kratos extends, so that its whoami answers carry the
	// refreshed cookie (Set-Cookie) to pass on.
	var sid string
	if r.cookie, sid, err = k.BrowserLoginSession(ctx, stackEmail, stackPassword); err != nil {
		t.Fatal(err)
	}
	if err := k.ExtendSession(ctx, sid); err != nil {
		t.Fatal(err)
	}
	warmUp(t, k, kratosdev.MeshTemplate, r.cookie)

	file := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(file, []byte(realForwardAuthRoutes), 0o600); err != nil {
		t.Fatal(err)
	}
	log, logs := logcapture.Logger(t, func() []string { return []string{r.cookie} })
	r.logs = logs
	cfg := config.Default()
	cfg.OryURL, cfg.TokenizeAs, cfg.LoginURL, cfg.Routes = k.PublicURL(), kratosdev.MeshTemplate, realLoginURL, file
	oc, err := ory.New(ory.Options{BaseURL: cfg.OryURL, Timeout: 5 * time.Second, MaxJWTBytes: config.MaxCredentialBytes})
	if err != nil {
		t.Fatal(err)
	}
	opts := cfg.AuthzOptions(oc)
	opts.Logger = log
	w, err := routes.NewWatcher(file, routes.WatcherOptions{Logger: log, Accept: func(tb *routes.Table) error { return authz.CheckTable(tb, true) }})
	if err != nil {
		t.Fatal(err)
	}
	opts.Routes = w
	az, err := authz.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		az.Close()
		oc.Close()
	})
	a := servertest.Start(t, server.Options{Authz: az, Logger: log, ForwardAuthHandler: az.ForwardAuth(authz.ForwardAuthOptions{TrustedProxies: cfg.TrustedProxies})})
	r.addr = a.ForwardAuth
	return r
}

func (r *realForwardAuth) server() forwardAuthServer {
	return forwardAuthServer{
		addr:            r.addr,
		session:         headers("Cookie", r.cookie),
		identityHeaders: []string{"X-User-Id", "X-User-Email"},
		checkUpstream: func(t *testing.T, h http.Header) {
			t.Helper()
			auth := h.Values("Authorization")
			if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
				t.Fatalf("the app got Authorization %d times", len(auth))
			}
			tok, err := jwt.ParseSigned(strings.TrimPrefix(auth[0], "Bearer "), []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				Sub   string `json:"sub"`
				Email string `json:"email"`
			}
			if err := tok.Claims(r.keys, &claims); err != nil {
				t.Fatalf("the app's JWT does not verify against the tokenizer's JWKS: %v", err)
			}
			if claims.Sub != r.identity || claims.Email != stackEmail {
				t.Errorf("JWT sub %q email %q", claims.Sub, claims.Email)
			}
			if h.Get("X-User-Id") != r.identity || len(h.Values("X-User-Id")) != 1 || h.Get("X-User-Email") != stackEmail {
				t.Errorf("the app got X-User-Id %q, X-User-Email %q", h.Values("X-User-Id"), h.Values("X-User-Email"))
			}
		},
		loginURL:        realLoginURL,
		forbiddenPath:   "/admin/page",
		unavailablePath: "/broken/page",
		cookie:          kratosdev.SessionCookie,
	}
}

// TestForwardAuthRealServer drives the real nginx and the real Caddy, on
// the shipped configs, in front of the real ory-ext-authz forward-auth
// endpoint and the real Kratos (checkForwardAuth: one Authorization that
// verifies against the tokenizer's JWKS, the identity headers, forged
// ones replaced, 401, the login redirect with return_to, 403 below the
// route's aal, Ory failing closed, Kratos' refreshed cookie); then what
// only the real server shows: an open route passes without a session,
// original-request headers a client forged through the proxy never open
// a route, and a stopped Kratos fails closed.
func TestForwardAuthRealServer(t *testing.T) {
	for _, sp := range shippedProxies {
		t.Run(sp.name, func(t *testing.T) {
			ra := startRealForwardAuth(t)
			up := startRecordingUpstream(t)
			p := sp.start(t, ra.addr, up.addr())
			checkForwardAuth(t, p, ra.server(), up)

			client := faClient{c: &http.Client{Transport: &http.Transport{Proxy: nil},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, up: up}
			t.Cleanup(client.c.CloseIdleConnections)
			const host = "app.example.test"
			t.Run("an open route passes without a session", func(t *testing.T) {
				r := client.do(t, p.url, faRequest{path: "/public/page", host: host, header: headers("Authorization", "Bearer forged", "X-User-Id", "mallory")})
				if r.status != http.StatusOK || r.upstream == nil {
					t.Fatalf("status %d, reached the upstream %v", r.status, r.upstream != nil)
				}
				if v := r.upstream.Header.Values("Authorization"); len(v) != 0 {
					t.Errorf("the app got the client's Authorization %q", v)
				}
				if v := r.upstream.Header.Values("X-User-Id"); len(v) != 0 {
					t.Errorf("the app got the client's X-User-Id %q", v)
				}
			})
			t.Run("forged original-request headers never open a route", func(t *testing.T) {
				h := headers("Accept", "application/json")
				for name, v := range originalHeaders(http.MethodGet, host, "/app/page") {
					h.Set(name, strings.Replace(v[1], "/public", "/public/page", 1))
				}
				r := client.do(t, p.url, faRequest{path: "/app/page", host: host, header: h})
				if r.upstream != nil || r.status == http.StatusOK {
					t.Errorf("status %d, reached the upstream %v: a client's forged headers named the open route", r.status, r.upstream != nil)
				}
			})
			t.Run("Kratos stopped: fail closed", func(t *testing.T) {
				if err := ra.kratos.Stop(); err != nil {
					t.Fatal(err)
				}
				r := client.do(t, p.url, faRequest{path: "/app/page", host: host, header: headers("Cookie", kratosdev.SessionCookie+"=never-cached-"+sp.name)})
				if r.upstream != nil || r.status != p.unavailableStatus {
					t.Errorf("status %d, reached the upstream %v; want %d before the app", r.status, r.upstream != nil, p.unavailableStatus)
				}
			})
		})
	}
}
