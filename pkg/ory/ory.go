// Package ory asks Ory for a JWT of a session: GET
// /sessions/whoami?tokenize_as=<template> through github.com/ory/client-go,
// and sorts every answer into a small set of error classes that the authz
// package maps to Envoy answers.
package ory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	client "github.com/ory/client-go"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tracing"
)

// The error classes. Every error of Tokenize matches exactly one with errors.Is.
var (
	// ErrUnauthenticated: Ory answered 401, no valid session for the credential.
	ErrUnauthenticated = errors.New("no valid session")
	// ErrForbidden: Ory answered 403, the session exists but, for example, its
	// AAL is too low. Its *Error carries Kratos' redirect_browser_to.
	ErrForbidden = errors.New("session not sufficient")
	// ErrBadTemplate: Ory answered 400, the template is unknown or no tokenizer
	// is configured. A configuration error, not a client's fault.
	ErrBadTemplate = errors.New("tokenizer template rejected")
	// ErrUnavailable: Ory could not be reached, timed out, answered 5xx, 429,
	// something unexpected, or an answer that cannot be used. Transient.
	ErrUnavailable = errors.New("ory unavailable")
	// ErrNoExpiry: the tokenized JWT has no exp claim, it would never expire.
	ErrNoExpiry = errors.New("tokenized JWT has no exp claim")
	// ErrExpired: the tokenized JWT is already expired when it arrives; the
	// template's ttl is missing or too short.
	ErrExpired = errors.New("tokenized JWT is already expired")
)

// Error is the detailed error of Tokenize. It matches its Class with errors.Is.
// It never holds the credential or the JWT.
type Error struct {
	Class error
	// Status is Ory's HTTP status code, 0 when there was no answer.
	Status int
	// ErrorID is Kratos' error.id, e.g. session_aal2_required.
	ErrorID string
	// RedirectBrowserTo is where Kratos wants a browser to go (403 answers).
	RedirectBrowserTo string
	// RetryAfter is the Retry-After of a 429 or 503, 0 if absent.
	RetryAfter time.Duration
	// Reason is a short description safe to log.
	Reason string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Class.Error())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is match both the class and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Class}
	}
	return []error{e.Class, e.Err}
}

// Token is a JWT minted by Ory for a session, with what the cache needs.
type Token struct {
	JWT        string
	Expiry     time.Time
	IssuedAt   time.Time
	SessionID  string
	IdentityID string
	AAL        string
	// SetCookies are the Set-Cookie values of Ory's answer (cookie refresh).
	SetCookies []string
}

// Options configure a Client.
type Options struct {
	// BaseURL is Ory's public base URL.
	BaseURL string
	// HTTPClient is used for every call; nil builds one with Transport.
	HTTPClient *http.Client
	// Timeout bounds one whoami call.
	Timeout time.Duration
	// MaxJWTBytes: a longer tokenized JWT is refused (ErrUnavailable).
	MaxJWTBytes int
	// MaxBodyBytes bounds the answer read from Ory.
	MaxBodyBytes int64
	// Observer, when set, sees every whoami call (metrics).
	Observer Observer
	// Tracer, when set, makes a client span of each whoami call and passes
	// the trace on to Ory (traceparent). Nil: no spans, no trace headers.
	Tracer trace.Tracer
	// MaxInflight caps concurrent whoami calls; a call over the cap waits
	// up to a quarter of Timeout for a slot, then fails with ErrUnavailable.
	// 0 means no cap.
	MaxInflight int
	// Now is the clock; nil means time.Now.
	Now       func() time.Time
	UserAgent string
}

// Client calls Ory. It is safe for concurrent use.
type Client struct {
	observer Observer
	tracer   trace.Tracer
	api      *client.APIClient
	hc       *http.Client
	timeout  time.Duration
	maxJWT   int
	now      func() time.Time
	// inflight is a semaphore of MaxInflight slots; nil without a cap.
	inflight chan struct{}
	// answered is when Ory last answered a call, as nanos since started
	// (monotonic): while it keeps answering, a miss over the cap waits for
	// a slot.
	answered        atomic.Int64
	started         time.Time
	calls, failures atomic.Uint64
	// backoffUntil (unix nanos) is set by a 429 or a 503 with Retry-After:
	// until then calls fail at once instead of adding to Ory's load.
	backoffUntil atomic.Int64
}

// Observer sees each whoami call: its code label (one of CodeLabels) and
// how long it took.
type Observer interface {
	ObserveOryRequest(code string, d time.Duration)
}

// CodeLabels are the fixed values of a call's code label: the HTTP status
// for the statuses whoami answers, a class for others, "error" for no answer,
// "timeout", and "rejected" for a call not sent (in-flight cap, Retry-After).
var CodeLabels = []string{"200", "400", "401", "403", "404", "429", "500", "502", "503", "504", "2xx", "3xx", "4xx", "5xx", "error", "timeout", "rejected"}

func codeLabel(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		if err == nil {
			return "200"
		}
		return "error"
	}
	switch e.Status {
	case 0:
		if e.Reason == "timeout" {
			return "timeout"
		}
		return "error"
	case 200, 400, 401, 403, 404, 429, 500, 502, 503, 504:
		return strconv.Itoa(e.Status)
	}
	if e.Status >= 200 && e.Status < 600 {
		return strconv.Itoa(e.Status/100) + "xx"
	}
	return "error"
}

// maxBackoff caps a Retry-After, so that a bogus value cannot switch the
// server off for long.
const maxBackoff = time.Minute

// defaultBackoff is the pause after a 429 without Retry-After.
const defaultBackoff = time.Second

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

// New builds a Client.
func New(o Options) (*Client, error) {
	if o.BaseURL == "" {
		return nil, errors.New("ory: base URL is required")
	}
	// The errors below never wrap url.Parse's error nor quote the URL: both
	// would repeat user info.
	if u, err := url.Parse(o.BaseURL); err != nil {
		return nil, errors.New("ory: base URL is not a URL")
	} else if u.User != nil {
		// net/http would send it as "Authorization: Basic" on every whoami
		// call, which Ory does not read, and errors quoting the URL would
		// carry it.
		return nil, errors.New("ory: base URL must not hold user info (user:password@): whoami takes no basic auth")
	}
	if o.Timeout <= 0 {
		return nil, errors.New("ory: timeout must be positive")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	hc := o.HTTPClient
	if hc == nil {
		t, err := NewTransport("")
		if err != nil {
			return nil, err
		}
		hc = &http.Client{Transport: t}
	}
	// client-go reads the whole body; bound it so a hostile or broken Ory
	// cannot make us buffer without limit. Never follow redirects: whoami does
	// not redirect, and a redirect would carry the credential elsewhere.
	limited := *hc
	base := limited.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	limited.Transport = limitBody{next: base, max: o.MaxBodyBytes}
	if o.Tracer != nil {
		limited.Transport = propagate{next: limited.Transport}
	}
	limited.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	cfg := client.NewConfiguration()
	cfg.Servers = client.ServerConfigurations{{URL: strings.TrimSuffix(o.BaseURL, "/")}}
	cfg.OperationServers = nil
	cfg.HTTPClient = &limited
	if o.UserAgent != "" {
		cfg.UserAgent = o.UserAgent
	}
	c := &Client{api: client.NewAPIClient(cfg), hc: &limited, timeout: o.Timeout, maxJWT: o.MaxJWTBytes, now: o.Now, observer: o.Observer, tracer: o.Tracer, started: time.Now()}
	if o.MaxInflight > 0 {
		c.inflight = make(chan struct{}, o.MaxInflight)
	}
	return c, nil
}

// Close releases idle connections to Ory.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// acquire takes a whoami slot. When all are taken it waits for one as long
// as Ory keeps answering: a burst of misses on a healthy Ory (a cold start,
// a restart under load) drains, however long it takes within the fetch's
// deadline, while with a stuck Ory (no answer for a quarter of the whoami
// timeout) the calls over the cap fail at once. Nothing queues without
// bound: every wait ends at the fetch's deadline.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.inflight <- struct{}{}:
		return nil
	default:
	}
	patience := c.timeout / 4
	t := time.NewTimer(patience)
	defer t.Stop()
	for {
		select {
		case c.inflight <- struct{}{}:
			return nil
		case <-t.C:
			// answered is 0 until Ory first answers.
			if a := c.answered.Load(); a != 0 {
				if since := time.Since(c.started) - time.Duration(a); since < patience {
					t.Reset(patience - since)
					continue
				}
			}
			return &Error{Class: ErrUnavailable, Reason: fmt.Sprintf("%d whoami calls in flight (--ory-max-inflight) and no answer from Ory within %s", cap(c.inflight), patience)}
		case <-ctx.Done():
			return &Error{Class: ErrUnavailable, Reason: fmt.Sprintf("%d whoami calls in flight (--ory-max-inflight); no slot before the deadline", cap(c.inflight)), Err: ctx.Err()}
		}
	}
}

func (c *Client) observe(code string, d time.Duration) {
	if c.observer != nil {
		c.observer.ObserveOryRequest(code, d)
	}
}

// Stats are the whoami calls sent to Ory since start and how many of them
// did not end in a JWT (a 401 included).
func (c *Client) Stats() (calls, errors uint64) { return c.calls.Load(), c.failures.Load() }

// Inflight is the number of whoami calls in flight (0 without a cap).
func (c *Client) Inflight() int { return len(c.inflight) }

// Tokenize asks Ory for a JWT of the session behind cred, minted by template.
// Only the credential is sent: a session token as X-Session-Token, cookies
// as a Cookie header holding only the session cookies.
func (c *Client) Tokenize(ctx context.Context, cred credential.Credential, template string) (Token, error) {
	if until := c.backoffUntil.Load(); until != 0 {
		if left := time.Duration(until - c.now().UnixNano()); left > 0 {
			c.observe("rejected", 0)
			return Token{}, &Error{Class: ErrUnavailable, Reason: fmt.Sprintf("Ory asked to retry after %s; not calling it until then", left.Round(time.Millisecond))}
		}
	}
	if c.inflight != nil {
		if err := c.acquire(ctx); err != nil {
			c.observe("rejected", 0)
			return Token{}, err
		}
		defer func() { <-c.inflight }()
	}
	c.calls.Add(1)
	var span trace.Span
	if c.tracer != nil {
		ctx, span = c.tracer.Start(ctx, "ory whoami", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("ory.tokenize_as", template), attribute.String("ory_ext_authz.credential_kind", cred.Kind.String())))
	}
	start := time.Now()
	tok, err := c.tokenize(ctx, cred, template)
	code := codeLabel(err)
	c.observe(code, time.Since(start))
	if span != nil {
		span.SetAttributes(attribute.String("ory_ext_authz.ory_code", code))
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
	}
	if err != nil {
		c.failures.Add(1)
	}
	var e *Error
	if errors.As(err, &e) && (e.Status == http.StatusTooManyRequests || (e.Status == http.StatusServiceUnavailable && e.RetryAfter > 0)) {
		// Ory's rate limits apply to the project (and to us as one client),
		// not to one session: back off globally.
		d := min(e.RetryAfter, maxBackoff)
		if d <= 0 {
			d = defaultBackoff
		}
		c.backoffUntil.Store(c.now().Add(d).UnixNano())
	}
	return tok, err
}

func (c *Client) tokenize(ctx context.Context, cred credential.Credential, template string) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req := c.api.FrontendAPI.ToSession(ctx).TokenizeAs(template)
	switch cred.Kind {
	case credential.KindSessionToken:
		req = req.XSessionToken(cred.Value)
	case credential.KindCookie:
		req = req.Cookie(cred.Value)
	default:
		return Token{}, &Error{Class: ErrUnauthenticated, Reason: "no credential"}
	}
	sess, resp, err := req.Execute()
	if resp != nil {
		c.answered.Store(int64(time.Since(c.started)))
	}
	if resp == nil {
		return Token{}, transportError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Token{}, statusError(resp)
	}
	if err != nil {
		return Token{}, &Error{Class: ErrUnavailable, Status: resp.StatusCode, Reason: "unreadable answer", Err: err}
	}
	return c.token(sess, resp)
}

func (c *Client) token(sess *client.Session, resp *http.Response) (Token, error) {
	if sess.Active != nil && !*sess.Active {
		return Token{}, &Error{Class: ErrUnauthenticated, Status: resp.StatusCode, Reason: "session is not active"}
	}
	raw := sess.GetTokenized()
	if raw == "" {
		return Token{}, &Error{Class: ErrUnavailable, Status: resp.StatusCode, Reason: "answer has no tokenized JWT"}
	}
	if c.maxJWT > 0 && len(raw) > c.maxJWT {
		return Token{}, &Error{Class: ErrUnavailable, Status: resp.StatusCode, Reason: fmt.Sprintf("tokenized JWT of %d bytes exceeds %d", len(raw), c.maxJWT)}
	}
	claims, err := parseClaims(raw)
	if err != nil {
		return Token{}, &Error{Class: ErrUnavailable, Status: resp.StatusCode, Reason: "tokenized value is not a JWT", Err: err}
	}
	if claims.Expiry == nil {
		return Token{}, &Error{Class: ErrNoExpiry, Status: resp.StatusCode}
	}
	t := Token{
		JWT:        raw,
		Expiry:     claims.Expiry.Time(),
		SessionID:  sess.Id,
		IdentityID: claims.Subject,
		AAL:        string(sess.GetAuthenticatorAssuranceLevel()),
		SetCookies: resp.Header.Values("Set-Cookie"),
	}
	if claims.IssuedAt != nil {
		t.IssuedAt = claims.IssuedAt.Time()
	}
	if id := sess.GetIdentity().Id; id != "" {
		t.IdentityID = id
	}
	if t.SessionID == "" {
		t.SessionID = claims.SessionID
	}
	if now := c.now(); !t.Expiry.After(now) {
		return Token{}, &Error{Class: ErrExpired, Status: resp.StatusCode,
			Reason: fmt.Sprintf("exp %s is %s in the past; set a ttl on the template", t.Expiry.UTC().Format(time.RFC3339), now.Sub(t.Expiry).Round(time.Second))}
	}
	return t, nil
}

type claims struct {
	jwt.Claims
	SessionID string `json:"sid"`
}

// signatureAlgorithms are the algorithms a tokenizer JWKS may hold. The
// signature is not verified here (the JWT comes straight from Ory over the
// connection we opened), the list only lets go-jose parse the header.
var signatureAlgorithms = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.HS256, jose.HS384, jose.HS512, jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512,
}

func parseClaims(raw string) (claims, error) {
	var cl claims
	tok, err := jwt.ParseSigned(raw, signatureAlgorithms)
	if err != nil {
		return cl, err
	}
	err = tok.UnsafeClaimsWithoutVerification(&cl)
	return cl, err
}

func transportError(ctx context.Context, err error) error {
	reason := "request failed"
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		reason = "timeout"
	case errors.Is(ctx.Err(), context.Canceled):
		reason = "canceled"
	}
	return &Error{Class: ErrUnavailable, Reason: reason, Err: err}
}

// kratosError is the part of a Kratos error answer we use.
type kratosError struct {
	Error struct {
		ID     string `json:"id"`
		Reason string `json:"reason"`
	} `json:"error"`
	RedirectBrowserTo string `json:"redirect_browser_to"`
}

func statusError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode}
	var body kratosError
	if resp.Body != nil {
		if b, err := io.ReadAll(resp.Body); err == nil {
			_ = json.Unmarshal(b, &body) // a body that is not JSON keeps the status code only
		}
	}
	e.ErrorID = body.Error.ID
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		e.Class = ErrUnauthenticated
	case http.StatusForbidden:
		e.Class = ErrForbidden
		e.RedirectBrowserTo = body.RedirectBrowserTo
	case http.StatusBadRequest:
		e.Class = ErrBadTemplate
		e.Reason = truncate(body.Error.Reason, 200)
	default:
		// 429, 5xx and anything unexpected (3xx, other 4xx) are Ory's trouble.
		e.Class = ErrUnavailable
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e
}

// retryAfter parses a Retry-After value: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
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
