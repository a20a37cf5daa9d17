// Package proxytest runs the real reverse proxies that sit in front of
// ory-ext-authz's HTTP forward-auth endpoint, nginx (auth_request) and Caddy
// (forward_auth), for a test, and ties their lifetime to the test. It also
// checks config files with the proxies' own validators (nginx -t, caddy
// validate), so that a shipped config that the proxy would refuse fails a
// test.
//
// A config is a template: every {{name}} in it is replaced with a value of
// Vars, and proxytest fills {{listen}} (127.0.0.1:port, a free loopback port
// it picked), {{port}} (that port alone) and {{dir}} (the proxy's temporary
// directory) itself. Substitute turns a shipped config, which carries real
// example values such as ory-ext-authz:9004, into such a template.
//
// Everything a proxy writes stays in its t.TempDir(): the rendered config,
// logs, the pid file, nginx's temp paths, Caddy's storage and its HOME and
// XDG directories. Each proxy listens on 127.0.0.1 only, runs in the
// foreground in a process group of its own (internal/procgroup) and is
// stopped when the test ends; when the test failed, the tails of its logs go
// to t.Log first. Nothing needs root, and nothing collides with a system
// nginx on port 80.
//
// Binaries: NGINX_BIN, else nginx on PATH, else /usr/sbin/nginx (`make
// debian-packages` installs Debian's); CADDY_BIN, else <repository
// root>/bin/caddy (`make caddy`). A relative NGINX_BIN or CADDY_BIN is
// relative to the repository root. Without a binary the test is skipped,
// unless ORY_EXT_AUTHZ_REQUIRE_NGINX=1 or ORY_EXT_AUTHZ_REQUIRE_CADDY=1 (make
// test sets both), which turns the skip into a failure, so that the proxy
// tests can never be skipped in CI unnoticed. A variable that names a file
// that does not exist always fails. The browser tests' Chromium is found the
// same way: CHROMIUM_BIN, else Debian's /usr/bin/chromium, required with
// ORY_EXT_AUTHZ_REQUIRE_CHROMIUM=1.
package proxytest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/procgroup"
)

// Environment variables read by the Start, Check and Binary functions.
const (
	// EnvNginxBinary names the nginx binary.
	EnvNginxBinary = "NGINX_BIN"
	// EnvRequireNginx set to "1" makes a missing nginx fail the test
	// instead of skipping it.
	EnvRequireNginx = "ORY_EXT_AUTHZ_REQUIRE_NGINX"
	// EnvCaddyBinary names the Caddy binary.
	EnvCaddyBinary = "CADDY_BIN"
	// EnvRequireCaddy set to "1" makes a missing Caddy fail the test
	// instead of skipping it.
	EnvRequireCaddy = "ORY_EXT_AUTHZ_REQUIRE_CADDY"
	// EnvChromiumBinary names the Chromium binary of the browser tests
	// (internal/browsertest).
	EnvChromiumBinary = "CHROMIUM_BIN"
	// EnvRequireChromium set to "1" makes a missing Chromium fail the test
	// instead of skipping it.
	EnvRequireChromium = "ORY_EXT_AUTHZ_REQUIRE_CHROMIUM"
)

// Placeholders that proxytest fills itself.
const (
	// VarListen is 127.0.0.1:port, the address the proxy is to listen on.
	VarListen = "listen"
	// VarPort is that port alone (Caddy site addresses: http://:{{port}}).
	VarPort = "port"
	// VarDir is the proxy's temporary directory.
	VarDir = "dir"
)

const (
	// startTimeout bounds one start: nginx itself retries a busy port for
	// 2.5s before it gives up, and -race on a busy machine is slow.
	startTimeout = 20 * time.Second
	stopTimeout  = 5 * time.Second
	// startAttempts: a free port can be taken before the proxy binds it.
	startAttempts = 3
	// checkTimeout bounds nginx -t and caddy validate.
	checkTimeout = 30 * time.Second
)

// Vars are the values of a template's placeholders, by name.
type Vars map[string]string

var placeholderRE = regexp.MustCompile(`\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}`)

// render replaces every {{name}} of tmpl with vars[name] or builtin[name].
// A placeholder without a value is an error, and so is a value of vars that
// tmpl never uses: a template that drifted from its test.
func render(tmpl string, vars, builtin Vars) (string, error) {
	for name := range vars {
		if _, ok := builtin[name]; ok {
			return "", fmt.Errorf("proxytest: {{%s}} is filled by proxytest, not by Vars", name)
		}
	}
	used := map[string]bool{}
	var missing []string
	out := placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := placeholderRE.FindStringSubmatch(m)[1]
		if v, ok := vars[name]; ok {
			used[name] = true
			return v
		}
		if v, ok := builtin[name]; ok {
			return v
		}
		missing = append(missing, name)
		return m
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("proxytest: no value for {{%s}}", strings.Join(slices.Compact(slices.Sorted(slices.Values(missing))), "}}, {{"))
	}
	var unused []string
	for name := range vars {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		slices.Sort(unused)
		return "", fmt.Errorf("proxytest: the template has no {{%s}}", strings.Join(unused, "}}, {{"))
	}
	return out, nil
}

// Render fills tmpl with vars and the given listen port the way the Start
// and Check functions do (with {{dir}} set to dir), or fails t.
func Render(t testing.TB, tmpl string, vars Vars, port int, dir string) string {
	t.Helper()
	out, err := render(tmpl, vars, builtins(port, dir))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func builtins(port int, dir string) Vars {
	return Vars{
		VarListen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		VarPort:   strconv.Itoa(port),
		VarDir:    dir,
	}
}

// Substitute replaces, in order, each old string of the pairs (old, new,
// old, new, ...) everywhere in text. An old string that text does not
// contain fails t: the shipped file changed and its test must follow.
func Substitute(t testing.TB, text string, pairs ...string) string {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("proxytest: Substitute wants old, new pairs, got %d strings", len(pairs))
	}
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("proxytest: %q not found in the config; the file changed, update the test", pairs[i])
		}
		text = strings.ReplaceAll(text, pairs[i], pairs[i+1])
	}
	return text
}

// Proxy is a running nginx or Caddy.
type Proxy struct {
	// Name is "nginx" or "caddy".
	Name string
	// Addr is 127.0.0.1:port, where the proxy listens.
	Addr string
	// Dir is the proxy's temporary directory.
	Dir string
	// ConfigFile is the rendered config the proxy runs.
	ConfigFile string

	logs []string // files LogTail shows

	mu   sync.Mutex
	proc *procgroup.Process
}

// URL is http://Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr }

// LogTail returns the last n lines of each of the proxy's log files.
func (p *Proxy) LogTail(n int) string { return logTail(p.logs, n) }

// Stop stops the proxy (SIGTERM to its process group, SIGKILL after 5s);
// a no-op once stopped. The test's cleanup calls it.
func (p *Proxy) Stop() error {
	p.mu.Lock()
	proc := p.proc
	p.proc = nil
	p.mu.Unlock()
	if proc == nil {
		return nil
	}
	err := proc.Stop(stopTimeout)
	if errors.Is(err, procgroup.ErrKilled) {
		return fmt.Errorf("%s %w", p.Name, err)
	}
	return nil // an exit status after SIGTERM is no failure
}

// Exited is closed once the proxy's process has exited.
func (p *Proxy) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.proc.Exited()
}

func logTail(files []string, n int) string {
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "== %s: %v\n", f, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", f, strings.Join(lines, "\n"))
	}
	return b.String()
}

// launch is one attempt to start a proxy on a port.
type launch struct {
	cmd        *exec.Cmd
	configFile string
	logs       []string // shown on failure; the first one gets stdout and stderr
	// ready tells whether the started process serves (beyond the TCP
	// accept, which another process on the port could give).
	ready func(pid int) bool
	// busy tells, once the process has exited, whether it exited because
	// the port was taken.
	busy func() bool
}

// start runs prepare for a free port in a new directory until the proxy
// serves, up to startAttempts times when the port was taken in between.
func start(t testing.TB, name string, prepare func(dir string, port int) (launch, error)) *Proxy {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port, err := pickPort()
		if err != nil {
			t.Fatal(err)
		}
		l, err := prepare(dir, port)
		if err != nil {
			t.Fatalf("proxytest: %s: %v", name, err)
		}
		p := &Proxy{Name: name, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, ConfigFile: l.configFile, logs: l.logs}
		err = p.run(l)
		if err == nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("%s logs, last lines:\n%s", name, p.LogTail(40))
				}
				if err := p.Stop(); err != nil {
					t.Errorf("proxytest: stop: %v", err)
				}
			})
			return p
		}
		if errors.Is(err, errBusy) && attempt < startAttempts {
			t.Logf("proxytest: %s: port %d was taken before it bound it; trying another", name, port)
			continue
		}
		t.Fatalf("proxytest: start %s: %v\n%s", name, err, p.LogTail(40))
	}
}

var errBusy = errors.New("the port was taken")

// run starts l.cmd and waits until the proxy serves.
func (p *Proxy) run(l launch) error {
	out, err := os.OpenFile(l.logs[0], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	l.cmd.Stdout, l.cmd.Stderr = out, out
	proc, err := procgroup.Start(l.cmd, func() { _ = out.Close() })
	if err != nil {
		_ = out.Close()
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if l.ready(proc.Pid()) && accepts(p.Addr) {
			p.mu.Lock()
			p.proc = proc
			p.mu.Unlock()
			return nil
		}
		select {
		case <-proc.Exited():
			if l.busy() {
				return errBusy
			}
			err := proc.Err()
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("%s exited: %w", p.Name, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = proc.Stop(stopTimeout)
			return fmt.Errorf("%s did not serve on %s within %s", p.Name, p.Addr, startTimeout)
		}
	}
}

// accepts tells whether something accepts TCP connections on addr.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// pickPort is freePort; a test of the retry replaces it.
var pickPort = freePort

// freePort reserves a loopback port and releases it for the proxy to bind;
// start retries when it is taken in between.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// fileContains tells whether the file contains text.
func fileContains(path, text string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(text))
}

// runCheck runs a validator (nginx -t, caddy validate) within
// checkTimeout and returns its combined output.
func runCheck(cmd *exec.Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := runBounded(cmd)
	return out.String(), err
}

// runBounded runs cmd in a process group of its own and waits for it, at
// most checkTimeout.
func runBounded(cmd *exec.Cmd) error {
	proc, err := procgroup.Start(cmd, nil)
	if err != nil {
		return err
	}
	select {
	case <-proc.Exited():
		return proc.Err()
	case <-time.After(checkTimeout):
		_ = proc.Stop(stopTimeout)
		return fmt.Errorf("%s did not finish within %s", filepath.Base(cmd.Path), checkTimeout)
	}
}

// numbered returns the file with line numbers, for a validator's message
// that names a line of the rendered config.
func numbered(path string) string {
	if path == "" {
		return "(none)"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var out strings.Builder
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		fmt.Fprintf(&out, "%4d  %s\n", i+1, line)
	}
	return out.String()
}

// binarySpec says where a proxy binary is looked for.
type binarySpec struct {
	name     string // "nginx"
	env      string // NGINX_BIN
	require  string // ORY_EXT_AUTHZ_REQUIRE_NGINX
	hint     string // how to get one: "run `make caddy`"
	defaults func(root func() string) []string
}

var (
	nginxSpec = binarySpec{
		name: "nginx", env: EnvNginxBinary, require: EnvRequireNginx,
		hint: "run `make debian-packages`",
		defaults: func(func() string) []string {
			var c []string
			if p, err := exec.LookPath("nginx"); err == nil {
				c = append(c, p)
			}
			return append(c, "/usr/sbin/nginx")
		},
	}
	chromiumSpec = binarySpec{
		name: "chromium", env: EnvChromiumBinary, require: EnvRequireChromium,
		hint:     "run `make debian-packages` (Debian's chromium)",
		defaults: func(func() string) []string { return []string{"/usr/bin/chromium"} },
	}
	caddySpec = binarySpec{
		name: "caddy", env: EnvCaddyBinary, require: EnvRequireCaddy,
		hint: "run `make caddy`",
		defaults: func(root func() string) []string {
			return []string{filepath.Join(root(), "bin", "caddy")}
		},
	}
)

// NginxBinary returns the nginx binary (see the package doc for where it
// is looked for), or skips (or fails) t.
func NginxBinary(t testing.TB) string { t.Helper(); return binary(t, nginxSpec, rootOf(t)) }

// ChromiumBinary returns the Chromium binary, CHROMIUM_BIN or Debian's
// /usr/bin/chromium (make debian-packages), or skips (or fails) t.
func ChromiumBinary(t testing.TB) string { t.Helper(); return binary(t, chromiumSpec, rootOf(t)) }

// CaddyBinary returns the Caddy binary (see the package doc for where it
// is looked for), or skips (or fails) t.
func CaddyBinary(t testing.TB) string { t.Helper(); return binary(t, caddySpec, rootOf(t)) }

// rootOf returns a function that finds the repository root above the
// test's working directory (kratostest.Root), failing t without one.
func rootOf(t testing.TB) func() string {
	return func() string { t.Helper(); return kratostest.Root(t) }
}

func binary(t testing.TB, s binarySpec, root func() string) string {
	t.Helper()
	if bin := os.Getenv(s.env); bin != "" {
		path := bin
		switch {
		case filepath.IsAbs(bin):
		case !strings.ContainsRune(bin, filepath.Separator):
			// A bare name is looked up on PATH, as a shell would.
			if p, err := exec.LookPath(bin); err == nil {
				path = p
			}
		default:
			path = filepath.Join(root(), bin)
		}
		if fi, err := os.Stat(path); err != nil || fi.IsDir() {
			// An explicit setting that is wrong is a mistake, never a reason to skip.
			t.Fatalf("%s=%s: no such file (looked at %s)", s.env, bin, path)
		}
		return path
	}
	candidates := s.defaults(root)
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	if os.Getenv(s.require) == "1" {
		t.Fatalf("no %s binary (looked at %s) and %s is unset, but %s=1: %s", s.name, strings.Join(candidates, ", "), s.env, s.require, s.hint)
	}
	t.Skip("no " + s.name + " binary: " + s.hint + " or set " + s.env)
	return ""
}
