package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

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
	LoginURL      string
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
	cache     *tokencache.Cache[fetchRequest, allowed]
	tokenizer Tokenizer
	limits    Limits
	log       *slog.Logger
	observer  Observer
	tracer    trace.Tracer
	// passClientAuth is Options.PassClientAuthorization.
	passClientAuth bool
	// logLimit bounds denial and error log lines; logDropped counts the
	// lines it dropped since the last one logged.
	logLimit   *rate.Limiter
	logDropped atomic.Int64
}

// fetchRequest is what a cache miss needs to ask Ory.
type fetchRequest struct {
	cred     credential.Credential
	template string
}

// allowed is the OK answer of a session, encoded once when the JWT is
// fetched: status OK, the header mutations and dynamic_metadata
// {identity_id, session_id, aal}. The cache keeps only these bytes (a third
// of the memory of the message trees). A check answers with a CheckResponse
// whose one real field is dynamic_metadata {cached} and whose unknown fields
// are these bytes: marshalling copies them as they are, and a protobuf
// parser (Envoy's) merges the two dynamic_metadata occurrences.
type allowed []byte

// response is the answer of a check; hit tells a cache hit from a request
// that waited on Ory. One small allocation, whatever the answer holds.
func (a allowed) response(hit bool) *authv3.CheckResponse {
	meta := metaFresh
	if hit {
		meta = metaCached
	}
	r := &authv3.CheckResponse{DynamicMetadata: meta}
	r.ProtoReflect().SetUnknown(protoreflect.RawFields(a))
	return r
}

// ids returns the session_id and identity_id of the answer's
// dynamic_metadata, as strings sharing a's memory (a is never written after
// it was encoded). The cache asks for them only while invalidation records
// are held, instead of keeping copies in every entry. It walks the encoding
// without allocating; the ok_response (the JWT) is skipped in one step.
func (a allowed) ids() (sid, iid string) {
	md, _ := bytesField(a, fieldDynamicMetadata)
	for rest := md; ; {
		var entry []byte
		if entry, rest = bytesField(rest, fieldStructFields); entry == nil {
			return sid, iid
		}
		key, _ := bytesField(entry, fieldEntryKey)
		val, _ := bytesField(entry, fieldEntryValue)
		str, _ := bytesField(val, fieldValueString)
		switch string(key) {
		case "session_id":
			sid = bytesString(str)
		case "identity_id":
			iid = bytesString(str)
		}
	}
}

// bytesField finds the first length-delimited field numbered num of the
// encoded message b: its value (non-nil, maybe empty) and what follows it.
// It returns nil at the end of b or at a malformed field.
func bytesField(b []byte, num protowire.Number) (field, rest []byte) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, nil
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return nil, nil
			}
			return v[:len(v):len(v)], b[l:]
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return nil, nil
		}
		b = b[l:]
	}
	return nil, nil
}

func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// The field numbers ids walks, from the descriptors.
var (
	fieldDynamicMetadata = (&authv3.CheckResponse{}).ProtoReflect().Descriptor().Fields().ByName("dynamic_metadata").Number()
	fieldStructFields    = (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").Number()
	fieldEntryKey        = (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").MapKey().Number()
	fieldEntryValue      = (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").MapValue().Number()
	fieldValueString     = (&structpb.Value{}).ProtoReflect().Descriptor().Fields().ByName("string_value").Number()
)

// The per-answer part of the dynamic metadata; shared, never modified.
var (
	metaCached = &structpb.Struct{Fields: map[string]*structpb.Value{"cached": structpb.NewBoolValue(true)}}
	metaFresh  = &structpb.Struct{Fields: map[string]*structpb.Value{"cached": structpb.NewBoolValue(false)}}
)

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
	cache, err := tokencache.New(tokencache.Config[fetchRequest, allowed]{
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
	})
	if err != nil {
		return nil, err
	}
	s.cache = cache
	return s, nil
}

// Close stops background refreshes and frees the cache.
func (s *Server) Close() { s.cache.Close() }

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
	var start time.Time
	if s.observer != nil {
		start = time.Now()
	}
	var span trace.Span
	if s.tracer != nil {
		ctx, span = s.startSpan(ctx, req)
	}
	resp, reason, key, err := s.check(ctx, req)
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
			slog.String("request_id", req.GetAttributes().GetRequest().GetHttp().GetId()), slog.String("key", key.Short()))
	}
	return resp, err
}

func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, Reason, tokencache.Key, error) {
	r := newRequest(req)
	template, mode, err := s.routeSettings(req.GetAttributes().GetContextExtensions())
	if err == nil {
		err = s.checkLimits(r)
	}
	var key tokencache.Key
	if err != nil {
		resp, reason, err := s.respond(ctx, r, mode, key, err)
		return resp, reason, key, err
	}
	cred, err := s.extractor.Extract(r.headers)
	if err == nil && cred.Kind == credential.KindNone {
		if r.isPreflight() {
			// Browsers never send credentials on a preflight, and
			// jwt_authn's bypass_cors_preflight lets it on unverified:
			// any Authorization on it is the client's own, so it goes,
			// whatever --pass-client-authorization says.
			return okRemoveAuthorization, ReasonPreflight, key, nil
		}
		err = errNoCredential
	}
	if err != nil {
		resp, reason, err := s.respond(ctx, r, mode, key, err)
		return resp, reason, key, err
	}
	key = tokencache.NewKey(template, uint8(cred.Kind), cred.Value)
	a, src, err := s.cache.Get(ctx, key, fetchRequest{cred: cred, template: template})
	if err != nil {
		resp, reason, err := s.respond(ctx, r, mode, key, err)
		return resp, reason, key, err
	}
	if src == tokencache.Hit {
		return a.response(true), ReasonCached, key, nil
	}
	return a.response(false), ReasonFresh, key, nil
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

func (s *Server) routeSettings(ext map[string]string) (string, OnMissing, error) {
	template, mode := s.template, s.onMissing
	if len(ext) == 0 {
		return template, mode, nil
	}
	if m, ok := ext[ContextOnMissing]; ok {
		parsed, err := ParseOnMissing(m)
		if err != nil {
			return template, mode, &routeError{fmt.Errorf("context extension %s: %w", ContextOnMissing, err)}
		}
		if parsed == OnMissingRedirect && !s.login.set() {
			return template, mode, &routeError{fmt.Errorf("context extension %s=redirect needs --login-url", ContextOnMissing)}
		}
		mode = parsed
	}
	if t, ok := ext[ContextTokenizeAs]; ok {
		if t == "" || len(t) > maxTemplateLen {
			return template, mode, &routeError{fmt.Errorf("context extension %s: empty or longer than %d bytes", ContextTokenizeAs, maxTemplateLen)}
		}
		template = t
	}
	return template, mode, nil
}

// fetch runs on a cache miss, once per key however many requests wait.
func (s *Server) fetch(ctx context.Context, fr fetchRequest) (allowed, tokencache.Meta, error) {
	tok, err := s.tokenizer.Tokenize(ctx, fr.cred, fr.template)
	if err != nil {
		return nil, tokencache.Meta{}, err
	}
	a, cost, err := buildAllowed(tok)
	if err != nil {
		return nil, tokencache.Meta{}, err
	}
	return a, tokencache.Meta{Expiry: tok.Expiry, IssuedAt: tok.IssuedAt, Cost: cost}, nil
}

// classify tells the cache which failures to remember.
func classify(err error) tokencache.Outcome {
	switch {
	case errors.Is(err, ory.ErrUnauthenticated):
		return tokencache.Negative
	case errors.Is(err, ory.ErrForbidden), errors.Is(err, ory.ErrBadTemplate),
		errors.Is(err, ory.ErrNoExpiry), errors.Is(err, ory.ErrExpired):
		return tokencache.Final
	}
	return tokencache.Transient
}

// buildAllowed encodes the OK answer of a token; its cost is its size.
func buildAllowed(tok ory.Token) (allowed, int64, error) {
	ok := &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{{
			Header: &corev3.HeaderValue{Key: "authorization", Value: "Bearer " + tok.JWT},
			// Both fields: Envoy versions differ in which one they honour,
			// and an appended header would let a client's own
			// Authorization reach the upstream.
			Append:       wrapFalse,
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
	for _, c := range tok.SetCookies {
		ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: "set-cookie", Value: c},
			Append:       wrapTrue,
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	wire, err := proto.Marshal(&authv3.CheckResponse{
		Status:       statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"identity_id": structpb.NewStringValue(tok.IdentityID),
			"session_id":  structpb.NewStringValue(tok.SessionID),
			"aal":         structpb.NewStringValue(tok.AAL),
		}},
	})
	if err != nil {
		return nil, 0, fmt.Errorf("encode the answer: %w", err)
	}
	return allowed(wire), int64(cap(wire)), nil
}

// request is the part of a CheckRequest the answers depend on.
type request struct {
	http    *authv3.AttributeContext_HttpRequest
	headers credential.Headers
}

func newRequest(req *authv3.CheckRequest) request {
	h := req.GetAttributes().GetRequest().GetHttp()
	return request{http: h, headers: credential.Headers{Map: h.GetHeaders(), Raw: h.GetHeaderMap().GetHeaders()}}
}

func (r request) header(name string) string {
	v, _ := r.headers.Get(name)
	return v
}

// isPreflight tells a CORS preflight, which browsers send without cookies:
// OPTIONS with Origin and Access-Control-Request-Method, the test of
// Envoy's jwt_authn (bypass_cors_preflight), method compared as it does,
// case-sensitively. Anything less is an ordinary request, so that a bare
// OPTIONS cannot skip the session check.
func (r request) isPreflight() bool {
	return r.http.GetMethod() == "OPTIONS" && r.header("origin") != "" && r.header("access-control-request-method") != ""
}

// isBrowser tells a request from a browser navigating to a page.
func (r request) isBrowser() bool {
	return strings.Contains(strings.ToLower(r.header("accept")), "text/html")
}

// originalURL rebuilds the URL the client asked for, for return_to.
func (r request) originalURL() string {
	scheme := r.header("x-forwarded-proto")
	if i := strings.IndexByte(scheme, ','); i >= 0 {
		scheme = scheme[:i]
	}
	scheme = strings.TrimSpace(scheme)
	if scheme != "http" && scheme != "https" {
		scheme = r.http.GetScheme()
	}
	if scheme == "" {
		scheme = "http"
	}
	host := r.http.GetHost()
	if host == "" {
		host = r.header(":authority")
	}
	path := r.http.GetPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return scheme + "://" + host + path
}
