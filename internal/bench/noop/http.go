package noop

import (
	"net/http"
	"strings"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// HTTPHandler is the forward-auth baseline: every request gets a 200 with
// the headers of a hit of the real server's /auth (pkg/authz's
// ForwardAuth): `Authorization: Bearer <jwt>` with a JWT-shaped value of
// jwtBytes bytes, and `Cache-Control: no-store`. It reads nothing of the
// request.
func HTTPHandler(jwtBytes int) http.Handler {
	auth := []string{"Bearer " + strings.Repeat("x", jwtBytes)}
	noStore := []string{"no-store"}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Authorization"] = auth
		h["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
	})
}

// NewHTTPServer returns an http.Server serving HTTPHandler(jwtBytes) with
// the timeouts pkg/server gives its forward-auth listener by default.
func NewHTTPServer(jwtBytes int) *http.Server {
	return &http.Server{
		Handler:           HTTPHandler(jwtBytes),
		ReadHeaderTimeout: server.DefaultHTTPReadHeaderTimeout,
		ReadTimeout:       server.DefaultHTTPReadTimeout,
		WriteTimeout:      server.DefaultHTTPWriteTimeout,
		IdleTimeout:       server.DefaultHTTPIdleTimeout,
	}
}
