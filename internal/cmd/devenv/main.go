// Command devenv is `make run`, the local demo: it starts a real Ory Kratos
// (bin/kratos, deploy/kratos/kratos.yml) on 127.0.0.1:4433/4434, starts
// `ory-ext-authz serve` against it (with its forward-auth endpoint on
// 127.0.0.1:9004 and the demo's route table), then the browser demo: the
// self-service UI and the demo app of internal/demo in this process, and
// Caddy (bin/caddy) in front of them on http://127.0.0.1:8080/. It creates a
// demo identity, logs it in through the browser login flow to get a real
// ory_kratos_session cookie, runs `ory-ext-authz check` with that cookie and
// shows the answer, prints the URL to open, then keeps everything running
// until Ctrl-C (SIGINT or SIGTERM) and stops it all: Caddy and the demo
// first, then the server, then Kratos.
//
// Run it from the repository root, after `make build kratos caddy`:
//
//	go run ./internal/cmd/devenv --kratos bin/kratos --caddy bin/caddy --server bin/ory-ext-authz
//
// The dev signing key of the tokenizer template is created in .dev/jwks.json
// when missing and reused afterwards; Kratos' files and log go to
// .dev/kratos/, Caddy's to .dev/caddy/. Every address is a flag, so a test
// runs the whole demo on free loopback ports (TestBrowserDemo drives it in
// a real Chromium).
// With --exit-after-check it stops after the check, and exits non-zero
// unless the check was allowed: a bounded self-test for CI.
//
// The server inherits the environment, so ORY_EXT_AUTHZ_* variables set
// what devenv leaves at its default, e.g. ORY_EXT_AUTHZ_LOG_LEVEL=debug.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Defaults. The addresses are those the README and deploy/envoy use.
const (
	defaultGRPCAddr = "127.0.0.1:9001"
	defaultHTTPAddr = "127.0.0.1:9002"
	// defaultAdminAddr is serve's own default --admin-addr.
	defaultAdminAddr = "127.0.0.1:9003"
	// defaultForwardAuthAddr is the forward-auth port the deploy files use.
	defaultForwardAuthAddr = "127.0.0.1:9004"
	// defaultDemoAddr is Caddy's, the origin a person opens.
	defaultDemoAddr = "127.0.0.1:8080"
	// readyTimeout bounds the wait for the server's /readyz.
	readyTimeout = 20 * time.Second
	// stopTimeout bounds the server's graceful stop (its own
	// --shutdown-timeout defaults to 15s) before it is killed.
	stopTimeout = 20 * time.Second
)

// options are the flags.
type options struct {
	kratos, server, caddy, root, devDir string
	grpcAddr, httpAddr, adminAddr       string
	forwardAuthAddr, demoAddr           string
	freeKratosPorts                     bool
	exitAfterCheck                      bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("devenv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kratos, "kratos", "bin/kratos", "the Kratos binary (built by make kratos)")
	fs.StringVar(&o.server, "server", "bin/ory-ext-authz", "the ory-ext-authz binary (built by make build)")
	fs.StringVar(&o.caddy, "caddy", "bin/caddy", "the Caddy binary (built by make caddy), in front of the browser demo")
	fs.StringVar(&o.demoAddr, "demo-addr", defaultDemoAddr, "listen address of Caddy: the browser demo's origin, http://<addr>/")
	fs.StringVar(&o.forwardAuthAddr, "forward-auth-addr", defaultForwardAuthAddr, "listen address of the server's forward-auth endpoint, which Caddy asks")
	fs.StringVar(&o.root, "root", "", "repository root, holding deploy/kratos/kratos.yml (default: the nearest one at or above the working directory)")
	fs.StringVar(&o.devDir, "dev-dir", "", "directory for the dev key and Kratos' files (default: <root>/.dev, git-ignored)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", defaultGRPCAddr, "listen address of the server's gRPC ext_authz API")
	fs.StringVar(&o.httpAddr, "http-addr", defaultHTTPAddr, "listen address of the server's health endpoints")
	fs.StringVar(&o.adminAddr, "admin-addr", defaultAdminAddr, "listen address of the server's admin API (ory-ext-authz admin invalidate|stats)")
	fs.BoolVar(&o.freeKratosPorts, "kratos-free-ports", false, "run Kratos on free loopback ports instead of kratos.yml's 4433/4434 (for tests)")
	fs.BoolVar(&o.exitAfterCheck, "exit-after-check", false, "stop everything after the check; exit 1 unless it was allowed (self-test)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: devenv [flags]\n\nThe make run demo: a local Kratos, a logged-in demo identity, ory-ext-authz serve and one check;\nCtrl-C stops everything.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

// run is main without the process; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "devenv: %v\n", err)
		return 2
	}
	if err := runDemo(ctx, o, stdout, stderr); err != nil {
		if ctx.Err() != nil {
			// Interrupted before the demo was up; everything is stopped.
			fmt.Fprintf(stderr, "devenv: interrupted during start-up: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "devenv: %v\n", err)
		return 1
	}
	return 0
}
