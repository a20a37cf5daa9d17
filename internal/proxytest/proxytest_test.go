package proxytest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// recorder stands in for a testing.TB to observe Skip and Fatal, which both
// end the calling goroutine.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped, r.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) {
	r.failed, r.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// observe runs f with a recorder in a goroutine of its own.
func observe(t *testing.T, f func(r *recorder)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestRender(t *testing.T) {
	const tmpl = "listen {{listen}}; port {{ port }}; dir {{dir}}; auth {{auth}}; again {{auth}}"
	got, err := render(tmpl, Vars{"auth": "127.0.0.1:1"}, builtins(8080, "/d"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "listen 127.0.0.1:8080; port 8080; dir /d; auth 127.0.0.1:1; again 127.0.0.1:1"; got != want {
		t.Errorf("render = %q, want %q", got, want)
	}
	for name, tc := range map[string]struct {
		tmpl string
		vars Vars
		want string
	}{
		"missing value":      {tmpl: "{{auth}} {{app}} {{app}}", vars: nil, want: "no value for {{app}}, {{auth}}"},
		"unused value":       {tmpl: "{{listen}}", vars: Vars{"auth": "x"}, want: "the template has no {{auth}}"},
		"builtin overridden": {tmpl: "{{listen}}", vars: Vars{"listen": "x"}, want: "{{listen}} is filled by proxytest"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render(tc.tmpl, tc.vars, builtins(1, "/d"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestSubstitute(t *testing.T) {
	r := observe(t, func(r *recorder) {
		got := Substitute(r, "a b a c", "a", "x", "c", "y")
		if got != "x b x y" {
			t.Errorf("Substitute = %q", got)
		}
	})
	if r.failed {
		t.Fatal(r.msg)
	}
	r = observe(t, func(r *recorder) { Substitute(r, "a b", "z", "x") })
	if !r.failed || !strings.Contains(r.msg, `"z" not found`) {
		t.Errorf("Substitute of an absent string: failed %v (%s), want a failure naming it", r.failed, r.msg)
	}
	r = observe(t, func(r *recorder) { Substitute(r, "a b", "a") })
	if !r.failed {
		t.Error("Substitute with an odd number of strings did not fail")
	}
}

func TestBinary(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "bin", "proxy")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := func(defaults ...string) binarySpec {
		return binarySpec{
			name: "proxy", env: "PROXYTEST_TEST_BIN", require: "PROXYTEST_TEST_REQUIRE", hint: "run `make proxy`",
			defaults: func(func() string) []string { return defaults },
		}
	}
	missing := filepath.Join(root, "nope")
	tests := []struct {
		name, env, require string
		defaults           []string
		want               string // "" when skipped or failed
		skip, fail         bool
	}{
		{name: "default", defaults: []string{missing, bin}, want: bin},
		{name: "env absolute", env: bin, defaults: []string{missing}, want: bin},
		{name: "env relative to root", env: filepath.Join("bin", "proxy"), want: bin},
		{name: "env bare name on PATH", env: "sh", want: "sh"},
		{name: "none skips", defaults: []string{missing}, skip: true},
		{name: "none fails when required", defaults: []string{missing}, require: "1", fail: true},
		{name: "a directory is no binary", defaults: []string{root}, skip: true},
		{name: "wrong env fails", env: missing, defaults: []string{bin}, fail: true},
		{name: "wrong relative env fails", env: "bin/nope", defaults: []string{bin}, fail: true},
		{name: "wrong bare env fails", env: "no-such-proxy-binary", defaults: []string{bin}, fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PROXYTEST_TEST_BIN", tt.env)
			t.Setenv("PROXYTEST_TEST_REQUIRE", tt.require)
			var got string
			r := observe(t, func(r *recorder) { got = binary(r, spec(tt.defaults...), func() string { return root }) })
			ok := got == tt.want
			if tt.want == "sh" {
				ok = filepath.Base(got) == "sh" && filepath.IsAbs(got)
			}
			if r.skipped != tt.skip || r.failed != tt.fail || !ok {
				t.Fatalf("binary() = %q, skipped %v, failed %v (%s); want %q, %v, %v", got, r.skipped, r.failed, r.msg, tt.want, tt.skip, tt.fail)
			}
			if (tt.skip || tt.fail) && !strings.Contains(r.msg, "PROXYTEST_TEST_BIN") {
				t.Errorf("message %q does not name the variable", r.msg)
			}
			if tt.skip && !strings.Contains(r.msg, "make proxy") {
				t.Errorf("skip message %q does not say how to get a binary", r.msg)
			}
		})
	}
}

func TestWriteNginx(t *testing.T) {
	conf := "events {}\nhttp {\n    server { listen {{listen}}; }\n}\n"
	f := newNginxFiles(t.TempDir())
	if err := writeNginx(f, conf, nil, 8080); err != nil {
		t.Fatal(err)
	}
	got := string(readFile(t, f.conf))
	for _, want := range []string{
		"listen 127.0.0.1:8080;",
		"access_log " + quoteNginx(f.accessLog) + ";",
		"proxy_temp_path " + quoteNginx(filepath.Join(f.dir, "tmp", "proxy")) + ";",
		"client_body_temp_path " + quoteNginx(filepath.Join(f.dir, "tmp", "client_body")) + ";",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered config lacks %q:\n%s", want, got)
		}
	}
	if i, j := strings.Index(got, "http {"), strings.Index(got, "access_log"); i < 0 || j < i {
		t.Errorf("the paths are not inside the http block:\n%s", got)
	}
	for name, bad := range map[string]string{
		"pid":        "pid /run/nginx.pid;\n" + conf,
		"user":       "user www-data;\n" + conf,
		"daemon":     "daemon on;\n" + conf,
		"temp path":  strings.Replace(conf, "http {\n", "http {\n    proxy_temp_path /var/lib/nginx/proxy;\n", 1),
		"no http":    "events {}\n",
		"two blocks": conf + conf,
	} {
		t.Run(name, func(t *testing.T) {
			if err := writeNginx(newNginxFiles(t.TempDir()), bad, nil, 8080); err == nil {
				t.Error("writeNginx accepted the config")
			}
		})
	}
}

func TestWriteCaddy(t *testing.T) {
	for name, tc := range map[string]struct{ in, wantPrefix string }{
		"no global options": {in: "http://:{{port}} {\n\trespond ok\n}\n", wantPrefix: "{\n\t# proxytest"},
		"global options":    {in: "# a comment\n\n{\n\tdebug\n}\n\nhttp://:{{port}} {\n\trespond ok\n}\n", wantPrefix: "# a comment\n\n{\n\t# proxytest"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newCaddyFiles(t.TempDir())
			if err := writeCaddy(f, tc.in, nil, 8080); err != nil {
				t.Fatal(err)
			}
			got := string(readFile(t, f.caddyfile))
			if !strings.HasPrefix(got, tc.wantPrefix) {
				t.Errorf("rendered Caddyfile does not start with %q:\n%s", tc.wantPrefix, got)
			}
			if strings.Count(got, "{\n") != 2 || !strings.Contains(got, "http://:8080 {") || !strings.Contains(got, "admin off") {
				t.Errorf("rendered Caddyfile:\n%s", got)
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upstreamEcho answers with the size of the request body it read, and
// GET /big with bigBody bytes.
const bigBody = 512 << 10

func startUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(bytes.Repeat([]byte("x"), bigBody))
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d", n)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func get(t *testing.T, method, url string, body io.Reader) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// checkServes drives a started proxy: its own answer, a proxied upload
// and download big enough for nginx to spool them to its temp paths
// (client_body_buffer_size and proxy_buffers are a few pages), then Stop,
// which must close the port.
func checkServes(t *testing.T, p *Proxy) {
	t.Helper()
	if status, body := get(t, http.MethodGet, p.URL()+"/hello", nil); status != http.StatusOK || !strings.Contains(body, "hello proxytest") {
		t.Errorf("GET /hello = %d %q", status, body)
	}
	if status, body := get(t, http.MethodPost, p.URL()+"/up", bytes.NewReader(make([]byte, bigBody))); status != http.StatusOK || body != "read "+strconv.Itoa(bigBody) {
		t.Errorf("POST %d bytes through the proxy = %d %q", bigBody, status, body)
	}
	if status, body := get(t, http.MethodGet, p.URL()+"/big", nil); status != http.StatusOK || len(body) != bigBody {
		t.Errorf("GET /big through the proxy = %d, %d bytes, want 200 and %d", status, len(body), bigBody)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	default:
		t.Error("Exited not closed after Stop")
	}
	if accepts(p.Addr) {
		t.Errorf("%s still accepts connections after Stop", p.Addr)
	}
}

const nginxConf = `events {}
http {
    server {
        listen {{listen}};
        client_max_body_size 2m;
        location = /hello { return 200 "hello {{who}}\n"; }
        location / { proxy_pass http://{{upstream}}; }
    }
}
`

func TestStartNginx(t *testing.T) {
	p := StartNginx(t, nginxConf, Vars{"who": "proxytest", "upstream": startUpstream(t)})
	if !strings.HasPrefix(p.Addr, "127.0.0.1:") {
		t.Errorf("nginx listens on %s, want 127.0.0.1", p.Addr)
	}
	checkServes(t, p)
	if _, err := os.Stat(filepath.Join(p.Dir, "nginx.pid")); !os.IsNotExist(err) {
		t.Errorf("the pid file is still there after Stop: %v", err)
	}
	// Proof that the temp paths work (as root, with the workers' user).
	if !fileContains(filepath.Join(p.Dir, "logs", "error.log"), "a client request body is buffered to a temporary file") {
		t.Errorf("nginx did not spool the upload to its temp path:\n%s", p.LogTail(10))
	}
	if !fileContains(filepath.Join(p.Dir, "logs", "access.log"), "POST /up") {
		t.Errorf("the access log in the test's directory has no POST /up:\n%s", p.LogTail(10))
	}
}

const caddyfile = `http://:{{port}} {
	respond /hello "hello {{who}}"
	reverse_proxy {{upstream}}
}
`

func TestStartCaddy(t *testing.T) {
	p := StartCaddy(t, caddyfile, Vars{"who": "proxytest", "upstream": startUpstream(t)})
	checkServes(t, p)
	if _, err := os.Stat(filepath.Join(p.Dir, "home")); err != nil {
		t.Error(err)
	}
}

// TestStartRetriesABusyPort makes the first port a proxy is given one that
// is taken: the proxy fails to bind it, and start tries a free one.
func TestStartRetriesABusyPort(t *testing.T) {
	for name, run := range map[string]func(t *testing.T) *Proxy{
		"nginx": func(t *testing.T) *Proxy {
			return StartNginx(t, nginxConf, Vars{"who": "proxytest", "upstream": startUpstream(t)})
		},
		"caddy": func(t *testing.T) *Proxy {
			return StartCaddy(t, caddyfile, Vars{"who": "proxytest", "upstream": startUpstream(t)})
		},
	} {
		t.Run(name, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			busy := taken.Addr().(*net.TCPAddr).Port
			calls := 0
			pickPort = func() (int, error) {
				if calls++; calls == 1 {
					return busy, nil
				}
				return freePort()
			}
			t.Cleanup(func() { pickPort = freePort })
			p := run(t)
			if calls != 2 || p.Addr == taken.Addr().String() {
				t.Errorf("%d ports picked, proxy on %s (taken: %d); want a second, free one", calls, p.Addr, busy)
			}
			if status, _ := get(t, http.MethodGet, p.URL()+"/hello", nil); status != http.StatusOK {
				t.Errorf("GET /hello = %d", status)
			}
		})
	}
}

func TestNginxCheck(t *testing.T) {
	if out, err := NginxCheck(t, nginxConf, Vars{"who": "x", "upstream": "127.0.0.1:1"}); err != nil || !strings.Contains(out, "test is successful") {
		t.Errorf("NginxCheck of a good config: %v\n%s", err, out)
	}
	bad := strings.Replace(nginxConf, "client_max_body_size 2m;", "no_such_directive on;", 1)
	out, err := NginxCheck(t, bad, Vars{"who": "x", "upstream": "127.0.0.1:1"})
	if err == nil || !strings.Contains(out, `unknown directive "no_such_directive"`) {
		t.Errorf("NginxCheck of a bad config: %v\n%s", err, out)
	}
}

func TestCaddyCheck(t *testing.T) {
	if out, err := CaddyCheck(t, caddyfile, Vars{"who": "x", "upstream": "127.0.0.1:1"}); err != nil || !strings.Contains(out, "Valid configuration") {
		t.Errorf("CaddyCheck of a good Caddyfile: %v\n%s", err, out)
	}
	// A template with global options of its own gets proxytest's inside them.
	withGlobal := "{\n\tservers {\n\t\tprotocols h1\n\t}\n}\n\n" + caddyfile
	if out, err := CaddyCheck(t, withGlobal, Vars{"who": "x", "upstream": "127.0.0.1:1"}); err != nil {
		t.Errorf("CaddyCheck of a Caddyfile with global options: %v\n%s", err, out)
	}
	bad := strings.Replace(caddyfile, "reverse_proxy", "no_such_directive", 1)
	out, err := CaddyCheck(t, bad, Vars{"who": "x", "upstream": "127.0.0.1:1"})
	if err == nil || !strings.Contains(out, "no_such_directive") {
		t.Errorf("CaddyCheck of a bad Caddyfile: %v\n%s", err, out)
	}
}
