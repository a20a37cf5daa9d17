package ory_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/redistest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// TestSharedPause: a 429 seen by one replica pauses every replica sharing
// the tier (a real redis-server) for its Retry-After: the other replica's
// next call is refused without reaching Ory.
func TestSharedPause(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var calls atomic.Int64
	kratos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer kratos.Close()
	replica := func() *ory.Client {
		c, err := ory.New(ory.Options{BaseURL: kratos.URL, Timeout: time.Second, MaxJWTBytes: 16 << 10,
			SharedPause: redistest.Tier(t, srv.URL(), nil)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	a, b := replica(), replica()
	cred := credential.Credential{Kind: credential.KindSessionToken, Value: "ory_st_x"}
	if _, err := a.Tokenize(t.Context(), cred, "mesh"); err == nil {
		t.Fatal("429: no error")
	}
	if _, err := b.Tokenize(t.Context(), cred, "mesh"); err == nil {
		t.Fatal("replica b during the pause: no error")
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("Ory saw %d calls, want 1: the other replica must not call during the shared pause", n)
	}
}
