// The client: options, the in-flight cap, the shared 429 pause, Tokenize.

package ory

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	client "github.com/ory/client-go"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
)

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
	// SharedPause, when set, shares the pause a 429 asks for with every
	// replica (pkg/redistier over Redis): the replica that got the 429
	// records it there, every replica reads it before calling Ory. Ory
	// Network rate-limits the project, not one replica. Its failures are
	// ignored: each replica then pauses on its own 429s only.
	SharedPause SharedPause
	// Now is the clock; nil means time.Now.
	Now       func() time.Time
	UserAgent string
}

// pauseReadRetry is how long a failed read of the shared pause is not
// tried again.
const pauseReadRetry = time.Second

// SharedPause is a pause of every replica's calls to Ory (*redistier.Tier).
type SharedPause interface {
	Pause(ctx context.Context, until time.Time) error
	PausedUntil(ctx context.Context) (time.Time, error)
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
	sharedPause  SharedPause
	// pauseReadFailed (unix nanos) is when reading the shared pause last
	// failed.
	pauseReadFailed atomic.Int64
}

// maxBackoff caps a Retry-After, so that a bogus value cannot switch the
// server off for long.
const maxBackoff = time.Minute

// defaultBackoff is the pause after a 429 without Retry-After.
const defaultBackoff = time.Second

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
	c := &Client{api: client.NewAPIClient(cfg), hc: &limited, timeout: o.Timeout, maxJWT: o.MaxJWTBytes, now: o.Now, observer: o.Observer, tracer: o.Tracer, started: time.Now(), sharedPause: o.SharedPause}
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
	if now := c.now().UnixNano(); c.sharedPause != nil && c.backoffUntil.Load() < now && now-c.pauseReadFailed.Load() >= int64(pauseReadRetry) {
		// Another replica's 429 pauses this one too; learnt once, the
		// pause is kept here and Redis is not asked again until it ends.
		// A failed read is not retried for pauseReadRetry, so that a sick
		// Redis costs the calls to Ory one --redis-timeout, not one each.
		until, err := c.sharedPause.PausedUntil(ctx)
		switch {
		case err != nil:
			c.pauseReadFailed.Store(now)
		case until.After(c.now()):
			c.backoffUntil.Store(until.UnixNano())
		}
	}
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
		until := c.now().Add(d)
		c.backoffUntil.Store(until.UnixNano())
		if c.sharedPause != nil {
			_ = c.sharedPause.Pause(context.WithoutCancel(ctx), until)
		}
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
