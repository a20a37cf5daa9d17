package checkcli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

const userAgent = "ory-ext-authz-check"

// Run runs `ory-ext-authz check [flags]`; args are the arguments after "check".
// It returns the process exit code: 0 when allowed, 1 when denied, 2 on error
// (bad flags, connection failure, gRPC error from Check, or an error_response,
// which Envoy also treats as an error). -h prints the reference to stdout and
// returns 0.
//
// The report goes to stdout; problems before any request is sent (flags, TLS
// files) go to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, time.Now)
}

// run is Run with the clock injected, so that tests can pin "valid for another".
func run(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time) int {
	o, exit, ok := parseFlags(args, stdout, stderr)
	if !ok {
		return exit
	}
	creds, err := o.transportCredentials()
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "ory-ext-authz check: %v\n", err)
		return exitError
	}
	// Dialing is lazy: a bad target fails here, a refused connection fails the
	// Check below as Unavailable, which is how Envoy would see it too.
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(creds), grpc.WithUserAgent(userAgent))
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "ory-ext-authz check: -addr %q: %v\n", o.addr, err)
		return exitError
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
	exit = r.printResult(resp, err)

	if _, err := stdout.Write(r.redacted()); err != nil {
		_, _ = fmt.Fprintf(stderr, "ory-ext-authz check: writing the report: %v\n", err)
		return exitError
	}
	return exit
}

// transportCredentials builds plaintext, TLS or mTLS credentials from the flags.
func (o *options) transportCredentials() (credentials.TransportCredentials, error) {
	if !o.tls {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: o.tlsServerName, // empty: gRPC uses the host of -addr
	}
	if o.tlsCA != "" {
		pem, err := os.ReadFile(o.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca %s: no PEM certificate found", o.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	// Without -tls-ca, RootCAs stays nil and Go verifies against the system roots.
	return credentials.NewTLS(cfg), nil
}
