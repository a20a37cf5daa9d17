package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/load"
	"github.com/ory-ext-authz/ory-ext-authz/internal/bench/noop"
	"github.com/ory-ext-authz/ory-ext-authz/internal/procgroup"
)

// proc is a child process. Each child gets a process group of its own
// (internal/procgroup), so that stopping it also stops what it started (go
// run's compiled binary) and nothing else.
type proc struct {
	name string
	*procgroup.Process
}

// procs tracks the children so that every one is stopped on the way out.
type procs struct {
	dir  string
	mu   sync.Mutex
	list []*proc
}

// start runs name with args; its stderr (and stdout unless stdout is
// given) go to a log file in the work dir.
func (ps *procs) start(name string, stdout io.Writer, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(ps.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	pg, err := procgroup.Start(cmd, func() { _ = logf.Close() })
	if err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, Process: pg}
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// stop sends SIGTERM to the child's process group, then SIGKILL after 5s.
func (p *proc) stop() { _ = p.Stop(5 * time.Second) }

func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop()
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// fakeOry is a running fakeory.
type fakeOry struct {
	proc     *proc
	url      string
	control  string
	jwtBytes int
	cookies  []string
}

// startFakeOry starts the fake Ory with extra flags; nice, when not 0, is
// its nice level.
func (h *harness) startFakeOry(name string, latency, ttl time.Duration, sessions, nice int, extra ...string) (*fakeOry, error) {
	file := filepath.Join(h.dir, name+".sessions")
	pr, pw := io.Pipe()
	bin, args := h.bins.fakeory, append([]string{"--latency", latency.String(), "--ttl", ttl.String(), "--sessions", strconv.Itoa(sessions), "--sessions-file", file}, extra...)
	if nice != 0 {
		bin, args = "nice", append([]string{"-n", strconv.Itoa(nice), bin}, args...)
	}
	p, err := h.procs.start(name, pw, bin, args...)
	if err != nil {
		return nil, err
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, pr)
	}()
	var line string
	select {
	case l, ok := <-lines:
		if !ok {
			return nil, fmt.Errorf("%s exited before it was ready (see %s.log)", name, name)
		}
		line = l
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s not ready after 30s", name)
	}
	var info bench.FakeOryInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		return nil, fmt.Errorf("%s ready line %q: %w", name, line, err)
	}
	cookies, err := load.ReadLines(file)
	if err != nil {
		return nil, err
	}
	if len(cookies) != sessions {
		return nil, fmt.Errorf("%s wrote %d sessions, want %d", name, len(cookies), sessions)
	}
	return &fakeOry{proc: p, url: info.URL, control: info.Control, jwtBytes: info.JWTBytes, cookies: cookies}, nil
}

func (f *fakeOry) stats(ctx context.Context) (bench.FakeOryStats, error) {
	var s bench.FakeOryStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.control+"/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("fakeory stats: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (f *fakeOry) reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.control+"/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("fakeory reset: %s", resp.Status)
	}
	return nil
}

// server is a running `serve`: its gRPC, HTTP (/metrics) and admin
// addresses.
type server struct {
	*proc
	addr, http, admin string
}

// startServer starts the real server against the fake Ory, with extra flags,
// and waits until its gRPC health is SERVING. Every listener is on a free
// port of its own, so that replicas (and other programs) never collide.
func (h *harness) startServer(ctx context.Context, name string, ory *fakeOry, extra ...string) (*server, error) {
	var ports [3]string
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = "127.0.0.1:" + p
	}
	s := &server{addr: ports[0], http: ports[1], admin: ports[2]}
	args := append([]string{"serve", "--grpc-addr", s.addr, "--http-addr", s.http, "--admin-addr", s.admin,
		"--ory-url", ory.url, "--tokenize-as", "mesh", "--log-level", "warn"}, extra...)
	p, err := h.procs.start(name, nil, h.server, args...)
	if err != nil {
		return nil, err
	}
	s.proc = p
	if err := h.waitServing(ctx, p, s.addr); err != nil {
		return nil, err
	}
	return s, nil
}

// startPair starts the two sides of a comparison against ory: the real
// server (as name) and the baseline with a JWT as long as ory's.
func (h *harness) startPair(ctx context.Context, name string, ory *fakeOry) (real *server, noopAddr string, err error) {
	real, err = h.startServer(ctx, name, ory)
	if err == nil {
		noopAddr, _, err = h.startNoop(ctx, "noop", ory.jwtBytes, noop.Identity{})
	}
	return real, noopAddr, err
}

// startNoop starts the baseline (as name) with a JWT as long as the fake
// Ory's and the identity headers id.
func (h *harness) startNoop(ctx context.Context, name string, jwtBytes int, id noop.Identity) (string, *proc, error) {
	gp, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr := "127.0.0.1:" + gp
	args := []string{"--grpc-addr", addr, "--jwt-bytes", strconv.Itoa(jwtBytes)}
	for _, hv := range id.Headers {
		args = append(args, "--header", hv[0]+"="+hv[1])
	}
	for _, r := range id.Remove {
		args = append(args, "--remove", r)
	}
	p, err := h.procs.start(name, nil, h.bins.noop, args...)
	if err != nil {
		return "", nil, err
	}
	if err := h.waitServing(ctx, p, addr); err != nil {
		return "", nil, err
	}
	return addr, p, nil
}

func (h *harness) waitServing(ctx context.Context, p *proc, addr string) error {
	errc := make(chan error, 1)
	go func() { errc <- load.WaitServing(ctx, addr, 30*time.Second) }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("%s: %w (see %s.log)", p.name, err, p.name)
		}
		return nil
	case <-p.Exited():
		return errors.Join(fmt.Errorf("%s exited before serving (see %s/%s.log)", p.name, h.dir, p.name), p.Err())
	}
}

// cpuTime is the user+system CPU time a child has used so far (Linux).
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	// USER_HZ is 100 on every Linux this runs on.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
