// Package redistest runs a real redis-server on 127.0.0.1 for a test and
// ties its lifetime to the test: persistence off, a temporary directory,
// optional requirepass, an ACL user and TLS (with or without client
// certificates). A Server can be stopped, restarted empty on the same port,
// frozen with SIGSTOP (a hung Redis) and resumed, and has an admin client for
// CONFIG SET, CLIENT KILL and reading every key.
//
// Without a redis-server binary (REDIS_SERVER_BIN, else redis-server on
// PATH; `make debian-packages` installs Debian's) tests are skipped, unless
// ORY_EXT_AUTHZ_REQUIRE_REDIS=1 (make test sets it), which turns the skip
// into a failure, so the Redis tests can never be skipped in CI unnoticed.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/ory-ext-authz/ory-ext-authz/internal/procgroup"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"
)

// Environment variables read by Start.
const (
	// EnvBinary names the redis-server binary; default: redis-server on PATH.
	EnvBinary = "REDIS_SERVER_BIN"
	// EnvRequire set to "1" makes a missing binary fail the test instead of
	// skipping it.
	EnvRequire = "ORY_EXT_AUTHZ_REQUIRE_REDIS"
)

const (
	startTimeout  = 10 * time.Second
	stopTimeout   = 5 * time.Second
	startAttempts = 3 // a free port can be taken before redis-server binds it
)

// Options configure Start; the zero value is a plain server without auth.
type Options struct {
	// Password sets requirepass (the default user's password).
	Password string
	// User and UserPassword add an ACL user with every permission; with
	// them the default user is disabled.
	User, UserPassword string
	// TLS serves TLS only (no plaintext port), with a certificate of a new
	// test CA for 127.0.0.1.
	TLS bool
	// ClientCerts requires a client certificate signed by the same CA
	// (tls-auth-clients yes); needs TLS.
	ClientCerts bool
	// Args are more redis-server arguments ("--maxmemory", "1mb").
	Args []string
}

// Server is a running redis-server.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	opts Options
	port int
	// argv, if set, replaces args, and ready the log line that says the
	// server is up (a sentinel).
	argv  func() []string
	ready string

	// TLS material, set with Options.TLS.
	CA                           *testpki.CA
	CAFile, CertFile, KeyFile    string // the client certificate and key files
	serverCertFile, serverKeyFle string

	mu     sync.Mutex
	proc   *procgroup.Process
	paused bool
	admin  rueidis.Client
}

// Start starts a redis-server for t and stops it when t ends; when t failed,
// the tail of the server's log goes to t.Log first.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), opts: opts}
	if opts.ClientCerts && !opts.TLS {
		t.Fatal("redistest: ClientCerts needs TLS")
	}
	if opts.TLS {
		s.writeTLS()
	}
	s.start()
	return s
}

// start picks a port, launches and registers the cleanup.
func (s *Server) start() {
	t := s.t
	t.Helper()
	var err error
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = s.launch(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: start redis-server: %v\n%s", err, s.LogTail(20))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("redis-server log, last lines:\n%s", s.LogTail(30))
		}
		s.mu.Lock()
		if s.admin != nil {
			s.admin.Close()
			s.admin = nil
		}
		s.mu.Unlock()
		s.Stop()
	})
}

// Binary returns the redis-server binary, or skips (or fails) t.
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(EnvBinary); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s=%s: %v", EnvBinary, bin, err)
		}
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("no redis-server on PATH and %s is unset, but %s=1 (run `make debian-packages`)", EnvBinary, EnvRequire)
	}
	t.Skip("no redis-server: run `make debian-packages` or set " + EnvBinary)
	return ""
}

func (s *Server) writeTLS() {
	s.CA = testpki.NewCA(s.t, "redistest CA")
	scert, skey := s.CA.Issue(s.t, "127.0.0.1", false)
	ccert, ckey := s.CA.Issue(s.t, "redistest client", true)
	write := func(name string, b []byte) string {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			s.t.Fatal(err)
		}
		return p
	}
	s.CAFile = write("ca.pem", s.CA.PEM)
	s.serverCertFile = write("server.pem", scert)
	s.serverKeyFle = write("server-key.pem", skey)
	s.CertFile = write("client.pem", ccert)
	s.KeyFile = write("client-key.pem", ckey)
}

func (s *Server) args() []string {
	a := []string{
		"--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", s.logFile(), "--daemonize", "no",
		"--protected-mode", "no", "--databases", "1",
	}
	port := strconv.Itoa(s.port)
	if s.opts.TLS {
		auth := "no"
		if s.opts.ClientCerts {
			auth = "yes"
		}
		a = append(a, "--port", "0", "--tls-port", port,
			"--tls-cert-file", s.serverCertFile, "--tls-key-file", s.serverKeyFle,
			"--tls-ca-cert-file", s.CAFile, "--tls-auth-clients", auth)
	} else {
		a = append(a, "--port", port)
	}
	if s.opts.Password != "" {
		a = append(a, "--requirepass", s.opts.Password)
	}
	if s.opts.User != "" {
		a = append(a, "--user", s.opts.User, "on", ">"+s.opts.UserPassword, "~*", "&*", "+@all",
			"--user", "default", "off")
	}
	return append(a, s.opts.Args...)
}

func (s *Server) logFile() string { return filepath.Join(s.dir, "redis.log") }

// launch starts redis-server on s.port and waits until it answers.
func (s *Server) launch() error {
	// Readiness is read from this start's part of the log, so that another
	// process that took the port in between is never mistaken for ours.
	var offset int64
	if fi, err := os.Stat(s.logFile()); err == nil {
		offset = fi.Size()
	}
	args := s.args
	if s.argv != nil {
		args = s.argv
	}
	cmd := exec.Command(s.bin, args()...)
	cmd.Dir = s.dir
	p, err := procgroup.Start(cmd, nil)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		ready := "Ready to accept connections"
		if s.ready != "" {
			ready = s.ready
		}
		if s.logged(offset, ready) && s.answers() {
			s.mu.Lock()
			s.proc, s.paused = p, false
			s.mu.Unlock()
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("redis-server exited: %w", p.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop(stopTimeout)
			return errors.New("redis-server did not answer within " + startTimeout.String())
		}
	}
}

// logged tells whether the log past offset contains text.
func (s *Server) logged(offset int64, text string) bool {
	b, err := os.ReadFile(s.logFile())
	return err == nil && int64(len(b)) >= offset && strings.Contains(string(b[offset:]), text)
}

// answers tells whether something on s.port speaks RESP (PING gets +PONG,
// or -NOAUTH when a password is required).
func (s *Server) answers() bool {
	d := net.Dialer{Timeout: time.Second}
	var c net.Conn
	var err error
	if s.opts.TLS {
		c, err = (&tls.Dialer{NetDialer: &d, Config: s.TLSConfig()}).Dial("tcp", s.Addr())
	} else {
		c, err = d.Dial("tcp", s.Addr())
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is redis://127.0.0.1:port (rediss:// with TLS), without credentials.
func (s *Server) URL() string {
	if s.opts.TLS {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// TLSConfig trusts the server's CA and presents the client certificate;
// nil without TLS.
func (s *Server) TLSConfig() *tls.Config {
	if !s.opts.TLS {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CA.PEM)
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		s.t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// Stop stops the server (resuming it first if paused); a no-op when stopped.
func (s *Server) Stop() {
	s.mu.Lock()
	p, paused := s.proc, s.paused
	s.proc, s.paused = nil, false
	s.mu.Unlock()
	if p == nil {
		return
	}
	if paused {
		_ = syscall.Kill(p.Pid(), syscall.SIGCONT)
	}
	if err := p.Stop(stopTimeout); errors.Is(err, procgroup.ErrKilled) {
		s.t.Logf("redistest: redis-server had to be killed")
	}
}

// Restart stops the server and starts a new, empty one on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	if s.admin != nil { // its connection dies with the server
		s.admin.Close()
		s.admin = nil
	}
	s.mu.Unlock()
	s.Stop()
	if err := s.launch(); err != nil {
		s.t.Fatalf("redistest: restart redis-server: %v\n%s", err, s.LogTail(20))
	}
}

// Pause freezes the server with SIGSTOP: connections stay open and nothing
// answers, like a hung Redis.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP, true) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT, false) }

func (s *Server) signal(sig syscall.Signal, paused bool) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatal("redistest: server is not running")
	}
	if err := syscall.Kill(s.proc.Pid(), sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
	s.paused = paused
}

// Client is an admin client of the server (made on first use, closed when
// the test ends); it reconnects by itself after a restart.
func (s *Server) Client() rueidis.Client {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin != nil {
		return s.admin
	}
	opt := rueidis.ClientOption{
		InitAddress: []string{s.Addr()}, DisableCache: true, ForceSingleClient: true,
		TLSConfig: s.TLSConfig(), ClientName: "redistest-admin",
	}
	switch {
	case s.opts.User != "":
		opt.Username, opt.Password = s.opts.User, s.opts.UserPassword
	case s.opts.Password != "":
		opt.Password = s.opts.Password
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		s.t.Fatalf("redistest: admin client: %v", err)
	}
	s.admin = c
	return c
}

// Do runs one command on the admin client and fails t on an error reply.
// A dropped connection (a sentinel's CLIENT KILL during a failover, a
// restart) is retried for up to 5s. A nil reply is no error.
func (s *Server) Do(args ...string) rueidis.RedisResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := s.Client()
	for {
		res := c.Do(ctx, c.B().Arbitrary(args...).Build())
		err := res.Error()
		if err == nil || rueidis.IsRedisNil(err) {
			return res
		}
		if _, isReply := rueidis.IsRedisErr(err); isReply || ctx.Err() != nil {
			s.t.Fatalf("redistest: %s: %v", strings.Join(args, " "), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ConfigSet runs CONFIG SET name value.
func (s *Server) ConfigSet(name, value string) { s.t.Helper(); s.Do("CONFIG", "SET", name, value) }

// KillClients runs CLIENT KILL with the given filter (e.g. "TYPE",
// "pubsub"), sparing the admin client, and returns how many were killed.
func (s *Server) KillClients(filter ...string) int64 {
	s.t.Helper()
	args := append([]string{"CLIENT", "KILL"}, filter...)
	args = append(args, "SKIPME", "yes")
	n, err := s.Do(args...).AsInt64()
	if err != nil {
		s.t.Fatalf("redistest: CLIENT KILL: %v", err)
	}
	return n
}

// Dump returns every key (SCAN) with its raw value: GET for strings, the
// output of DUMP otherwise, so that a test can search all of it.
func (s *Server) Dump() map[string][]byte {
	s.t.Helper()
	out := map[string][]byte{}
	cursor := "0"
	for {
		reply, err := s.Do("SCAN", cursor, "COUNT", "1000").ToArray()
		if err != nil || len(reply) != 2 {
			s.t.Fatalf("redistest: SCAN: %v", err)
		}
		cursor, _ = reply[0].ToString()
		keys, _ := reply[1].AsStrSlice()
		for _, k := range keys {
			typ, _ := s.Do("TYPE", k).ToString()
			cmd := "GET"
			if typ != "string" {
				cmd = "DUMP"
			}
			v, _ := s.Do(cmd, k).ToString()
			out[k] = []byte(v)
		}
		if cursor == "0" {
			return out
		}
	}
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.logFile())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Cluster is a Redis Cluster of masters without replicas, each a Server.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n (at least 3) cluster-enabled servers, splits the
// 16384 slots between them, joins them and waits until every node reports
// cluster_state:ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatal("redistest: a cluster needs at least 3 nodes")
	}
	c := &Cluster{}
	var buses []int
	for range n {
		bus, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		buses = append(buses, bus)
		c.Nodes = append(c.Nodes, Start(t, Options{Args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000", "--cluster-port", strconv.Itoa(bus),
		}}))
	}
	const slots = 16384
	for i, s := range c.Nodes {
		first, last := i*slots/n, (i+1)*slots/n-1
		s.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(first), strconv.Itoa(last))
		if i > 0 {
			c.Nodes[0].Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(s.port), strconv.Itoa(buses[i]))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, _ := s.Do("CLUSTER", "INFO").ToString()
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster not ok after 30s:\n%s", info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL names every node: redis://first?addr=second&addr=...
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr()
	for i, s := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + s.Addr()
	}
	return u
}

// Dump is every node's Dump, merged.
func (c *Cluster) Dump() map[string][]byte {
	out := map[string][]byte{}
	for _, s := range c.Nodes {
		for k, v := range s.Dump() {
			out[k] = v
		}
	}
	return out
}

// SentinelMaster is the master name StartSentinel monitors.
const SentinelMaster = "mymaster"

// StartSentinel starts a sentinel (redis-server --sentinel) that monitors
// master as SentinelMaster with quorum 1, and waits until it knows replicas
// replicas of it.
func StartSentinel(t testing.TB, master *Server, replicas int) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), ready: "+monitor master"}
	conf := filepath.Join(s.dir, "sentinel.conf")
	s.argv = func() []string {
		// Sentinel rewrites its config file; a fresh one per start.
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
			s.port, s.dir, s.logFile(), SentinelMaster, master.port, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf, "--sentinel"}
	}
	s.start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := s.Do("SENTINEL", "REPLICAS", SentinelMaster).ToArray()
		if len(n) >= replicas {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the sentinel knows %d replicas after 30s, want %d", len(n), replicas)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }
