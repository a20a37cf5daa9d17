package checkcli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/cli"
)

// Defaults, named so that the help text and the code cannot drift apart.
const (
	defaultAddr    = "127.0.0.1:9001"
	defaultMethod  = "GET"
	defaultPath    = "/"
	defaultHost    = "localhost"
	defaultScheme  = "http"
	defaultTimeout = 5 * time.Second
)

// Exit codes returned by Run: internal/cli's, as check names them.
const (
	exitAllowed = cli.ExitOK
	exitDenied  = cli.ExitRefused
	exitError   = cli.ExitFailed
)

// header is one request header line given with --header, in command-line order,
// with its name already lower-cased as Envoy presents it.
type header struct {
	name, value string
}

// options is the parsed and validated command line.
type options struct {
	addr         string
	cookie       string
	sessionToken string
	headers      []header
	method       string
	path         string
	host         string
	scheme       string
	contextExt   map[string]string
	timeout      time.Duration
	rawHeaders   bool
	printJWT     bool
	tls          cli.TLS
}

const usageHead = `Usage: ory-ext-authz check [flags]

Sends ONE Envoy ext_authz v3 CheckRequest (envoy.service.auth.v3.Authorization/Check)
to an ext_authz gRPC server, shaped as Envoy sends it, and prints what the server
answered: the gRPC status, the CheckResponse status, the HTTP status, headers and
body of a denial, every header mutation of an OK answer (with append and
append_action, and the action Envoy will really apply), the dynamic metadata, and
the Bearer JWT of an authorization mutation decoded (signature not verified) with
its exp as a time and the validity left.

Exit codes:
  0  allowed: CheckResponse status OK
  1  denied: any other CheckResponse status
  2  error: bad flags, no connection, a gRPC error from Check (Envoy then applies
     failure_mode_allow and status_on_error), or an error_response
  (-h prints this text to stdout and exits 0)

The request, as Envoy builds it:
  attributes.request.http: method, path (with the query string; query stays
  empty), host, scheme, protocol HTTP/1.1, id (= x-request-id), and headers with
  lower-case keys: :authority, :method, :path, :scheme, cookie (--cookie),
  x-session-token (--session-token), every --header, x-forwarded-proto and
  x-request-id. A header given several times is joined with "," as Envoy joins
  repeated HTTP/1.1 header lines. With --raw-headers the headers go to header_map
  as key/raw_value pairs, one entry per line, and the headers map stays empty, as
  with Envoy's encode_raw_headers: true.
  attributes.context_extensions: every --context (ExtAuthzPerRoute check_settings).
  attributes.source/destination: loopback socket addresses.

What is never printed (the output is meant for tickets): the cookie and session
token that were sent (cookie names are shown, values are not), values of
authorization, proxy-authorization, cookie, set-cookie and x-session-token headers
in the answer (shown as their size), and the compact JWT unless --print-jwt.
A command line is visible to other local users (ps) and kept in shell history:
prefer --cookie "$(cat cookie.txt)" to pasting a live session.

Examples:
  ory-ext-authz check --cookie "ory_kratos_session=$COOKIE; theme=dark"
  ory-ext-authz check --session-token "$TOKEN" --host api.example.com --path '/v1/items?limit=5'
  ory-ext-authz check --cookie "$COOKIE_HEADER" --context tokenize_as=api --raw-headers
  ory-ext-authz check --addr ext-authz.internal:9001 --tls-ca ca.pem \
      --tls-cert client.pem --tls-key client-key.pem --cookie "ory_kratos_session=$COOKIE"

Flags may be written with one or two dashes, as -flag value or -flag=value, and
end at the first non-flag argument (there are no positional arguments).

Flags:
`

// parseFlags parses and validates args (the arguments after "check"). For -h
// it prints the reference to stdout and returns flag.ErrHelp.
func parseFlags(args []string, stdout io.Writer) (*options, error) {
	o := &options{contextExt: map[string]string{}}
	var headerArgs []string

	fs := cli.NewFlagSet(command)
	fs.StringVar(&o.addr, "addr", defaultAddr,
		"ext_authz gRPC server `address` (host:port, or any gRPC target such as unix:///run/authz.sock)")
	fs.StringVar(&o.cookie, "cookie", "",
		"Cookie header `value`, as curl -b takes it: 'ory_kratos_session=...; theme=dark' (sent as is; cookie-jar files are not read)")
	fs.StringVar(&o.sessionToken, "session-token", "",
		"Ory session `token`, sent as the x-session-token header")
	fs.Func("header",
		"request header `name:value` (repeatable; the name is lower-cased; repeating a name joins the values with \",\")",
		func(s string) error {
			// Parsed in validate: the flag package quotes a rejected value in its
			// error message, and a header value may well be a credential.
			headerArgs = append(headerArgs, s)
			return nil
		})
	fs.StringVar(&o.method, "method", defaultMethod, "HTTP `method`")
	fs.StringVar(&o.path, "path", defaultPath, "HTTP `path`, with the query string if any")
	fs.StringVar(&o.host, "host", defaultHost, "HTTP `host` (:authority), with a port if not the default")
	fs.StringVar(&o.scheme, "scheme", defaultScheme, "HTTP `scheme`: http or https")
	fs.Func("context",
		"context extension `key=value`, as an ExtAuthzPerRoute check_settings would set it (repeatable)",
		func(s string) error {
			k, v, found := strings.Cut(s, "=")
			if !found || k == "" {
				return errors.New("want key=value")
			}
			if _, dup := o.contextExt[k]; dup {
				return fmt.Errorf("key %q given twice", k)
			}
			o.contextExt[k] = v
			return nil
		})
	fs.DurationVar(&o.timeout, "timeout", defaultTimeout, "`deadline` for connecting and for the Check call")
	fs.BoolVar(&o.rawHeaders, "raw-headers", false,
		"send the headers as Envoy does with encode_raw_headers: true (header_map with raw_value, empty headers map)")
	fs.BoolVar(&o.printJWT, "print-jwt", false,
		"also print the compact JWT of an authorization mutation (it is a bearer credential: keep it out of tickets)")
	o.tls.AddFlags(fs, "the server certificate", "addr")

	if err := cli.Parse(fs, args, stdout, usageHead); err != nil {
		return nil, err
	}
	for _, s := range headerArgs {
		h, err := parseHeader(s)
		if err != nil {
			return nil, cli.Usagef("--header: %w", err)
		}
		o.headers = append(o.headers, h)
	}
	if err := o.validate(fs.Args()); err != nil {
		return nil, cli.Usage(err)
	}
	return o, nil
}

// validate checks what the flag types cannot. Error messages name the flag and
// never echo a value that could be a credential.
func (o *options) validate(rest []string) error {
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q: check takes flags only", rest[0])
	}
	if o.addr == "" {
		return errors.New("--addr: must not be empty")
	}
	if o.cookie != "" {
		// curl -b reads a cookie-jar file when the argument has no '='; this tool
		// takes header values only, and must not guess at a file name.
		if !strings.Contains(o.cookie, "=") {
			return errors.New("--cookie: want a Cookie header value such as 'ory_kratos_session=...' (cookie-jar files are not supported)")
		}
		if badHeaderValue(o.cookie) {
			return errors.New("--cookie: contains a control character (CR, LF or NUL)")
		}
	}
	if badHeaderValue(o.sessionToken) {
		return errors.New("--session-token: contains a control character (CR, LF or NUL)")
	}
	if !isToken(o.method) {
		return fmt.Errorf("--method %q: not an HTTP method token", o.method)
	}
	if o.path != "*" && !strings.HasPrefix(o.path, "/") {
		return fmt.Errorf("--path %q: must start with / (Envoy sends the path with its query, without scheme or host)", o.path)
	}
	if strings.ContainsFunc(o.path, isSpaceOrControl) {
		return fmt.Errorf("--path %q: contains whitespace or a control character", o.path)
	}
	if o.host == "" || strings.ContainsFunc(o.host, isSpaceOrControl) || strings.ContainsAny(o.host, "/?#@") {
		return fmt.Errorf("--host %q: want a host name or host:port", o.host)
	}
	o.scheme = strings.ToLower(o.scheme)
	if o.scheme != "http" && o.scheme != "https" {
		return fmt.Errorf("--scheme %q: want http or https", o.scheme)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", o.timeout)
	}
	return o.tls.Validate()
}

// parseHeader reads one --header value, "Name: value" or "name:value".
func parseHeader(s string) (header, error) {
	if strings.HasPrefix(s, ":") {
		return header{}, errors.New("pseudo-headers are set by --method, --path, --host and --scheme")
	}
	name, value, found := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !found {
		return header{}, errors.New("want name:value")
	}
	if !isToken(name) {
		return header{}, fmt.Errorf("header name %q: not an HTTP token", name)
	}
	name = strings.ToLower(name)
	if name == "host" {
		// Envoy presents Host as :authority and never as a host header.
		return header{}, errors.New("use --host: Envoy sends the host as :authority")
	}
	// Checked before trimming, which would eat a trailing CR or LF.
	if badHeaderValue(value) {
		return header{}, fmt.Errorf("header %q: value contains a control character (CR, LF or NUL)", name)
	}
	// HTTP strips optional whitespace around a field value, and so does Envoy.
	return header{name: name, value: strings.TrimSpace(value)}, nil
}

func badHeaderValue(v string) bool {
	return strings.ContainsAny(v, "\r\n\x00")
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// isToken reports whether s is an RFC 9110 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
