package proxytest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// caddyFiles are the paths of one Caddy run inside its directory.
type caddyFiles struct {
	dir, caddyfile, log, home, storage string
}

func newCaddyFiles(dir string) caddyFiles {
	return caddyFiles{
		dir:       dir,
		caddyfile: filepath.Join(dir, "Caddyfile"),
		log:       filepath.Join(dir, "caddy.log"),
		home:      filepath.Join(dir, "home"),
		storage:   filepath.Join(dir, "storage"),
	}
}

// globalOptions are the Caddyfile global options proxytest adds: no admin
// endpoint (nothing listens on localhost:2019, so several Caddies can run
// at once), no automatic HTTPS, nothing saved or installed outside the
// test's directory, every listener on 127.0.0.1 only, and a short grace
// period so that stopping does not wait for open connections.
func (f caddyFiles) globalOptions() string {
	return fmt.Sprintf(`	# proxytest: this test's own settings
	admin off
	persist_config off
	auto_https off
	skip_install_trust
	storage file_system %s
	default_bind 127.0.0.1
	grace_period 1s
`, quoteCaddy(f.storage))
}

// quoteCaddy quotes a Caddyfile token.
func quoteCaddy(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// writeCaddy renders caddyfile for port into f.caddyfile with the global
// options added: into the template's own global options block when it
// opens with one, else in a block of their own.
func writeCaddy(f caddyFiles, caddyfile string, vars Vars, port int) error {
	text, err := render(caddyfile, vars, builtins(port, f.dir))
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(text, "\n")
	first := -1
	for i, l := range lines {
		if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
			first = i
			break
		}
	}
	if first >= 0 && strings.TrimSpace(lines[first]) == "{" {
		text = strings.Join(lines[:first+1], "") + f.globalOptions() + strings.Join(lines[first+1:], "")
	} else {
		text = "{\n" + f.globalOptions() + "}\n\n" + text
	}
	for _, d := range []string{f.home, f.storage} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return os.WriteFile(f.caddyfile, []byte(text), 0o600)
}

// env is Caddy's environment: HOME and the XDG directories (where it
// keeps its config autosave, data and certificates) inside f.dir.
func (f caddyFiles) env() []string {
	return append(os.Environ(),
		"HOME="+f.home,
		"XDG_CONFIG_HOME="+filepath.Join(f.home, ".config"),
		"XDG_DATA_HOME="+filepath.Join(f.home, ".local", "share"),
		"XDG_CACHE_HOME="+filepath.Join(f.home, ".cache"),
	)
}

// StartCaddy starts the real Caddy (`caddy run --adapter caddyfile`) on the
// Caddyfile template caddyfile, filled with vars (see the package doc for
// the placeholders proxytest fills), and stops it when t ends. Its site
// address should be http://:{{port}} (any Host) or http://{{listen}}.
// proxytest adds the global options admin off, persist_config off,
// auto_https off, skip_install_trust, storage in the test's directory,
// default_bind 127.0.0.1 and grace_period 1s, which the template must not
// set. Without a Caddy binary t is skipped (or fails, see EnvRequireCaddy).
func StartCaddy(t testing.TB, caddyfile string, vars Vars) *Proxy {
	t.Helper()
	bin := CaddyBinary(t)
	return start(t, "caddy", func(dir string, port int) (launch, error) {
		f := newCaddyFiles(dir)
		if err := writeCaddy(f, caddyfile, vars, port); err != nil {
			return launch{}, err
		}
		cmd := exec.Command(bin, "run", "--config", f.caddyfile, "--adapter", "caddyfile")
		cmd.Dir, cmd.Env = dir, f.env()
		return launch{
			cmd:        cmd,
			configFile: f.caddyfile,
			logs:       []string{f.log},
			// Logged once every server of the config has started.
			ready: func(int) bool { return fileContains(f.log, "serving initial configuration") },
			busy:  func() bool { return fileContains(f.log, "address already in use") },
		}, nil
	})
}

// CaddyCheck runs `caddy validate --adapter caddyfile` on the Caddyfile
// template caddyfile filled with vars the way StartCaddy fills it, and
// returns Caddy's output; the error is Caddy's refusal. Without a Caddy
// binary t is skipped (or fails).
func CaddyCheck(t testing.TB, caddyfile string, vars Vars) (string, error) {
	t.Helper()
	out, _, err := caddyCheck(t, caddyfile, vars)
	return out, err
}

func caddyCheck(t testing.TB, caddyfile string, vars Vars) (out, rendered string, err error) {
	t.Helper()
	bin := CaddyBinary(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	f := newCaddyFiles(t.TempDir())
	if err := writeCaddy(f, caddyfile, vars, port); err != nil {
		return "", "", err
	}
	cmd := exec.Command(bin, "validate", "--config", f.caddyfile, "--adapter", "caddyfile")
	cmd.Dir, cmd.Env = f.dir, f.env()
	out, err = runCheck(cmd)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = fmt.Errorf("caddy validate refused the config (%w)", err)
	}
	return out, f.caddyfile, err
}

// CaddyValidate runs `caddy validate` on the template caddyfile filled with
// vars and fails t, showing Caddy's output and the rendered Caddyfile, when
// Caddy refuses it.
func CaddyValidate(t testing.TB, caddyfile string, vars Vars) {
	t.Helper()
	if out, rendered, err := caddyCheck(t, caddyfile, vars); err != nil {
		t.Fatalf("%v:\n%s\nrendered Caddyfile:\n%s", err, out, numbered(rendered))
	}
}

// CaddyFmt returns `caddy fmt` of the file at path: the file as Caddy
// formats it, for a test that keeps a shipped Caddyfile formatted.
func CaddyFmt(t testing.TB, path string) string {
	t.Helper()
	bin := CaddyBinary(t)
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "fmt", abs)
	cmd.Dir, cmd.Env = dir, newCaddyFiles(dir).env()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runBounded(cmd); err != nil {
		t.Fatalf("caddy fmt %s: %v\n%s", path, err, stderr.String())
	}
	return stdout.String()
}
