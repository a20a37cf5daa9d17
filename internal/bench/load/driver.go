package load

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Pool is a few client connections to one server, used round-robin (Envoy
// keeps a handful of HTTP/2 connections to an ext_authz cluster).
type Pool struct {
	conns   []*grpc.ClientConn
	clients []authv3.AuthorizationClient
}

// Dial opens n plaintext connections to addr, which must be a loopback
// address: the harness never sends load anywhere else.
func Dial(addr string, n int) (*Pool, error) { return DialAll([]string{addr}, n) }

// DialAll opens n connections to each of addrs (the replicas of one
// service), interleaved so that Client(i) is a connection to
// addrs[i mod len(addrs)]: requests spread round-robin over the replicas, as
// a load balancer in front of them would.
func DialAll(addrs []string, n int) (*Pool, error) {
	for _, addr := range addrs {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			return nil, fmt.Errorf("load: refusing non-loopback target %q", addr)
		}
	}
	p := &Pool{}
	for range max(n, 1) {
		for _, addr := range addrs {
			cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				p.Close()
				return nil, err
			}
			cc.Connect()
			p.conns = append(p.conns, cc)
			p.clients = append(p.clients, authv3.NewAuthorizationClient(cc))
		}
	}
	return p, nil
}

// Client returns the client for call i.
func (p *Pool) Client(i int) authv3.AuthorizationClient { return p.clients[i%len(p.clients)] }

// Close closes every connection.
func (p *Pool) Close() {
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// errNotServing: the server did not report SERVING in time.
var errNotServing = errors.New("not serving")

// WaitServing polls grpc.health.v1 on addr until it reports SERVING, or
// fails after timeout.
func WaitServing(ctx context.Context, addr string, timeout time.Duration) error {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = cc.Close() }()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not serving after %v (last health check: %v): %w", addr, timeout, r.GetStatus(), errors.Join(err, errNotServing))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Call is the record of one Check.
type Call struct {
	Session int
	// Start is when the call started, from the start of the run.
	Start   time.Duration
	Latency time.Duration
	// Err is the gRPC error, or a non-OK CheckResponse status as an error.
	Err error
	// Cached is the answer's dynamic_metadata "cached" (false for a request
	// that waited on Ory).
	Cached bool
	// Exp is the exp claim of the JWT in the answer's authorization header
	// (unix seconds), 0 when there was none.
	Exp int64
	// SessionID is the answer's dynamic_metadata "session_id" (the Ory
	// session id an admin invalidation names).
	SessionID string
}

// Once sends one check and records it; its Start counts from t0.
func Once(ctx context.Context, client authv3.AuthorizationClient, req *authv3.CheckRequest, t0 time.Time, timeout time.Duration) Call {
	var c Call
	check(ctx, client, req, t0, timeout, &c)
	return c
}

// check sends req and records the call in c: its latency, its start after
// t0, and what the answer held.
func check(ctx context.Context, client authv3.AuthorizationClient, req *authv3.CheckRequest, t0 time.Time, timeout time.Duration, c *Call) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s := time.Now()
	resp, err := client.Check(ctx, req)
	c.Latency = time.Since(s)
	c.Start = s.Sub(t0)
	record(c, resp, err)
}

// record fills c from the answer of its check.
func record(c *Call, resp *authv3.CheckResponse, err error) {
	if err != nil {
		c.Err = err
		return
	}
	if code := resp.GetStatus().GetCode(); code != 0 {
		c.Err = fmt.Errorf("check status %d", code)
		return
	}
	md := resp.GetDynamicMetadata().GetFields()
	c.Cached = md["cached"].GetBoolValue()
	c.SessionID = md["session_id"].GetStringValue()
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "authorization" {
			c.Exp = jwtExp(h.GetHeader().GetValue())
		}
	}
}

// jwtExp reads the exp claim of "Bearer <jwt>" without verifying anything:
// the driver only needs to know when the JWT it was given expires.
func jwtExp(v string) int64 {
	_, tok, _ := strings.Cut(v, " ")
	parts := strings.SplitN(tok, ".", 3)
	if len(parts) != 3 {
		return 0
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	i := bytes.Index(payload, []byte(`"exp":`))
	if i < 0 {
		return 0
	}
	rest := payload[i+len(`"exp":`):]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return 0
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(rest[:j])), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// Burst releases callers goroutines at once; caller i checks requests[i] and
// gives up after timeout. It is the thundering herd of a cold start.
func Burst(ctx context.Context, p *Pool, requests []*authv3.CheckRequest, sessionOf func(i int) int, timeout time.Duration) []Call {
	calls := make([]Call, len(requests))
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(len(requests))
	t0 := time.Now()
	for i := range requests {
		done.Go(func() {
			ready.Done()
			<-start
			c := &calls[i]
			c.Session = sessionOf(i)
			check(ctx, p.Client(i), requests[i], t0, timeout, c)
		})
	}
	ready.Wait()
	t0 = time.Now()
	close(start)
	done.Wait()
	return calls
}

// Paced sends rate checks a second for d with up to workers in flight; check
// k goes to session k mod len(requests). A check that finds every worker busy
// waits for one, and its latency counts from when it was sent to a worker.
// The run is bounded by d (plus the timeout of the last calls) and by ctx.
// t0 is when the run started; Call.Start counts from it.
func Paced(ctx context.Context, p *Pool, requests []*authv3.CheckRequest, rate float64, d time.Duration, workers int, timeout time.Duration) (calls []Call, t0 time.Time, err error) {
	if rate <= 0 || d <= 0 || workers <= 0 {
		return nil, time.Time{}, errors.New("load: rate, duration and workers must be positive")
	}
	total := int(rate * d.Seconds())
	calls = make([]Call, total)
	jobs := make(chan int, workers)
	var wg sync.WaitGroup
	t0 = time.Now()
	for w := range workers {
		wg.Go(func() {
			client := p.Client(w)
			for k := range jobs {
				c := &calls[k]
				c.Session = k % len(requests)
				check(ctx, client, requests[c.Session], t0, timeout, c)
			}
		})
	}
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
loop:
	for sent < total {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		due := min(int(time.Since(t0).Seconds()*rate), total)
		for ; sent < due; sent++ {
			jobs <- sent
		}
	}
	close(jobs)
	wg.Wait()
	return calls[:sent], t0, ctx.Err()
}

// Closed runs total checks with concurrency callers, each sending its next
// check as soon as the last returned; check k goes to session k mod
// len(requests). The run stops early after maxTime.
func Closed(ctx context.Context, p *Pool, requests []*authv3.CheckRequest, total, concurrency int, maxTime, timeout time.Duration) (calls []Call, elapsed time.Duration) {
	return closed(ctx, total, concurrency, len(requests), maxTime, func(w int) func(c *Call, t0 time.Time) {
		client := p.Client(w)
		return func(c *Call, t0 time.Time) { check(ctx, client, requests[c.Session], t0, timeout, c) }
	})
}

// closed is the closed loop of Closed and ClosedHTTP: concurrency callers
// (caller w sends with caller(w)) take checks 0..total-1 in turn, check k
// for session k mod sessions, until total, ctx or maxTime. The calls not
// started before the stop are not part of the run.
func closed(ctx context.Context, total, concurrency, sessions int, maxTime time.Duration, caller func(w int) func(c *Call, t0 time.Time)) (calls []Call, elapsed time.Duration) {
	calls = make([]Call, total)
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	t0 := time.Now()
	stop := t0.Add(maxTime)
	for w := range concurrency {
		wg.Go(func() {
			send := caller(w)
			for {
				mu.Lock()
				k := next
				next++
				mu.Unlock()
				if k >= total || ctx.Err() != nil || time.Now().After(stop) {
					return
				}
				c := &calls[k]
				c.Session = k % sessions
				send(c, t0)
			}
		})
	}
	wg.Wait()
	elapsed = time.Since(t0)
	n := min(next, total)
	out := calls[:0]
	for _, c := range calls[:n] {
		if c.Latency > 0 || c.Err != nil {
			out = append(out, c)
		}
	}
	return out, elapsed
}

// Errors counts the failed calls by their message (gRPC code and message).
func Errors(calls []Call) map[string]int {
	m := map[string]int{}
	for _, c := range calls {
		if c.Err != nil {
			if s, ok := status.FromError(c.Err); ok {
				m[s.Code().String()]++
			} else {
				m[c.Err.Error()]++
			}
		}
	}
	return m
}

// Latencies are the latencies of the calls that succeeded, in order, and
// the number of calls that failed.
func Latencies(calls []Call) (lat []time.Duration, failed int) {
	lat = make([]time.Duration, 0, len(calls))
	for _, c := range calls {
		if c.Err != nil {
			failed++
			continue
		}
		lat = append(lat, c.Latency)
	}
	return lat, failed
}
