package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// errNoCredential: the request carries no Ory credential at all.
var errNoCredential = errors.New("no Ory credential in the request")

// limitError is a request over one of the Limits.
type limitError struct {
	what       string
	got, limit int
}

func (e *limitError) Error() string {
	return fmt.Sprintf("request %s %d over the limit of %d", e.what, e.got, e.limit)
}

// routeError is a misconfigured route (bad context_extensions).
type routeError struct{ err error }

func (e *routeError) Error() string { return e.err.Error() }
func (e *routeError) Unwrap() error { return e.err }

var (
	wrapFalse = wrapperspb.Bool(false)
	wrapTrue  = wrapperspb.Bool(true)
	statusOK  = &rpcstatus.Status{Code: int32(codes.OK)}

	// okRemoveAuthorization lets a request through without a session: it
	// carries no JWT of ours, so it removes the client's Authorization and
	// the upstream only ever sees one that ory-ext-authz set. (Envoy runs
	// headers_to_remove after the sets; an answer with our JWT never
	// lists authorization there.)
	okRemoveAuthorization = &authv3.CheckResponse{
		Status:       statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{HeadersToRemove: []string{"authorization"}}},
	}
	// okUntouched lets a request through without any change: only with
	// --pass-client-authorization, in allow mode.
	okUntouched = &authv3.CheckResponse{
		Status:       statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
	denyUnauthenticated = denied(codes.Unauthenticated, http.StatusUnauthorized, "unauthenticated", "no valid Ory session")
	denyInvalid         = denied(codes.InvalidArgument, http.StatusBadRequest, "invalid_request", "the request headers exceed a limit")
	denyAmbiguousPath   = denied(codes.InvalidArgument, http.StatusBadRequest, "invalid_request", "the request path is ambiguous")
	denyAALRequired     = deniedBody(codes.PermissionDenied, http.StatusForbidden,
		`{"error":"aal_required","message":"this route requires a session at aal2: sign in with a second factor","required_aal":"aal2"}`)
	denyForbidden = denied(codes.PermissionDenied, http.StatusForbidden, "forbidden", "the Ory session does not satisfy this route, e.g. a second factor is required")
)

// respond turns every failure of Check into its answer and the reason it
// is counted under, as the outcome table says. It is the one place that
// builds denials and errors.
func (s *Server) respond(ctx context.Context, r request, st settings, key tokencache.Key, err error) (*authv3.CheckResponse, Reason, error) {
	o := outcomeOf(ctx, err)
	mode := st.mode
	switch o.answer {
	case answerMissing:
		resp, allowed := s.missing(r, mode, st)
		if allowed {
			return resp, ReasonAllowMissing, nil
		}
		s.logDenial(ctx, o.level, r, key, o.log, err, "on_missing", string(mode))
		return resp, o.reason, nil
	case answerForbidden:
		s.logDenial(ctx, o.level, r, key, o.log, err)
		var oe *ory.Error
		if errors.As(err, &oe) && mode == OnMissingRedirect && r.isBrowser() && oe.RedirectBrowserTo != "" {
			return redirect(oe.RedirectBrowserTo), o.reason, nil
		}
		return denyForbidden, o.reason, nil
	case answerStepUp:
		s.logDenial(ctx, o.level, r, key, o.log, err, "require_aal", string(st.requireAAL))
		if r.isBrowser() && s.stepUp.set() {
			return redirect(s.stepUp.to(r.originalURL())), o.reason, nil
		}
		return denyAALRequired, o.reason, nil
	case answerRule:
		s.logDenial(ctx, o.level, r, key, o.log, err, "rule", st.rule.String())
		return denied(codes.PermissionDenied, http.StatusForbidden, "forbidden", st.rule.String()+" denies the request"), o.reason, nil
	case answerInvalid:
		s.logDenial(ctx, o.level, r, key, o.log, err)
		if o.denial != nil {
			return o.denial, o.reason, nil
		}
		return denyInvalid, o.reason, nil
	}
	if o == &canceled {
		s.logDenial(ctx, o.level, r, key, o.log, ctx.Err())
		return nil, o.reason, status.FromContextError(ctx.Err()).Err()
	}
	s.logDenial(ctx, o.level, r, key, o.log, err)
	msg := o.message
	if msg == "" {
		msg = err.Error()
	}
	return nil, o.reason, status.Error(o.code, msg)
}

// logDenial logs a denial or an error, rate-limited so that an attack (a
// flood of invalid cookies) cannot flood the log; the next line that gets
// through says how many were dropped. Lines carry the request ids and a
// short hash of the cache key, never the credential.
func (s *Server) logDenial(ctx context.Context, level slog.Level, r request, key tokencache.Key, msg string, err error, attrs ...any) {
	if !s.log.Enabled(ctx, level) {
		return
	}
	if !s.logLimit.Allow() {
		s.logDropped.Add(1)
		return
	}
	attrs = append(attrs, "request_id", r.http.GetId(), "x_request_id", r.header("x-request-id"), "error", err.Error())
	if key != (tokencache.Key{}) {
		attrs = append(attrs, "key", key.Short())
	}
	if n := s.logDropped.Swap(0); n > 0 {
		attrs = append(attrs, "dropped_log_lines", n)
	}
	s.log.Log(ctx, level, msg, attrs...)
}

// missing answers a request without a valid session, by mode; allowed
// tells an OK answer. An OK answer removes every identity header name of
// the route table.
func (s *Server) missing(r request, mode OnMissing, st settings) (resp *authv3.CheckResponse, allowed bool) {
	p := st.plan
	if p == nil {
		p = emptyPlan
	}
	switch mode {
	case OnMissingAllow:
		if st.passClient {
			return p.okUntouched, true
		}
		return p.okNoSession, true
	case OnMissingRedirect:
		if r.isBrowser() && s.login.set() {
			return redirect(s.login.to(r.originalURL())), false
		}
	case OnMissingDeny:
	}
	return denyUnauthenticated, false
}

// CheckLoginURL tells why s cannot be the login URL of --on-missing=redirect,
// nil if it can: an absolute http(s) URL whose query url.ParseQuery reads in
// full and holds no return_to. The redirect appends return_to to the query
// as written, so a pair that Go's parser drops (Kratos reads return_to with
// it too) or a second return_to would silently change what the login page
// gets. The error never holds the URL's userinfo.
func CheckLoginURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse's error quotes the whole URL, userinfo included.
		return errors.New("not a valid URL")
	}
	shown := *u
	shown.User = nil
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", shown.String())
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("%q: the query is not one url.ParseQuery reads in full (%w): write pairs as k=v joined by & with valid %%-escapes", shown.String(), err)
	}
	if q.Has("return_to") {
		return fmt.Errorf("%q already has a return_to: ory-ext-authz appends return_to=<original URL> itself", shown.String())
	}
	return nil
}

// loginURL is the login URL split where return_to goes: the operator's
// URL stays byte for byte as written (query order, escapes, fragment), as
// url.Values.Encode (which sorts and re-escapes) would not keep it.
type loginURL struct {
	// head is everything before the fragment, with "?" or "&" and
	// "return_to=" appended; tail is "#fragment" or empty.
	head, tail string
}

// newLoginURL checks s as --login-url is checked and splits it.
func newLoginURL(s string) (loginURL, error) {
	if err := CheckLoginURL(s); err != nil {
		return loginURL{}, err
	}
	u, _ := url.Parse(s) // CheckLoginURL parsed it
	// url.Parse cuts the fragment off at the first "#", as this Cut does;
	// u tells whether what is left has a query, an empty one written as a
	// trailing "?" (ForceQuery), or none.
	head, frag, hasFrag := strings.Cut(s, "#")
	switch {
	case u.RawQuery != "":
		head += "&"
	case !u.ForceQuery:
		head += "?"
	} // else: an empty query written as a trailing "?"
	l := loginURL{head: head + "return_to="}
	if hasFrag {
		l.tail = "#" + frag
	}
	return l, nil
}

// CheckStepUpURL tells why s cannot be Options.StepUpURL, nil if it can:
// CheckLoginURL's rules, and no aal in its query (aal=aal2 is appended).
func CheckStepUpURL(s string) error {
	if err := CheckLoginURL(s); err != nil {
		return err
	}
	if u, _ := url.Parse(s); u.Query().Has("aal") {
		return errors.New("the URL already has an aal: ory-ext-authz appends aal=aal2 itself for a step-up")
	}
	return nil
}

// newStepUpURL checks s with CheckStepUpURL and splits it so that
// aal=aal2&return_to= is appended.
func newStepUpURL(s string) (loginURL, error) {
	if err := CheckStepUpURL(s); err != nil {
		return loginURL{}, err
	}
	l, err := newLoginURL(s)
	if err != nil {
		return loginURL{}, err
	}
	l.head = strings.TrimSuffix(l.head, "return_to=") + "aal=aal2&return_to="
	return l, nil
}

func (l loginURL) set() bool { return l.head != "" }

// to is the login URL with return_to=original, query-escaped.
func (l loginURL) to(original string) string {
	return l.head + url.QueryEscape(original) + l.tail
}

// denied builds a denial with a small JSON body.
func denied(code codes.Code, httpStatus int, errName, message string) *authv3.CheckResponse {
	return deniedBody(code, httpStatus, `{"error":"`+errName+`","message":"`+message+`"}`)
}

// deniedBody builds a denial with the JSON body given; the gRPC status
// message is the body's message.
func deniedBody(code codes.Code, httpStatus int, body string) *authv3.CheckResponse {
	var msg struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal([]byte(body), &msg)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: msg.Message},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: []*corev3.HeaderValueOption{
				header("content-type", "application/json"),
				header("cache-control", "no-store"),
			},
			Body: body,
		}},
	}
}

// redirect sends a browser elsewhere with a 303.
func redirect(location string) *authv3.CheckResponse {
	if u, err := url.Parse(location); err != nil || !u.IsAbs() {
		return denyUnauthenticated
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated), Message: "redirect to login"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_SeeOther},
			Headers: []*corev3.HeaderValueOption{
				header("location", location),
				header("cache-control", "no-store"),
			},
		}},
	}
}
