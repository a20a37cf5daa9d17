// The error classes of Tokenize, the detailed Error, and how Ory's answers
// and transport failures map to them.

package ory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
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
