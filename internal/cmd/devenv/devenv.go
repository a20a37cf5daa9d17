package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/demo"
	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/procgroup"
)

// The demo identity. The password is fixed, so that logging in works also
// when the identity already exists (CreateIdentity keeps the old password),
// e.g. with a persistent DSN. It is printed: this is a local demo.
const (
	demoEmail    = "demo@example.org"
	demoPassword = "ory-ext-authz-local-dev"
)

// runDemo runs the whole flow; everything it started is stopped when it returns.
func runDemo(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	p := &printer{w: stdout}
	if o.root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if o.root, err = kratosdev.FindRoot(wd); err != nil {
			return fmt.Errorf("%w (run devenv in the repository or give --root)", err)
		}
	}
	if o.devDir == "" {
		o.devDir = filepath.Join(o.root, ".dev")
	}
	kratosBin, err := binary(o.kratos, "--kratos", "make kratos")
	if err != nil {
		return err
	}
	serverBin, err := binary(o.server, "--server", "make build")
	if err != nil {
		return err
	}
	caddyBin, err := binary(o.caddy, "--caddy", "make caddy")
	if err != nil {
		return err
	}
	// Fail before starting anything when the demo's ports are taken.
	for _, a := range []struct{ flag, addr string }{{"--demo-addr", o.demoAddr}, {"--forward-auth-addr", o.forwardAuthAddr}, {"--grpc-addr", o.grpcAddr}, {"--http-addr", o.httpAddr}, {"--admin-addr", o.adminAddr}} {
		if err := portFree(a.flag, a.addr); err != nil {
			return err
		}
	}
	origin := "http://" + o.demoAddr
	if err := os.MkdirAll(o.devDir, 0o700); err != nil {
		return err
	}

	keyFile := filepath.Join(o.devDir, "jwks.json")
	key, created, err := ensureJWKS(keyFile)
	if err != nil {
		return err
	}
	if created {
		p.printf("created the dev signing key of the tokenizer template: %s\n", display(keyFile))
	} else {
		p.printf("using the dev signing key %s\n", display(keyFile))
	}

	p.printf("starting Kratos (%s)...\n", display(kratosBin))
	k, err := kratosdev.Start(ctx, kratosdev.Options{
		Binary:     kratosBin,
		RootDir:    o.root,
		WorkDir:    filepath.Join(o.devDir, "kratos"),
		JWKS:       key,
		FixedPorts: !o.freeKratosPorts,
		// Browsers reach Kratos' public API through Caddy, on the demo's
		// origin, where its cookies and the UI's pages are.
		PublicBaseURL: origin + "/",
		Config:        demo.KratosConfig(origin),
	})
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := k.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		p.printf("stopped Kratos\n")
	}()
	p.printf("Kratos is up: public %s, admin %s\n", k.PublicURL(), k.AdminURL())

	id, cookie, sid, err := loginDemo(ctx, k)
	if err != nil {
		return err
	}
	p.printf("demo identity %s (password %s): id %s\n", demoEmail, demoPassword, id)
	p.printf("logged in through the browser login flow: session %s, cookie %s\n", sid, kratosdev.SessionCookie)

	oryURL := strings.TrimSuffix(k.PublicURL(), "/")
	srv, err := startServer(serverBin, []string{"serve",
		"--ory-url", oryURL, "--tokenize-as", kratosdev.MeshTemplate,
		"--grpc-addr", o.grpcAddr, "--http-addr", o.httpAddr, "--admin-addr", o.adminAddr, "--log-format", "text",
		// The browser demo: Caddy's forward_auth asks /auth on
		// --forward-auth-addr, from loopback, and the demo's route table
		// sends a browser without a session to Kratos' login.
		"--forward-auth-addr", o.forwardAuthAddr, "--trusted-proxies", "127.0.0.1/32",
		"--routes", filepath.Join(o.root, demo.RoutesFile), "--login-url", demo.LoginURL(origin)}, stderr)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := stopServer(srv, stopTimeout); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		p.printf("stopped ory-ext-authz\n")
	}()
	if err := waitReady(ctx, "ory-ext-authz serve", "http://"+o.httpAddr+"/readyz", srv, readyTimeout); err != nil {
		return err
	}
	p.printf("ory-ext-authz serve is up: gRPC %s, HTTP %s, forward-auth %s (pid %d)\n", o.grpcAddr, o.httpAddr, o.forwardAuthAddr, srv.Pid())

	p.printf("starting Caddy (%s) and the demo app and UI...\n", display(caddyBin))
	b, err := startBrowser(ctx, o, k, key, caddyBin, stderr)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := b.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		p.printf("stopped Caddy and the demo app\n")
	}()
	p.printf("Caddy is up on %s (log: %s)\n", origin, display(b.caddyLog))

	checkArgs := []string{"check", "--addr", o.grpcAddr, "--cookie", cookie}
	checkLine := commandLine(o.server, checkArgs)
	p.printf("\n$ %s\n", checkLine)
	checkErr := runCheck(ctx, serverBin, checkArgs, stdout, stderr)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	p.printf("\nRunning:\n")
	p.printf("  Kratos public API   %s   (log: %s)\n", k.PublicURL(), display(k.LogFile()))
	p.printf("  Kratos admin API    %s\n", k.AdminURL())
	p.printf("  ext_authz gRPC      %s   (Envoy's ext_authz grpc_service)\n", o.grpcAddr)
	p.printf("  health HTTP         http://%s/readyz\n", o.httpAddr)
	p.printf("  admin API           %s   (%s)\n", o.adminAddr, commandLine(o.server, []string{"admin", "stats", "--admin-addr", o.adminAddr}))
	p.printf("  demo identity       %s / %s\n", demoEmail, demoPassword)
	p.printf("  public JWKS         %s\n", commandLine(o.server, []string{"jwks", "public", display(keyFile)}))
	p.printf("  forward-auth        http://%s/auth   (Caddy's forward_auth)\n", o.forwardAuthAddr)
	p.printf("  Caddy               %s   (log: %s)\n", origin, display(b.caddyLog))
	p.printf("\nTry again:\n  %s\n", checkLine)
	p.printf("\nOpen %s/ in a browser and sign in as %s / %s (or register).\n", origin, demoEmail, demoPassword)

	if o.exitAfterCheck {
		if checkErr != nil {
			return fmt.Errorf("the check of the demo cookie was not allowed: %w", checkErr)
		}
		p.printf("\n--exit-after-check: stopping\n")
		return nil
	}
	if checkErr != nil {
		p.printf("\nThe check was not allowed (%v); both keep running for a look.\n", checkErr)
	}
	p.printf("\nPress Ctrl-C to stop Caddy, Kratos and ory-ext-authz.\n")
	select {
	case <-ctx.Done():
		p.printf("\nstopping...\n")
		return nil
	case <-srv.Exited():
		return fmt.Errorf("ory-ext-authz serve exited on its own (%s)", exitStatus(srv.Err()))
	case <-k.Done():
		return fmt.Errorf("kratos exited on its own; log: %s", display(k.LogFile()))
	case <-b.caddy.Exited():
		return fmt.Errorf("caddy exited on its own (%s); log: %s", exitStatus(b.caddy.Err()), display(b.caddyLog))
	case err := <-b.done:
		return fmt.Errorf("the demo app or UI server failed: %w", err)
	}
}

// loginDemo creates the demo identity, or finds it if it exists, and logs
// it in through the browser flow: a new session and its cookie pair.
func loginDemo(ctx context.Context, k *kratosdev.Kratos) (id, cookie, sid string, err error) {
	if id, err = k.CreateIdentity(ctx, demoEmail, demoPassword); err != nil {
		return "", "", "", err
	}
	if cookie, sid, err = k.BrowserLoginSession(ctx, demoEmail, demoPassword); err != nil {
		return "", "", "", err
	}
	return id, cookie, sid, nil
}

// binary checks that path is an executable file and returns it absolute.
func binary(path, flagName, hint string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s %s: not an executable file (run `%s`)", flagName, path, hint)
	}
	return abs, nil
}

// ensureJWKS returns the private JWKS in path, generating it when missing.
// An existing file is reused as it is, so JWTs of earlier runs stay
// verifiable with the same public keys.
func ensureJWKS(path string) (key []byte, created bool, err error) {
	key, err = os.ReadFile(path)
	switch {
	case err == nil:
		if _, err := jwks.Public(key); err != nil {
			return nil, false, fmt.Errorf("%s: %w (delete it to have a new one generated)", path, err)
		}
		return key, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, false, err
	}
	if key, err = jwks.Generate(jwks.DefaultAlg, "ory-ext-authz-dev"); err != nil {
		return nil, false, err
	}
	key = append(key, '\n')
	// O_EXCL: never overwrite a key another run created in the meantime.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, err
	}
	if _, err := f.Write(key); err != nil {
		_ = f.Close()
		return nil, false, err
	}
	return key, true, f.Close()
}

// startServer starts `ory-ext-authz serve`, its output prefixed on out. It
// runs in its own process group, so a Ctrl-C in the terminal reaches devenv
// only, which then stops the server and Kratos in order.
func startServer(bin string, args []string, out io.Writer) (*procgroup.Process, error) {
	cmd := exec.Command(bin, args...)
	w := &prefixWriter{w: out, prefix: "ory-ext-authz | "}
	cmd.Stdout, cmd.Stderr = w, w
	return procgroup.Start(cmd, w.flush)
}

// stopServer ends the server gracefully (SIGTERM: health NOT_SERVING,
// drain), or kills it after timeout. It returns an error if the server
// failed or had to be killed.
func stopServer(p *procgroup.Process, timeout time.Duration) error {
	switch err := p.Stop(timeout); {
	case errors.Is(err, procgroup.ErrKilled):
		return fmt.Errorf("ory-ext-authz serve did not stop within %s and was killed", timeout)
	case err != nil:
		return fmt.Errorf("ory-ext-authz serve: %w", err)
	}
	return nil
}

// waitReady polls url until it answers 200, the process (name) exits or
// the time is up.
func waitReady(ctx context.Context, name, url string, p *procgroup.Process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", name, url, ctx.Err())
		case <-p.Exited():
			return fmt.Errorf("%s exited before it was ready (%s)", name, exitStatus(p.Err()))
		case <-tick.C:
		}
	}
}

// runCheck runs `ory-ext-authz check`; nil means allowed (exit 0).
func runCheck(ctx context.Context, bin string, args []string, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd.Run()
}

// commandLine renders a command for a POSIX shell, to copy and paste.
func commandLine(bin string, args []string) string {
	parts := []string{shellQuote(bin)}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell unless it consists of characters no
// shell treats specially. A value with "=" is always quoted (cookies read
// better that way).
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, needsQuoting) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func needsQuoting(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("-_./:,@%+", r)
}

// exitStatus describes how a process ended, from its Wait error.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// display shows path relative to the working directory when it lies below it.
func display(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return path
	}
	return rel
}

type printer struct{ w io.Writer }

func (p *printer) printf(format string, args ...any) { _, _ = fmt.Fprintf(p.w, format, args...) }

// prefixWriter writes every line with a prefix. exec calls Write from one
// goroutine when Stdout and Stderr are the same writer; the mutex keeps it
// safe regardless.
type prefixWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial[:i]); err != nil {
			return 0, err
		}
		p.partial = p.partial[i+1:]
	}
	return len(b), nil
}

// flush writes a last line that had no newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.partial) > 0 {
		_, _ = fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial)
		p.partial = nil
	}
}
