package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	ory "github.com/ory/client-go"

	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// App is the demo app behind Caddy's forward_auth: a public page, a
// protected page that shows the claims of the JWT ory-ext-authz set and the
// headers the app got, and a logout.
type App struct {
	// Keys are the public keys of the tokenizer template; the app verifies
	// every JWT with them, as any upstream should.
	Keys jose.JSONWebKeySet
	// Kratos is Kratos' admin API, to revoke the session on logout.
	Kratos *ory.APIClient
	// Admin is ory-ext-authz's admin API, to invalidate the session's
	// cached JWT after Kratos revoked it.
	Admin adminv1.AdminClient
	// SessionCookie is the name of Kratos' session cookie, expired on logout.
	SessionCookie string
	// Log gets a line per logout and per failure. Nil: slog.Default().
	Log *slog.Logger
	// Now is the clock for the JWT's exp and nbf. Nil: time.Now.
	Now func() time.Time
}

// claims are those of the mesh template's JWT (deploy/kratos/mesh.claims.jsonnet).
type claims struct {
	jwt.Claims
	SessionID string `json:"sid"`
	Email     string `json:"email"`
	AAL       string `json:"aal"`
}

// IssuedAt and Expiry as times, for the page.
func (c *claims) IssuedAtTime() time.Time { return c.IssuedAt.Time().UTC() }
func (c *claims) ExpiryUnix() int64       { return c.Expiry.Time().Unix() }
func (c *claims) ExpiryTime() time.Time   { return c.Expiry.Time().UTC() }

// shownHeader is one request header as the page shows it: credentials
// never in full.
type shownHeader struct{ Name, Value string }

// Handler serves the app.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("GET /protected", a.protected)
	mux.HandleFunc("POST /logout", a.logout)
	return mux
}

func (a *App) home(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Public page"}
	if c, _, err := a.verify(r); err == nil {
		p.Email = c.Email
	}
	render(w, http.StatusOK, "home", p)
}

func (a *App) protected(w http.ResponseWriter, r *http.Request) {
	c, how, err := a.verify(r)
	if err != nil {
		// ory-ext-authz redirects a browser without a session before it
		// gets here; a request that still arrives without a good JWT did
		// not pass through it.
		a.log().Warn("demo app: protected page without a valid JWT", "err", err)
		render(w, http.StatusUnauthorized, "message", page{Title: "Not signed in", Message: "This request carries no valid JWT from ory-ext-authz: " + err.Error()})
		return
	}
	render(w, http.StatusOK, "protected", page{
		Title: "Protected page", Email: c.Email, Claims: c, Verified: how, Headers: a.shownHeaders(r),
	})
}

// logout revokes the session in Kratos, then invalidates its cached JWT in
// ory-ext-authz, in that order (docs/operations.md, "Wiring it to logout"),
// expires Kratos' cookie and sends the browser to the signed-out page.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		a.log().Warn("demo app: logout from another origin refused", "origin", r.Header.Get("Origin"))
		render(w, http.StatusForbidden, "message", page{Title: "Logout refused", Message: "A logout must come from this site's own page."})
		return
	}
	c, _, err := a.verify(r)
	if err != nil || c.SessionID == "" {
		render(w, http.StatusUnauthorized, "message", page{Title: "Not signed in", Message: "There is no session to end."})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if _, err := a.Kratos.IdentityAPI.DisableSession(ctx, c.SessionID).Execute(); err != nil {
		a.log().Error("demo app: revoking the session in Kratos failed", "sid", c.SessionID, "err", err)
		render(w, http.StatusBadGateway, "message", page{Title: "Logout failed", Message: "Kratos did not revoke the session; you are still signed in."})
		return
	}
	res, err := a.Admin.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: c.SessionID})
	if err != nil {
		// Kratos ended the session: the cached JWT is served until it
		// expires, unless this is retried.
		a.log().Error("demo app: InvalidateSession failed", "sid", c.SessionID, "err", err)
		render(w, http.StatusBadGateway, "message", page{Title: "Logout incomplete", Message: "Kratos revoked the session, but ory-ext-authz did not drop its cached JWT: it is served until it expires."})
		return
	}
	a.log().Info("demo app: logged out", "sub", c.Subject, "sid", c.SessionID, "replicas", res.GetReplicas())
	http.SetCookie(w, &http.Cookie{Name: a.SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/ui/logout", http.StatusSeeOther)
}

// sameOrigin tells a form post of this site's own page: the browser's
// Sec-Fetch-Site, else its Origin, must say so.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// The algorithms of the template keys internal/jwks makes.
var algs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

// verify reads the JWT from Authorization and checks its signature with the
// template's keys, and its exp and nbf.
func (a *App) verify(r *http.Request) (*claims, string, error) {
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || raw == "" {
		return nil, "", errors.New("no Authorization: Bearer header")
	}
	tok, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		return nil, "", fmt.Errorf("not a signed JWT: %w", err)
	}
	if len(tok.Headers) != 1 {
		return nil, "", errors.New("want one signature")
	}
	hdr := tok.Headers[0]
	keys := a.Keys.Key(hdr.KeyID)
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("no key %q", hdr.KeyID)
	}
	var c claims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		return nil, "", fmt.Errorf("signature: %w", err)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Time: now()}, 0); err != nil {
		return nil, "", err
	}
	return &c, fmt.Sprintf("%s signature checked with key %s of the template's JWKS", hdr.Algorithm, hdr.KeyID), nil
}

// shownHeaders lists the request's headers with every credential replaced
// by a description: the page must never show a JWT or a cookie's value.
func (a *App) shownHeaders(r *http.Request) []shownHeader {
	var out []shownHeader
	for name, values := range r.Header {
		for _, v := range values {
			switch name {
			case "Authorization":
				kind, _, _ := strings.Cut(v, " ")
				v = fmt.Sprintf("%s <a JWT of %d bytes, set by ory-ext-authz; not shown>", kind, len(v)-len(kind)-1)
			case "Cookie":
				var names []string
				for _, c := range r.Cookies() {
					names = append(names, c.Name+"=<not shown>")
				}
				v = strings.Join(names, "; ")
			}
			out = append(out, shownHeader{Name: name, Value: v})
		}
	}
	slices.SortFunc(out, func(x, y shownHeader) int { return strings.Compare(x.Name, y.Name) })
	return out
}

func (a *App) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}
