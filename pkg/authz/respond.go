package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
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

	// okUntouched lets a request through without any change.
	okUntouched = &authv3.CheckResponse{
		Status:       statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
	denyUnauthenticated = denied(codes.Unauthenticated, http.StatusUnauthorized, "unauthenticated", "no valid Ory session")
	denyInvalid         = denied(codes.InvalidArgument, http.StatusBadRequest, "invalid_request", "the request headers exceed a limit")
	denyForbidden       = denied(codes.PermissionDenied, http.StatusForbidden, "forbidden", "the Ory session does not satisfy this route, e.g. a second factor is required")
)

// respond turns every failure of Check into its answer. It is the one place
// that decides denials and errors.
func (s *Server) respond(ctx context.Context, r request, mode config.OnMissing, key tokencache.Key, err error) (*authv3.CheckResponse, error) {
	log := s.log.With("request_id", r.http.GetId(), "x_request_id", r.header("x-request-id"))
	if key != (tokencache.Key{}) {
		log = log.With("key", key.Short())
	}
	var oe *ory.Error
	var re *routeError
	var le *limitError
	switch {
	case errors.As(err, &le):
		log.Info("request denied as invalid", "reason", err.Error())
		return denyInvalid, nil
	case errors.Is(err, errNoCredential), errors.Is(err, credential.ErrTooLarge), errors.Is(err, ory.ErrUnauthenticated):
		log.Info("no valid session", "on_missing", string(mode), "reason", err.Error())
		return s.missing(r, mode), nil
	case errors.Is(err, ory.ErrForbidden):
		log.Info("session refused by Ory", "reason", err.Error())
		if errors.As(err, &oe) && mode == config.OnMissingRedirect && r.isBrowser() && oe.RedirectBrowserTo != "" {
			return redirect(oe.RedirectBrowserTo), nil
		}
		return denyForbidden, nil
	case errors.As(err, &re):
		log.Error("misconfigured route", "error", err.Error())
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ory.ErrBadTemplate):
		log.Error("Ory rejected the tokenizer template: is it configured under session.whoami.tokenizer.templates?", "error", err.Error())
		return nil, status.Error(codes.FailedPrecondition, "Ory rejected the tokenizer template")
	case errors.Is(err, ory.ErrExpired):
		log.Error("Ory minted an already expired JWT: give the tokenizer template a ttl", "error", err.Error())
		return nil, status.Error(codes.Internal, "Ory minted an expired JWT")
	case errors.Is(err, ory.ErrNoExpiry):
		log.Error("Ory minted a JWT without exp: give the tokenizer template a ttl", "error", err.Error())
		return nil, status.Error(codes.Internal, "Ory minted a JWT without exp")
	case ctx.Err() != nil:
		// The caller (Envoy) gave up; its own deadline or cancellation.
		log.Warn("check abandoned by the caller", "error", ctx.Err().Error())
		return nil, status.FromContextError(ctx.Err()).Err()
	default:
		log.Warn("Ory unavailable", "error", err.Error())
		return nil, status.Error(codes.Unavailable, "Ory unavailable")
	}
}

// missing answers a request without a valid session, by mode.
func (s *Server) missing(r request, mode config.OnMissing) *authv3.CheckResponse {
	switch mode {
	case config.OnMissingAllow:
		return okUntouched
	case config.OnMissingRedirect:
		if r.isBrowser() && s.loginURL != nil {
			u := *s.loginURL
			q := u.Query()
			q.Set("return_to", r.originalURL())
			u.RawQuery = q.Encode()
			return redirect(u.String())
		}
	case config.OnMissingDeny:
	}
	return denyUnauthenticated
}

// denied builds a denial with a small JSON body.
func denied(code codes.Code, httpStatus int, errName, message string) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: message},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: []*corev3.HeaderValueOption{
				header("content-type", "application/json"),
				header("cache-control", "no-store"),
			},
			Body: `{"error":"` + errName + `","message":"` + message + `"}`,
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

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		Append:       wrapFalse,
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
