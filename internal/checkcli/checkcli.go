package checkcli

import (
	"context"
	"fmt"
	"io"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/ory-ext-authz/ory-ext-authz/internal/cli"
)

const (
	command   = "ory-ext-authz check"
	userAgent = "ory-ext-authz-check"
)

// Run runs `ory-ext-authz check [flags]`; args are the arguments after "check".
// It follows internal/cli's convention and returns the process exit code: 0
// when allowed, 1 when denied, 2 on error (bad flags, connection failure,
// gRPC error from Check, or an error_response, which Envoy also treats as an
// error). -h prints the reference to stdout and returns 0. stdin is not read.
//
// The report goes to stdout; problems before any request is sent (flags, TLS
// files) go to stderr.
func Run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, time.Now)
}

// run is Run with the clock injected, so that tests can pin "valid for another".
func run(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time) int {
	return cli.Exit(stderr, command, check(ctx, args, stdout, now))
}

// check sends the request and prints the report. A decision the report
// shows is a cli.Code.
func check(ctx context.Context, args []string, stdout io.Writer, now func() time.Time) error {
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	creds, err := o.tls.Credentials()
	if err != nil {
		return err
	}
	// Dialing is lazy: a bad target fails here, a refused connection fails the
	// Check below as Unavailable, which is how Envoy would see it too.
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(creds), grpc.WithUserAgent(userAgent))
	if err != nil {
		return fmt.Errorf("--addr %q: %w", o.addr, err)
	}
	defer func() { _ = conn.Close() }()

	id := requestID(o)
	req := buildCheckRequest(o, id, now())
	r := &report{o: o}
	r.printRequest(req, requestHeaders(o, id))

	callCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(callCtx, req)
	r.now = now() // after the call: remaining validity is counted from the answer
	exit := r.printResult(resp, err)

	if _, err := stdout.Write(r.redacted()); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return cli.Code(exit)
}
