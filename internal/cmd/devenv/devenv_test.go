package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/proxytest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
)

// TestDemo runs the `make run` flow against the real Kratos and the real
// ory-ext-authz binary, on free ports (never 4433 or 9001, which a
// developer's `make run` may hold).
func TestDemo(t *testing.T) {
	kratosBin := kratostest.Binary(t)
	caddyBin := proxytest.CaddyBinary(t)
	root, err := kratosdev.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bins := t.TempDir()
	server := goBuild(t, root, bins, "./cmd/ory-ext-authz")

	t.Run("exit after check, twice", func(t *testing.T) {
		devDir := t.TempDir()
		var firstKey []byte
		for i, wantKey := range []string{"created the dev signing key", "using the dev signing key"} {
			grpcAddr, httpAddr, adminAddr := servertest.FreeAddr(t), servertest.FreeAddr(t), servertest.FreeAddr(t)
			faAddr, demoAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
			var out, errOut logcapture.Buffer
			code := run(t.Context(), []string{"--kratos", kratosBin, "--server", server, "--caddy", caddyBin, "--root", root, "--dev-dir", devDir,
				"--kratos-free-ports", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--admin-addr", adminAddr,
				"--forward-auth-addr", faAddr, "--demo-addr", demoAddr, "--exit-after-check"}, &out, &errOut)
			if code != 0 {
				t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", i+1, code, out.String(), errOut.String())
			}
			for _, want := range []string{wantKey, "decision: ALLOWED (exit 0)", `"email": "` + demoEmail + `"`,
				"demo identity       " + demoEmail + " / " + demoPassword, "Try again:\n  ", "stopped ory-ext-authz", "stopped Kratos",
				"Open http://" + demoAddr + "/ in a browser", "stopped Caddy and the demo app"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("run %d: stdout lacks %q:\n%s", i+1, want, out.String())
				}
			}
			if !strings.Contains(errOut.String(), "ory-ext-authz | ") {
				t.Errorf("run %d: the server's log is not shown, prefixed, on stderr:\n%s", i+1, errOut.String())
			}
			assertNothingListens(t, append(kratosAddrs(t, out.String()), grpcAddr, httpAddr, adminAddr, faAddr, demoAddr))
			key, err := os.ReadFile(filepath.Join(devDir, "jwks.json"))
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				firstKey = key
			} else if !bytes.Equal(key, firstKey) {
				t.Error("the second run replaced the dev key")
			}
		}
	})

	t.Run("Ctrl-C stops everything", func(t *testing.T) {
		devenv := goBuild(t, root, bins, "./internal/cmd/devenv")
		grpcAddr, httpAddr, adminAddr := servertest.FreeAddr(t), servertest.FreeAddr(t), servertest.FreeAddr(t)
		faAddr, demoAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
		var out logcapture.Buffer
		cmd := exec.Command(devenv, "--kratos", kratosBin, "--server", server, "--caddy", caddyBin, "--root", root, "--dev-dir", t.TempDir(),
			"--kratos-free-ports", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--admin-addr", adminAddr,
			"--forward-auth-addr", faAddr, "--demo-addr", demoAddr)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() {
			waitErr = cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			select {
			case <-exited:
			default:
				_ = cmd.Process.Kill()
				<-exited
			}
		})

		waitFor(t, 60*time.Second, "devenv to wait for Ctrl-C", exited, &out, func() bool {
			return strings.Contains(out.String(), "Press Ctrl-C")
		})
		// The printed command works when pasted into a shell.
		m := regexp.MustCompile(`Try again:\n  (.+)\n`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no command to try again:\n%s", out.String())
		}
		again, err := exec.CommandContext(t.Context(), "sh", "-c", m[1]).CombinedOutput()
		if err != nil || !strings.Contains(string(again), "decision: ALLOWED") {
			t.Fatalf("the printed check command: %v\n%s", err, again)
		}
		pid := serverPID(t, out.String())

		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
			if waitErr != nil {
				t.Fatalf("devenv after Ctrl-C: %v\n%s", waitErr, out.String())
			}
		case <-time.After(40 * time.Second):
			t.Fatalf("devenv did not stop after Ctrl-C:\n%s", out.String())
		}
		for _, want := range []string{"stopping...", "stopped Caddy and the demo app", "stopped ory-ext-authz", "stopped Kratos"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
		assertNothingListens(t, append(kratosAddrs(t, out.String()), grpcAddr, httpAddr, adminAddr, faAddr, demoAddr))
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("the server process %d still exists (kill -0: %v)", pid, err)
		}
	})
}

// TestDemoIdentityTwice: logging the demo in again, against the same Kratos
// (a persistent DSN, or a second devenv against a Kratos still running),
// finds the identity and opens another session.
func TestDemoIdentityTwice(t *testing.T) {
	k := kratostest.Start(t, kratosdev.Options{})
	id1, cookie1, sid1, err := loginDemo(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	id2, cookie2, sid2, err := loginDemo(t.Context(), k)
	if err != nil {
		t.Fatalf("second login: %v", err)
	}
	if id1 != id2 || sid1 == sid2 || cookie1 == cookie2 || !strings.HasPrefix(cookie2, kratosdev.SessionCookie+"=") {
		t.Errorf("identities %s, %s (want one); sessions %s, %s (want two)", id1, id2, sid1, sid2)
	}
}

func TestFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kratos")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"help", []string{"--help"}, 0, "-exit-after-check"},
		{"unknown flag", []string{"--bogus"}, 2, "bogus"},
		{"argument", []string{"now"}, 2, "unexpected arguments"},
		{"no kratos binary", []string{"--kratos", missing, "--dev-dir", t.TempDir()}, 1, "make kratos"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(t.Context(), tt.args, &out, &errOut); code != tt.code || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Fatalf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), tt.code, tt.wantErr)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"bin/ory-ext-authz":        "bin/ory-ext-authz",
		"127.0.0.1:9001":           "127.0.0.1:9001",
		"ory_kratos_session=abc==": "'ory_kratos_session=abc=='",
		"a b":                      "'a b'",
		"it's":                     `'it'\''s'`,
		"":                         "''",
		"$HOME;`x`":                "'$HOME;`x`'",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
		// And a shell reads it back as it was.
		out, err := exec.CommandContext(t.Context(), "sh", "-c", "printf %s "+shellQuote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("sh read %s back as %q (%v), want %q", shellQuote(in), out, err, in)
		}
	}
}

func TestEnsureJWKS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	key, created, err := ensureJWKS(path)
	if err != nil || !created {
		t.Fatalf("first call: created %v, %v", created, err)
	}
	if _, err := jwks.Public(key); err != nil {
		t.Fatalf("generated key: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v, want 0600", fi.Mode(), err)
	}
	again, created, err := ensureJWKS(path)
	if err != nil || created || !bytes.Equal(again, key) {
		t.Fatalf("second call: created %v, same key %v, %v", created, bytes.Equal(again, key), err)
	}
	if err := os.WriteFile(path, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ensureJWKS(path); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("broken key file: %v, want an error saying to delete it", err)
	}
}

// goBuild builds pkg (relative to root) into dir and returns the binary.
func goBuild(t *testing.T, root, dir, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build %s: %v", pkg, err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// kratosAddrs reads Kratos' public and admin addresses from the output.
func kratosAddrs(t *testing.T, out string) []string {
	t.Helper()
	m := regexp.MustCompile(`Kratos is up: public http://([0-9.:]+)/, admin http://([0-9.:]+)/`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Kratos addresses in the output:\n%s", out)
	}
	return m[1:]
}

func serverPID(t *testing.T, out string) int {
	t.Helper()
	m := regexp.MustCompile(`ory-ext-authz serve is up: .* \(pid (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no server pid in the output:\n%s", out)
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func assertNothingListens(t *testing.T, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections", a)
		}
	}
}

// waitFor polls cond until it holds, failing after timeout or when the
// process exits first.
func waitFor(t *testing.T, timeout time.Duration, what string, exited <-chan struct{}, out *logcapture.Buffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-exited:
			t.Fatalf("devenv exited before %s:\n%s", what, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, out.String())
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}
