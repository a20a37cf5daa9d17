package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// startRedis starts the redis-server of one scenario's replicas: a free
// port of 127.0.0.1, persistence off, its directory in the work dir. It
// returns the server's URL once it answers PING, and writes the replicas'
// tier secret on first use.
func (h *harness) startRedis(ctx context.Context, name string) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("%w (run make debian-packages)", err)
	}
	if h.secretFile == "" {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		h.secretFile = filepath.Join(h.dir, "redis-secret")
		if err := os.WriteFile(h.secretFile, []byte(hex.EncodeToString(secret)), 0o600); err != nil {
			return "", err
		}
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(h.dir, name+"-")
	if err != nil {
		return "", err
	}
	p, err := h.procs.start(name, nil, bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "no", "--databases", "1")
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + port
	err = poll(ctx, 10*time.Second, func() bool { return ping(addr) }, p.Exited())
	if err != nil {
		return "", fmt.Errorf("%s on %s: %w (see %s.log)", name, addr, err, name)
	}
	return "redis://" + addr, nil
}

// ping tells whether a Redis without a password answers PING at addr.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// poll calls ok every 20ms until it is true, for at most limit, or until
// exited (the process that should make it true) is closed.
func poll(ctx context.Context, limit time.Duration, ok func() bool, exited <-chan struct{}) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// startReplicas starts n servers against ory with extra flags, named
// name-1..name-n (name alone when n is 1). With a redisURL they share that
// Redis, and it returns once each is subscribed to the invalidations: the
// void of its own cache a new subscription makes may not fall into a
// measurement.
func (h *harness) startReplicas(ctx context.Context, name string, ory *fakeOry, n int, redisURL string, extra ...string) ([]*server, error) {
	if redisURL != "" {
		extra = append(slices.Clone(extra), "--redis-url", redisURL, "--redis-secret-file", h.secretFile)
	}
	var srvs []*server
	for i := range n {
		sname := name
		if n > 1 {
			sname = fmt.Sprintf("%s-%d", name, i+1)
		}
		s, err := h.startServer(ctx, sname, ory, extra...)
		if err != nil {
			return nil, err
		}
		if redisURL != "" {
			subscribed := func() bool { v, err := s.metric(ctx, subscribedSeries); return err == nil && v > 0 }
			if err := poll(ctx, 10*time.Second, subscribed, s.Exited()); err != nil {
				return nil, fmt.Errorf("%s: subscription to Redis invalidations: %w (see %s.log)", sname, err, sname)
			}
		}
		srvs = append(srvs, s)
	}

	return srvs, nil
}

// Series of the server's /metrics the harness reads.
const (
	subscribedSeries = `ory_ext_authz_redis_operations_total{op="subscribe",result="ok"}`
	sharedHitSeries  = `ory_ext_authz_cache_lookups_total{result="shared_hit"}`
)

// metric reads one series of the server's /metrics.
func (s *server) metric(ctx context.Context, series string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.http+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no series %s", s.name, series)
}

func addrs(srvs []*server) []string {
	out := make([]string, len(srvs))
	for i, s := range srvs {
		out[i] = s.addr
	}
	return out
}

// cpuTime is the CPU time the servers have used so far.
func cpuTime(srvs []*server) time.Duration {
	var d time.Duration
	for _, s := range srvs {
		d += s.cpuTime()
	}
	return d
}
