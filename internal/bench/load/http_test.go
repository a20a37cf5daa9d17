package load

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestClosedHTTP: the driver sends Traefik's headers and the session's
// cookie, cycles through the sessions, reuses its keep-alive connections
// (at most one per caller), and counts as failed every answer that is not
// a 200 with a bearer Authorization.
func TestClosedHTTP(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/auth" || r.Header.Get("X-Forwarded-Method") != "GET" ||
			r.Header.Get("X-Forwarded-Proto") != "https" || r.Header.Get("X-Forwarded-Host") != "app.example.org" ||
			r.Header.Get("X-Forwarded-Uri") != "/app?x=1" {
			http.Error(w, "bad forwarded headers", http.StatusBadRequest)
			return
		}
		c, err := r.Cookie("ory_kratos_session")
		if err != nil {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		seen[c.Value]++
		mu.Unlock()
		switch c.Value {
		case "denied":
			http.Error(w, "denied", http.StatusForbidden)
		case "bare":
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjoxODAwMDAwMDAwfQ.c2ln")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	sessions := []string{"ory_kratos_session=a", "ory_kratos_session=b", "ory_kratos_session=denied", "ory_kratos_session=bare"}
	reqs, err := ForwardAuthRequests(addr, sessions)
	if err != nil {
		t.Fatal(err)
	}
	const concurrency, total = 4, 400
	client := HTTPClient(concurrency, 5*time.Second)
	defer client.CloseIdleConnections()
	calls, _ := ClosedHTTP(context.Background(), client, reqs, total, concurrency, time.Minute)
	if len(calls) != total {
		t.Fatalf("%d calls, want %d", len(calls), total)
	}
	lat, failed := Latencies(calls)
	if failed != total/2 || len(lat) != total/2 {
		t.Errorf("failed %d, succeeded %d; want %d each", failed, len(lat), total/2)
	}
	errs := Errors(calls)
	if errs["status 403"] != total/4 || errs[errNoAuthorization.Error()] != total/4 {
		t.Errorf("errors = %v", errs)
	}
	for i, c := range calls {
		if c.Session != i%len(sessions) {
			t.Fatalf("call %d went to session %d", i, c.Session)
		}
		if c.Err == nil && c.Exp != 1800000000 {
			t.Errorf("call %d: exp %d", i, c.Exp)
		}
	}
	for _, v := range []string{"a", "b", "denied", "bare"} {
		if seen[v] != total/4 {
			t.Errorf("session %s asked %d times, want %d", v, seen[v], total/4)
		}
	}
	if n := conns.Load(); n < 1 || n > concurrency {
		t.Errorf("%d connections for %d callers: keep-alive not reused", n, concurrency)
	}
	if err := WaitHTTP(context.Background(), srv.URL+"/", 5*time.Second); err != nil {
		t.Errorf("WaitHTTP: %v", err)
	}
}

// TestForwardAuthRequestLoopback: a non-loopback target is refused.
func TestForwardAuthRequestLoopback(t *testing.T) {
	if _, err := ForwardAuthRequest("10.0.0.1:80", "ory_kratos_session=a"); err == nil {
		t.Error("ForwardAuthRequest built a request to a non-loopback target")
	}
	r, err := ForwardAuthRequest("127.0.0.1:1", "ory_kratos_session=a")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Header.Get("Cookie"), "; ory_kratos_session=a;") || r.URL.String() != "http://127.0.0.1:1/auth" {
		t.Errorf("request = %s %v", r.URL, r.Header)
	}
}
