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

// demo runs the whole flow; everything it started is stopped when it returns.
func demo(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
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
		"--grpc-addr", o.grpcAddr, "--http-addr", o.httpAddr, "--admin-addr", o.adminAddr, "--log-format", "text"}, stderr)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := stopServer(srv, stopTimeout); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		p.printf("stopped ory-ext-authz\n")
	}()
	if err := waitReady(ctx, "http://"+o.httpAddr+"/readyz", srv, readyTimeout); err != nil {
		return err
	}
	p.printf("ory-ext-authz serve is up: gRPC %s, HTTP %s (pid %d)\n", o.grpcAddr, o.httpAddr, srv.Pid())

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
	p.printf("\nTry again:\n  %s\n", checkLine)

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
	p.printf("\nPress Ctrl-C to stop Kratos and ory-ext-authz.\n")
	select {
	case <-ctx.Done():
		p.printf("\nstopping...\n")
		return nil
	case <-srv.Exited():
		return fmt.Errorf("ory-ext-authz serve exited on its own (%s)", exitStatus(srv.Err()))
	case <-k.Done():
		return fmt.Errorf("kratos exited on its own; log: %s", display(k.LogFile()))
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

// waitReady polls url until it answers 200, the process exits or the time is up.
func waitReady(ctx context.Context, url string, p *procgroup.Process, timeout time.Duration) error {
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
			return fmt.Errorf("ory-ext-authz serve not ready at %s: %w", url, ctx.Err())
		case <-p.Exited():
			return fmt.Errorf("ory-ext-authz serve exited before it was ready (%s)", exitStatus(p.Err()))
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
