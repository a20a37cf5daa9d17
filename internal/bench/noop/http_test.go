package noop_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/noop"
	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// TestHTTPHandler: every request gets a 200 with a bearer Authorization of
// the given JWT length and Cache-Control: no-store, as the load driver
// checks it.
func TestHTTPHandler(t *testing.T) {
	srv := httptest.NewServer(noop.HTTPHandler(550))
	t.Cleanup(srv.Close)
	reqs, err := load.ForwardAuthRequests(strings.TrimPrefix(srv.URL, "http://"), []string{"ory_kratos_session=a", "ory_kratos_session=b"})
	if err != nil {
		t.Fatal(err)
	}
	client := load.HTTPClient(2, 5*time.Second)
	defer client.CloseIdleConnections()
	calls, _ := load.ClosedHTTP(context.Background(), client, reqs, 100, 2, time.Minute)
	if _, failed := load.Latencies(calls); len(calls) != 100 || failed != 0 {
		t.Fatalf("%d calls, %d failed: %v", len(calls), failed, load.Errors(calls))
	}
	resp, err := client.Do(reqs[0])
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Header.Get("Authorization")) != len("Bearer ")+550 ||
		resp.Header.Get("Cache-Control") != "no-store" || resp.ContentLength != 0 {
		t.Errorf("answer: %d %v (length %d)", resp.StatusCode, resp.Header, resp.ContentLength)
	}
}

// TestHTTPServerTimeouts: the baseline's listener is bounded as
// pkg/server's forward-auth listener is by default.
func TestHTTPServerTimeouts(t *testing.T) {
	s := noop.NewHTTPServer(10)
	if s.ReadHeaderTimeout != server.DefaultHTTPReadHeaderTimeout || s.ReadTimeout != server.DefaultHTTPReadTimeout ||
		s.WriteTimeout != server.DefaultHTTPWriteTimeout || s.IdleTimeout != server.DefaultHTTPIdleTimeout {
		t.Errorf("timeouts = %v %v %v %v", s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout)
	}
}

// TestHTTPMatchesForwardAuthHit: a hit of the real forward-auth handler
// (Traefik's headers, a warm session) and the baseline built with the
// fake Ory's JWT length answer with the same header names and values of
// the same length.
func TestHTTPMatchesForwardAuthHit(t *testing.T) {
	fake := fakeory.New()
	t.Cleanup(fake.Close)
	az, err := bench.NewServer(fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	real := httptest.NewServer(az.ForwardAuth(authz.ForwardAuthOptions{}))
	t.Cleanup(real.Close)
	s := fake.NewSession()
	jwt, err := fake.Mint(fake.NewSession(), "mesh")
	if err != nil {
		t.Fatal(err)
	}
	base := httptest.NewServer(noop.HTTPHandler(len(jwt)))
	t.Cleanup(base.Close)
	answer := func(url string) http.Header {
		t.Helper()
		req, err := load.ForwardAuthRequest(strings.TrimPrefix(url, "http://"), s.CookiePair())
		if err != nil {
			t.Fatal(err)
		}
		var c load.Call
		for range 2 { // the second is a hit
			c = load.Call{}
			load.ForwardAuth(context.Background(), http.DefaultClient, req, time.Now(), &c)
		}
		if c.Err != nil {
			t.Fatalf("%s: %v", url, c.Err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.Header
	}
	rh, bh := answer(real.URL), answer(base.URL)
	for _, k := range []string{"Authorization", "Cache-Control"} {
		if len(rh.Get(k)) != len(bh.Get(k)) || rh.Get(k) == "" {
			t.Errorf("%s: real %q, baseline %q", k, rh.Get(k), bh.Get(k))
		}
	}
	for k := range rh {
		if k != "Date" && bh.Get(k) == "" {
			t.Errorf("the real hit sets %s, the baseline does not", k)
		}
	}
	if calls := fake.Calls(); calls != 1 {
		t.Errorf("%d whoami calls for one session, want 1", calls)
	}
}
