// The HTTP transport to Ory: connection pool, CA file, body limit, trace
// propagation.

package ory

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/tracing"
)

// DefaultMaxBodyBytes bounds a whoami answer (the session with its identity).
const DefaultMaxBodyBytes = 1 << 20

// NewTransport returns an HTTP transport for Ory: unlike http.DefaultTransport it
// keeps enough idle connections per host for a busy ext_authz server. TLS
// trusts the system roots plus, when caFile is not empty, the PEM
// certificates in caFile.
func NewTransport(caFile string) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.IdleConnTimeout = 90 * time.Second
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ory: CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ory: CA file %s holds no PEM certificate", caFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

// limitBody makes a response body fail once it exceeds max bytes, so that an
// oversized answer becomes an error instead of a large allocation.
type limitBody struct {
	next http.RoundTripper
	max  int64
}

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if err == nil && resp.Body != nil {
		resp.Body = &limitedReader{rc: resp.Body, left: l.max}
	}
	return resp, err
}

// propagate passes the trace of the request's context on to Ory.
type propagate struct{ next http.RoundTripper }

func (p propagate) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	tracing.Propagator.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	return p.next.RoundTrip(r)
}

func (p propagate) CloseIdleConnections() {
	if c, ok := p.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// CloseIdleConnections passes http.Client.CloseIdleConnections on to the
// wrapped transport.
func (l limitBody) CloseIdleConnections() {
	if c, ok := l.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// errBodyTooLarge is returned by a body past its limit.
var errBodyTooLarge = errors.New("answer body too large")

type limitedReader struct {
	rc   io.ReadCloser
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One more byte tells a body of exactly max bytes from a larger one.
		var one [1]byte
		if n, _ := l.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedReader) Close() error { return l.rc.Close() }
