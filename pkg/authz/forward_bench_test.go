package authz_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

// BenchmarkForwardAuthHit is the forward-auth hot path: a warm session
// asked by a trusted proxy (Traefik's headers), through the handler
// without the network, against a handler that answers 200 with the same
// headers (the no-op baseline of the HTTP door). Allocations per hit are
// the report; the ratio of the two is in `make bench`.
func BenchmarkForwardAuthHit(b *testing.B) {
	fake := fakeory.New()
	b.Cleanup(fake.Close)
	s := benchServer(b, fake)
	h := s.ForwardAuth(authz.ForwardAuthOptions{})
	const sessions = 256
	reqs := make([]*http.Request, sessions)
	for i := range reqs {
		r := httptest.NewRequest(http.MethodGet, "/auth", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		for k, v := range traefik("/app?x=1", map[string]string{"Cookie": fake.NewSession().CookiePair()}) {
			r.Header.Set(k, v)
		}
		reqs[i] = r
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || w.Header().Get("Authorization") == "" {
			b.Fatalf("warm-up: %d", w.Code)
		}
	}
	auth := reqs[0]
	w := httptest.NewRecorder()
	h.ServeHTTP(w, auth)
	bearer := w.Header().Get("Authorization")
	noop := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Authorization", bearer)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"hit", h}, {"noop", noop}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w := discardWriter{h: http.Header{}}
				bc.h.ServeHTTP(&w, reqs[i%sessions])
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
				i++
			}
		})
	}
}

// discardWriter is the cheapest ResponseWriter, so that the benchmark
// measures the handler.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
