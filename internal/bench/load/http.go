package load

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// The original request a forward-auth proxy (Traefik's ForwardAuth)
// describes in its X-Forwarded-* headers.
const (
	ForwardedMethod = "GET"
	ForwardedProto  = "https"
	ForwardedHost   = "app.example.org"
	ForwardedURI    = "/app?x=1"
)

// ForwardAuthRequest is the GET /auth that Traefik's ForwardAuth sends to
// the server at addr for a browser request carrying sessionPair: the
// original request in X-Forwarded-Method, -Proto, -Host and -Uri, and the
// browser's headers (BrowserHeaders: its cookies, the session among them).
func ForwardAuthRequest(addr, sessionPair string) (*http.Request, error) {
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		return nil, fmt.Errorf("load: refusing non-loopback target %q", addr)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/auth", nil)
	if err != nil {
		return nil, err
	}
	b := BrowserHeaders(sessionPair)
	for _, k := range []string{"accept", "accept-encoding", "accept-language", "user-agent", "x-request-id", "cookie"} {
		req.Header.Set(k, b[k])
	}
	req.Header.Set("X-Forwarded-Method", ForwardedMethod)
	req.Header.Set("X-Forwarded-Proto", ForwardedProto)
	req.Header.Set("X-Forwarded-Host", ForwardedHost)
	req.Header.Set("X-Forwarded-Uri", ForwardedURI)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	return req, nil
}

// ForwardAuthRequests are the ForwardAuthRequest of every session.
func ForwardAuthRequests(addr string, sessionPairs []string) ([]*http.Request, error) {
	out := make([]*http.Request, len(sessionPairs))
	for i, p := range sessionPairs {
		r, err := ForwardAuthRequest(addr, p)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// HTTPClient is a keep-alive client holding up to conns connections to
// one server (a proxy's pool of upstream keep-alive connections), every
// request bounded by timeout. Compression is off: the answer has no body.
func HTTPClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// errNoAuthorization: a 200 without a bearer Authorization header.
var errNoAuthorization = fmt.Errorf("200 without Authorization: Bearer")

// ForwardAuth sends req with client and records it in c: its latency, its
// start after t0, and as c.Err an error or any answer but a 200 with an
// `Authorization: Bearer` header (a hit). The body is read to its end so
// that the connection is reused.
func ForwardAuth(ctx context.Context, client *http.Client, req *http.Request, t0 time.Time, c *Call) {
	s := time.Now()
	resp, err := client.Do(req.WithContext(ctx))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	c.Latency = time.Since(s)
	c.Start = s.Sub(t0)
	switch {
	case err != nil:
		c.Err = err
	case resp.StatusCode != http.StatusOK:
		c.Err = fmt.Errorf("status %d", resp.StatusCode)
	case !strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer "):
		c.Err = errNoAuthorization
	default:
		c.Exp = jwtExp(resp.Header.Get("Authorization"))
	}
}

// ClosedHTTP is Closed over HTTP: total forward-auth checks with
// concurrency callers sharing client, each sending its next request as soon
// as the last returned; check k sends requests[k mod len(requests)]. The
// run stops early after maxTime. A failed check (ForwardAuth's c.Err) is
// recorded, not retried.
func ClosedHTTP(ctx context.Context, client *http.Client, requests []*http.Request, total, concurrency int, maxTime time.Duration) (calls []Call, elapsed time.Duration) {
	return closed(ctx, total, concurrency, len(requests), maxTime, func(int) func(c *Call, t0 time.Time) {
		return func(c *Call, t0 time.Time) { ForwardAuth(ctx, client, requests[c.Session], t0, c) }
	})
}

// WaitHTTP polls url until it answers at all (any status), or fails after
// timeout.
func WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering after %v: %w", url, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
