// Command ory-ext-authz is an Envoy ext_authz server that turns an Ory session
// into a JWT for the upstream. See `ory-ext-authz --help`.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `ory-ext-authz: an Envoy ext_authz (v3, gRPC) server that turns an Ory session
(browser cookie or session token) into "Authorization: Bearer <jwt>" for the upstream.

Usage:
  ory-ext-authz serve [flags]       run the server (ory-ext-authz serve --help lists the flags)
  ory-ext-authz check [flags]       send one CheckRequest as Envoy would and show the answer
  ory-ext-authz admin invalidate|stats  end cached sessions / show cache stats, over the admin API (--admin-addr)
  ory-ext-authz jwks generate|public  make a signing JWKS for Ory's tokenizer / print its public keys
  ory-ext-authz routes check FILE   validate a routes file; --request 'GET https://host/path' shows its rule
  ory-ext-authz version             print the version

Every serve flag can also be set as ORY_EXT_AUTHZ_<FLAG> (--ory-url -> ORY_EXT_AUTHZ_ORY_URL);
a flag given on the command line wins.
`

// run is main without the process: tests call it in-process. It returns the
// exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if t, ok := tools[cmd]; ok {
		return t(ctx, rest, stdin, stdout, stderr)
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, rest, getenv, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "ory-ext-authz", version)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "ory-ext-authz: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "ory-ext-authz %s: %v\n", cmd, err)
		return 1
	}
}
