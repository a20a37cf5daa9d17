package proxytest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// nginx's own paths that proxytest sets; a template must not set them.
var (
	// Main-context directives, given with -g.
	nginxMainRE = regexp.MustCompile(`(?m)^\s*(daemon|pid|user|master_process|lock_file)\s`)
	// The temp paths (compiled in as /var/lib/nginx/... on Debian, which
	// only root may create), set at the top of the http block.
	nginxTempRE = regexp.MustCompile(`(?m)^\s*((?:client_body|proxy|fastcgi|uwsgi|scgi)_temp_path)\s`)
	nginxHTTPRE = regexp.MustCompile(`(?m)^[ \t]*http[ \t]*\{[^\n]*\n`)
)

// nginxFiles are the paths of one nginx run inside its directory.
type nginxFiles struct {
	dir, conf, pid, errorLog, accessLog, output string
}

func newNginxFiles(dir string) nginxFiles {
	return nginxFiles{
		dir:       dir,
		conf:      filepath.Join(dir, "nginx.conf"),
		pid:       filepath.Join(dir, "nginx.pid"),
		errorLog:  filepath.Join(dir, "logs", "error.log"),
		accessLog: filepath.Join(dir, "logs", "access.log"),
		output:    filepath.Join(dir, "logs", "output.log"),
	}
}

// writeNginx renders conf for port into f.conf, with the access log and the
// temp paths inside f.dir added at the top of its http block.
func writeNginx(f nginxFiles, conf string, vars Vars, port int) error {
	text, err := render(conf, vars, builtins(port, f.dir))
	if err != nil {
		return err
	}
	if m := nginxMainRE.FindStringSubmatch(text); m != nil {
		return fmt.Errorf("the config sets %s; proxytest sets it (remove it from the template)", m[1])
	}
	if m := nginxTempRE.FindStringSubmatch(text); m != nil {
		return fmt.Errorf("the config sets %s; proxytest sets it (remove it from the template)", m[1])
	}
	loc := nginxHTTPRE.FindAllStringIndex(text, -1)
	if len(loc) != 1 {
		return fmt.Errorf("want one line opening the http block (`http {`), found %d", len(loc))
	}
	var add strings.Builder
	add.WriteString("    # proxytest: this test's own paths\n")
	fmt.Fprintf(&add, "    access_log %s;\n", quoteNginx(f.accessLog))
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&add, "    %s_temp_path %s;\n", p, quoteNginx(filepath.Join(f.dir, "tmp", p)))
	}
	at := loc[0][1]
	text = text[:at] + add.String() + text[at:]
	for _, d := range []string{filepath.Join(f.dir, "logs"), filepath.Join(f.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return os.WriteFile(f.conf, []byte(text), 0o600)
}

// quoteNginx quotes a path for an nginx config.
func quoteNginx(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// args are nginx's arguments: the prefix, the config, the early error log
// and the main-context directives that keep it in the foreground with its
// pid file and error log inside f.dir. As root, the workers stay root too:
// Debian's default worker user (nobody) could not enter the test's
// directory, which only its owner may.
func (f nginxFiles) args(errorLog string, extra ...string) []string {
	g := fmt.Sprintf("daemon off; master_process on; pid %s; error_log %s notice;", quoteNginx(f.pid), quoteNginx(f.errorLog))
	if os.Geteuid() == 0 {
		g += " user root root;"
	}
	a := []string{"-p", f.dir + string(filepath.Separator), "-c", f.conf, "-e", errorLog, "-g", g}
	return append(a, extra...)
}

// StartNginx starts the real nginx on the config template conf, filled with
// vars (see the package doc for the placeholders proxytest fills), and
// stops it when t ends. The template must have one `http {` line and must
// not set daemon, pid, user, master_process, lock_file or the *_temp_path
// directives, which proxytest sets; it must listen on {{listen}}. Without
// an nginx binary t is skipped (or fails, see EnvRequireNginx).
func StartNginx(t testing.TB, conf string, vars Vars) *Proxy {
	t.Helper()
	bin := NginxBinary(t)
	return start(t, "nginx", func(dir string, port int) (launch, error) {
		f := newNginxFiles(dir)
		if err := writeNginx(f, conf, vars, port); err != nil {
			return launch{}, err
		}
		return launch{
			cmd:        exec.Command(bin, f.args(f.errorLog)...),
			configFile: f.conf,
			logs:       []string{f.output, f.errorLog, f.accessLog},
			// nginx writes its pid file once it has bound its listeners.
			ready: func(pid int) bool {
				b, err := os.ReadFile(f.pid)
				return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid)
			},
			busy: func() bool { return fileContains(f.errorLog, "Address already in use") },
		}, nil
	})
}

// NginxCheck runs `nginx -t` on the config template conf filled with vars
// the way StartNginx fills it, and returns nginx's output; the error is
// nginx's refusal. Without an nginx binary t is skipped (or fails).
func NginxCheck(t testing.TB, conf string, vars Vars) (string, error) {
	t.Helper()
	out, _, err := nginxCheck(t, conf, vars)
	return out, err
}

func nginxCheck(t testing.TB, conf string, vars Vars) (out, rendered string, err error) {
	t.Helper()
	bin := NginxBinary(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	f := newNginxFiles(t.TempDir())
	if err := writeNginx(f, conf, vars, port); err != nil {
		return "", "", err
	}
	out, err = runCheck(exec.Command(bin, f.args("stderr", "-t")...))
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = fmt.Errorf("nginx -t refused the config (%w)", err)
	}
	return out, f.conf, err
}

// NginxTest runs `nginx -t` on the template conf filled with vars and fails
// t, showing nginx's output and the rendered config, when nginx refuses it.
func NginxTest(t testing.TB, conf string, vars Vars) {
	t.Helper()
	if out, rendered, err := nginxCheck(t, conf, vars); err != nil {
		t.Fatalf("%v:\n%s\nrendered config:\n%s", err, out, numbered(rendered))
	}
}
