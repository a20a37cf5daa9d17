package authz

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// Tokenizer gets a JWT for a session from Ory.
type Tokenizer interface {
	Tokenize(ctx context.Context, cred credential.Credential, template string) (ory.Token, error)
}

// The context_extensions keys a route may set (ExtAuthzPerRoute.check_settings).
const (
	ContextTokenizeAs = "tokenize_as"
	ContextOnMissing  = "on_missing"
)

// maxTemplateLen bounds a template name from context_extensions.
const maxTemplateLen = 256

// Options configure a Server.
type Options struct {
	Tokenizer       Tokenizer
	Extractor       *credential.Extractor
	DefaultTemplate string
	OnMissing       OnMissing
	// LoginURL is where --on-missing=redirect sends browsers; New refuses
	// one that CheckLoginURL refuses.
	LoginURL string
	// StepUpURL is where a browser whose session is below a route's
	// require_aal is sent, with aal=aal2&return_to=<original URL> appended
	// to its query: Kratos' browser login flow
	// (<ory>/self-service/login/browser) or a custom login UI. Empty: such
	// browsers get the 403 API clients get. New refuses one that
	// CheckLoginURL refuses or that already has an aal.
	StepUpURL     string
	ExpiryLeeway  time.Duration
	NegativeTTL   time.Duration
	FetchTimeout  time.Duration
	CacheMaxBytes int64
	// PassClientAuthorization (--pass-client-authorization) lets an OK
	// answer without a session in on_missing=allow mode leave the client's
	// Authorization header as it is, for upstreams that take credentials of
	// their own there. Off, every OK answer without our JWT removes it, so
	// the upstream can trust that any Authorization it sees was set by
	// ory-ext-authz. A preflight removes it either way.
	PassClientAuthorization bool
	// Limits bound what a request may carry; zero fields take the defaults.
	Limits Limits
	// Routes, when set, is the route table (--routes): the rule a request
	// matches (method, host, path as Envoy sends them) lays its
	// tokenize_as, on_missing and pass_client_authorization over the
	// defaults above, and context_extensions then override those, field by
	// field; its require_aal, authorize and identity headers apply to the
	// session's answer. A path the table calls ambiguous is denied as
	// invalid (400).
	// New refuses a table CheckTable refuses; whoever reloads it must
	// check each new table the same way (serve: the Watcher's Accept).
	Routes RouteTable
	// Observer, when set, sees every decision (metrics).
	Observer Observer
	// Tracer, when set, traces every Check, continuing the caller's trace
	// from the gRPC metadata or from the request's traceparent. Nil means
	// no tracing and no cost.
	Tracer trace.Tracer
	// LogRate bounds denial and error log lines per second (burst 5x);
	// 0 means DefaultLogRate.
	LogRate float64
	Now     func() time.Time
	Logger  *slog.Logger
	// Shared, when set, is the cache tier shared by replicas (Redis, in
	// pkg/redistier): read on a miss before Ory, filled with every JWT
	// from Ory, and the path of invalidations to every replica.
	Shared SharedTier
}

// DefaultLogRate is how many denial and error lines a second get logged.
const DefaultLogRate = 20

// Observer sees the reason and duration of every Check.
type Observer interface {
	ObserveCheck(reason Reason, d time.Duration)
}

// Limits bound a request. Over a limit it is denied as invalid (400) and Ory
// is never called: parsing and hashing stay bounded whatever a client sends.
type Limits struct {
	Headers     int
	HeaderBytes int
	Cookies     int
}

func (l Limits) withDefaults() Limits {
	if l.Headers <= 0 {
		l.Headers = DefaultMaxRequestHeaders
	}
	if l.HeaderBytes <= 0 {
		l.HeaderBytes = DefaultMaxRequestHeaderBytes
	}
	if l.Cookies <= 0 {
		l.Cookies = DefaultMaxCookies
	}
	return l
}

// Server implements authv3.AuthorizationServer.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	extractor *credential.Extractor
	template  string
	onMissing OnMissing
	login     loginURL
	stepUp    loginURL
	// aalChecked holds, per slot of a key's hash, when a cached answer
	// below a route's require_aal was last checked again with Ory.
	aalChecked [aalRecheckSlots]atomic.Int64
	// plan is the plan of the route table last seen (currentPlan).
	plan      atomic.Pointer[plan]
	cache     *tokencache.Cache[fetchRequest, allowed]
	tokenizer Tokenizer
	limits    Limits
	log       *slog.Logger
	observer  Observer
	tracer    trace.Tracer
	// passClientAuth is Options.PassClientAuthorization.
	passClientAuth bool
	routes         RouteTable
	// logLimit bounds denial and error log lines; logDropped counts the
	// lines it dropped since the last one logged.
	shared      SharedTier
	now         func() time.Time
	stopSharing context.CancelFunc
	shareDone   chan struct{}
	logLimit    *rate.Limiter
	logDropped  atomic.Int64
}

// fetchRequest is what a cache miss needs to ask Ory.
type fetchRequest struct {
	cred     credential.Credential
	template string
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Tokenizer == nil || o.Extractor == nil {
		return nil, errors.New("authz: Tokenizer and Extractor are required")
	}
	if o.DefaultTemplate == "" {
		return nil, errors.New("authz: a default template is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		extractor: o.Extractor,
		template:  o.DefaultTemplate,
		onMissing: o.OnMissing,
		tokenizer: o.Tokenizer,
		limits:    o.Limits.withDefaults(),
		log:       o.Logger,
		observer:  o.Observer,
		tracer:    o.Tracer,

		passClientAuth: o.PassClientAuthorization,
		routes:         o.Routes,
		shared:         o.Shared,
		now:            o.Now,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if o.LogRate <= 0 {
		o.LogRate = DefaultLogRate
	}
	s.logLimit = rate.NewLimiter(rate.Limit(o.LogRate), int(5*o.LogRate))
	if s.onMissing == "" {
		s.onMissing = DefaultOnMissing
	}
	if o.LoginURL != "" {
		l, err := newLoginURL(o.LoginURL)
		if err != nil {
			return nil, fmt.Errorf("authz: login URL: %w", err)
		}
		s.login = l
	}
	if o.StepUpURL != "" {
		l, err := newStepUpURL(o.StepUpURL)
		if err != nil {
			return nil, fmt.Errorf("authz: step-up URL: %w", err)
		}
		s.stepUp = l
	}
	if o.Routes != nil {
		if err := CheckTable(o.Routes.Table(), s.login.set()); err != nil {
			return nil, fmt.Errorf("authz: route table: %w", err)
		}
	}
	cfg := tokencache.Config[fetchRequest, allowed]{
		MaxBytes: o.CacheMaxBytes,
		Leeway:   o.ExpiryLeeway,
		// Sessions filled on a miss get their first refresh anywhere from
		// a quarter to three quarters of their lifetime, so that sessions
		// filled together (a cold start, 1000 at once in make bench's
		// expiry scenario) do not refresh in one wave; later refreshes
		// keep that phase (jitter 0.05). See README, Performance.
		FirstJitter:   2.0 / 3,
		RefreshJitter: 0.05,
		NegativeTTL:   o.NegativeTTL,
		FetchTimeout:  o.FetchTimeout,
		Fetch:         s.fetch,
		IDs:           allowed.ids,
		Classify:      classify,
		Now:           o.Now,
		Logger:        o.Logger,
	}
	if o.Shared != nil {
		cfg.Shared = o.Shared
		cfg.EncodeValue = func(a allowed) []byte { return a.wire }
		cfg.DecodeValue = s.decodeShared
	}
	cache, err := tokencache.New(cfg)
	if err != nil {
		return nil, err
	}
	s.cache = cache
	if s.shared != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopSharing, s.shareDone = cancel, make(chan struct{})
		go func() {
			defer close(s.shareDone)
			s.subscribe(ctx)
		}()
	}
	return s, nil
}

// Close stops background refreshes and frees the cache.
func (s *Server) Close() {
	if s.stopSharing != nil {
		s.stopSharing()
		<-s.shareDone
	}
	s.cache.Close()
}

// InvalidateSession ends every cached JWT of the session before it returns.
func (s *Server) InvalidateSession(id string) { s.cache.InvalidateSession(id) }

// InvalidateIdentity ends every cached JWT of the identity's sessions.
func (s *Server) InvalidateIdentity(id string) { s.cache.InvalidateIdentity(id) }

// Purge ends every cached JWT and remembered 401.
func (s *Server) Purge() { s.cache.Purge() }

// CacheStats reports the token cache.
func (s *Server) CacheStats() tokencache.Stats { return s.cache.Stats() }

// WaitRefreshes waits for the background refreshes under way, for tests.
func (s *Server) WaitRefreshes() { s.cache.WaitRefreshes() }

// HeadersRead lists, lower-case, every request header Check reads when the
// session token header is tokenHeader. Envoy's ext_authz `allowed_headers`
// must let all of them through.
func HeadersRead(tokenHeader string) []string {
	e := credential.NewExtractor(nil, tokenHeader, 0)
	return append(e.HeadersRead(), headersRead...)
}

// headersRead are the headers Check reads besides the credential. origin
// and access-control-request-method tell a CORS preflight, as Envoy's
// jwt_authn does for bypass_cors_preflight.
var headersRead = []string{"accept", "access-control-request-method", "origin", "x-forwarded-proto", "x-request-id"}

// Check answers one CheckRequest.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.answer(ctx, newRequest(req))
}

// answer is the one decision path of both doors, Check and forward-auth:
// traced, observed and logged.
func (s *Server) answer(ctx context.Context, r request) (*authv3.CheckResponse, error) {
	var start time.Time
	if s.observer != nil {
		start = time.Now()
	}
	var span trace.Span
	if s.tracer != nil {
		ctx, span = s.startSpan(ctx, r)
	}
	resp, reason, key, err := s.check(ctx, r)
	if span != nil {
		span.SetAttributes(attribute.String("ory_ext_authz.decision", reason.Decision()), attribute.String("ory_ext_authz.reason", reason.String()))
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
	}
	if s.observer != nil {
		s.observer.ObserveCheck(reason, time.Since(start))
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "decision", slog.String("decision", reason.Decision()), slog.String("reason", reason.String()),
			slog.String("request_id", r.http.GetId()), slog.String("key", key.Short()))
	}
	return resp, err
}

// check answers one request: decide finds the answer or the failure, and
// respond turns a failure into its answer.
func (s *Server) check(ctx context.Context, r request) (*authv3.CheckResponse, Reason, tokencache.Key, error) {
	d := s.decide(ctx, r)
	if d.err != nil {
		resp, reason, err := s.respond(ctx, r, d.settings, d.key, d.err)
		return resp, reason, d.key, err
	}
	return d.resp, d.reason, d.key, nil
}

// decision is what decide found: an OK answer and its reason, or the
// failure that respond answers.
type decision struct {
	resp     *authv3.CheckResponse
	reason   Reason
	settings settings
	key      tokencache.Key
	err      error
}

// decide runs the request path: route settings (the route table, then
// context_extensions) and limits, the credential, the cache (and through
// it Ory).
func (s *Server) decide(ctx context.Context, r request) decision {
	st, err := s.routeSettings(r)
	d := decision{settings: st}
	if err == nil {
		err = s.checkLimits(r)
	}
	if err != nil {
		d.err = err
		return d
	}
	cred, err := s.extractor.Extract(r.headers)
	if err == nil && cred.Kind == credential.KindNone {
		if r.isPreflight() {
			// Browsers never send credentials on a preflight, and
			// jwt_authn's bypass_cors_preflight lets it on unverified:
			// any Authorization on it is the client's own, so it goes,
			// whatever --pass-client-authorization says.
			d.resp, d.reason = st.plan.okNoSession, ReasonPreflight
			return d
		}
		err = errNoCredential
	}
	if err != nil {
		d.err = err
		return d
	}
	d.key = tokencache.NewKey(st.template, uint8(cred.Kind), cred.Value)
	fr := fetchRequest{cred: cred, template: st.template}
	a, src, err := s.cache.Get(ctx, d.key, fr)
	if err != nil {
		d.err = err
		return d
	}
	d.resp, d.err = s.grant(r, st, a, src == tokencache.Hit)
	if errors.Is(d.err, errAALRequired) && src == tokencache.Hit && s.recheckAAL(d.key) {
		// The session may have stepped up since its JWT was cached: Kratos
		// upgrades a session in place (the same token), so a cached aal1
		// answer would send it back to step up until the JWT expires. Ask
		// Ory again, at most once a second per session (recheckAAL).
		sid, _, _ := a.meta()
		s.cache.InvalidateSession(string(sid))
		if a, src, err = s.cache.Get(ctx, d.key, fr); err != nil {
			d.err = err
			return d
		}
		d.resp, d.err = s.grant(r, st, a, src == tokencache.Hit)
	}
	d.reason = ReasonFresh
	if src == tokencache.Hit {
		d.reason = ReasonCached
	}
	return d
}

// checkLimits enforces s.limits on the request's headers.
func (s *Server) checkLimits(r request) error {
	n, size := 0, 0
	if len(r.headers.Map) > 0 {
		n = len(r.headers.Map)
		if n > s.limits.Headers {
			return &limitError{"header count", n, s.limits.Headers}
		}
		for k, v := range r.headers.Map {
			size += len(k) + len(v)
		}
	} else {
		n = len(r.headers.Raw)
		if n > s.limits.Headers {
			return &limitError{"header count", n, s.limits.Headers}
		}
		for _, h := range r.headers.Raw {
			size += len(h.GetKey()) + len(h.GetValue()) + len(h.GetRawValue())
		}
	}
	if size > s.limits.HeaderBytes {
		return &limitError{"header bytes", size, s.limits.HeaderBytes}
	}
	if c, ok := r.headers.Get("cookie"); ok {
		// Every pair is followed by a separator but the last one.
		if cookies := strings.Count(c, ";") + strings.Count(c, ",") + 1; cookies > s.limits.Cookies {
			return &limitError{"cookie count", cookies, s.limits.Cookies}
		}
	}
	return nil
}

// fetch runs on a cache miss, once per key however many requests wait.
func (s *Server) fetch(ctx context.Context, fr fetchRequest) (allowed, tokencache.Meta, error) {
	tok, err := s.tokenizer.Tokenize(ctx, fr.cred, fr.template)
	if err != nil {
		return allowed{}, tokencache.Meta{}, err
	}
	a, cost, err := buildAllowed(tok)
	if err == nil {
		a, err = withExtras(s.currentPlan(), a, tok.JWT)
	}
	if err != nil {
		return allowed{}, tokencache.Meta{}, err
	}
	return a, tokencache.Meta{Expiry: tok.Expiry, IssuedAt: tok.IssuedAt, Cost: cost}, nil
}

// decodeShared reads an answer from the shared tier and decodes its JWT
// for the route table in force, as a fetch does.
func (s *Server) decodeShared(b []byte) (allowed, error) {
	a, jwt, err := decodeAllowed(b)
	if err != nil {
		return allowed{}, err
	}
	return withExtras(s.currentPlan(), a, jwt)
}

// aalRecheckSlots and aalRecheckInterval bound how often a cached session
// below a route's require_aal is asked of Ory again: once per interval
// per slot of its key's hash, so that an aal1 session hammering an aal2
// route costs Ory at most one call a second. A collision of two keys in a
// slot only delays one of them to the next interval.
const (
	aalRecheckSlots    = 4096
	aalRecheckInterval = time.Second
)

// recheckAAL tells whether the cached answer of key may be checked again
// with Ory now, and if so records it.
func (s *Server) recheckAAL(key tokencache.Key) bool {
	slot := &s.aalChecked[binary.LittleEndian.Uint64(key[:8])%aalRecheckSlots]
	now := s.now().UnixNano()
	last := slot.Load()
	return now-last >= int64(aalRecheckInterval) && slot.CompareAndSwap(last, now)
}
