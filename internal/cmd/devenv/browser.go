package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	ory "github.com/ory/client-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ory-ext-authz/ory-ext-authz/internal/demo"
	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/procgroup"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// browserStack is the browser demo's part: the UI and the app in this
// process, Caddy in front of them on the demo's origin.
type browserStack struct {
	ui, app  *http.Server
	conn     *grpc.ClientConn
	caddy    *procgroup.Process
	caddyLog string
	done     chan error // the UI's or the app's server failed
}

// startBrowser starts the UI and app servers on free loopback ports and
// Caddy on o.demoAddr in front of them, Kratos and ory-ext-authz's
// forward-auth endpoint. It returns once Caddy answers.
func startBrowser(ctx context.Context, o options, k *kratosdev.Kratos, key []byte, caddyBin string, stderr io.Writer) (_ *browserStack, err error) {
	keys, err := jwks.PublicKeys(key)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(o.adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("--admin-addr %q: %w", o.adminAddr, err)
	}
	b := &browserStack{conn: conn, done: make(chan error, 2)}
	defer func() {
		if err != nil {
			_ = b.stop() // the start failed; that error is the one to report
		}
	}()
	kratosAdmin := ory.NewConfiguration()
	// client-go joins paths to the URL as they are: no trailing slash.
	kratosAdmin.Servers = ory.ServerConfigurations{{URL: strings.TrimSuffix(k.AdminURL(), "/")}}
	kratosAdmin.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	log := slog.New(slog.NewTextHandler(&prefixWriter{w: stderr, prefix: "demo | "}, nil))
	app := &demo.App{
		Keys: keys, Kratos: ory.NewAPIClient(kratosAdmin), Admin: adminv1.NewAdminClient(conn),
		SessionCookie: kratosdev.SessionCookie, Log: log,
	}
	ui := &demo.UI{KratosPublic: k.PublicURL(), Log: log}
	var uiAddr, appAddr string
	if b.ui, uiAddr, err = serve(ui.Handler(), b.done); err != nil {
		return nil, err
	}
	if b.app, appAddr, err = serve(app.Handler(), b.done); err != nil {
		return nil, err
	}

	dir := filepath.Join(o.devDir, "caddy")
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o700); err != nil {
		return nil, err
	}
	caddyfile, err := demo.WriteCaddyfile(dir, demo.CaddyVars{
		Listen: o.demoAddr, Kratos: hostPort(k.PublicURL()), UI: uiAddr, App: appAddr,
		ForwardAuth: o.forwardAuthAddr, Storage: filepath.Join(dir, "storage"),
	})
	if err != nil {
		return nil, err
	}
	b.caddyLog = filepath.Join(dir, "caddy.log")
	logFile, err := os.OpenFile(b.caddyLog, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(caddyBin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	cmd.Dir, cmd.Env = dir, demo.CaddyEnv(dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if b.caddy, err = procgroup.Start(cmd, nil); err != nil {
		return nil, fmt.Errorf("starting Caddy: %w", err)
	}
	if err := waitReady(ctx, "caddy", "http://"+o.demoAddr+"/ui/logout", b.caddy, readyTimeout); err != nil {
		return nil, fmt.Errorf("%w; log: %s", err, display(b.caddyLog))
	}
	return b, nil
}

// serve runs h on a free loopback port; a failure of the server goes to done.
func serve(h http.Handler, done chan<- error) (*http.Server, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			done <- err
		}
	}()
	return srv, l.Addr().String(), nil
}

// stop ends Caddy, then the UI and the app. It returns an error if Caddy
// had to be killed.
func (b *browserStack) stop() error {
	var err error
	if b.caddy != nil {
		if stopErr := b.caddy.Stop(stopTimeout); errors.Is(stopErr, procgroup.ErrKilled) {
			err = fmt.Errorf("caddy did not stop within %s and was killed", stopTimeout)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []*http.Server{b.ui, b.app} {
		if s != nil {
			_ = s.Shutdown(ctx)
		}
	}
	if b.conn != nil {
		_ = b.conn.Close()
	}
	return err
}

// hostPort is the host:port of a base URL such as http://127.0.0.1:4433/.
func hostPort(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Host
}

// portFree fails when addr cannot be bound, before anything is started on it.
func portFree(flagName, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is another `make run` still running?)", flagName, addr, err)
	}
	return l.Close()
}
