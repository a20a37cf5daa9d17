// Package config holds every setting of ory-ext-authz in one struct. Each
// setting is a flag of `ory-ext-authz serve` and, with the same name in upper
// snake case behind the ORY_EXT_AUTHZ_ prefix, an environment variable; a flag
// given on the command line wins over the environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// EnvPrefix is prepended to the upper-snake-case flag name to form the
// environment variable of a flag (--ory-url -> ORY_EXT_AUTHZ_ORY_URL).
const EnvPrefix = "ORY_EXT_AUTHZ_"

// Defaults. They are named so that docs, deploy files and tests can refer to
// them instead of repeating the values.
const (
	DefaultGRPCAddr           = ":9001"
	DefaultHTTPAddr           = ":9002"
	DefaultAdminAddr          = "127.0.0.1:9003"
	DefaultSessionCookies     = "ory_kratos_session,ory_session_*"
	DefaultSessionTokenHeader = "x-session-token"
	DefaultOnMissing          = authz.DefaultOnMissing
	DefaultWhoamiTimeout      = time.Second
	DefaultExpiryLeeway       = 5 * time.Second
	DefaultNegativeTTL        = 5 * time.Second
	DefaultCacheMaxBytes      = 64 << 20
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "json"
	DefaultShutdownDelay      = 0 * time.Second
	DefaultShutdownTimeout    = 15 * time.Second
	DefaultOryMaxInflight     = 64
	// DefaultPassClientAuthorization is off: every OK answer without a JWT
	// of ours removes the client's Authorization, so the upstream can
	// trust any Authorization it sees.
	DefaultPassClientAuthorization = false
	// The request limits, as authz defines them.
	DefaultMaxRequestHeaders     = authz.DefaultMaxRequestHeaders
	DefaultMaxRequestHeaderBytes = authz.DefaultMaxRequestHeaderBytes
	DefaultMaxCookies            = authz.DefaultMaxCookies
	// DefaultRedisTimeout bounds every operation on the shared tier, as
	// redistier defines it: far above a round trip in one zone, far below
	// the whoami timeout.
	DefaultRedisTimeout = redistier.DefaultTimeout
	// DefaultRedisInvalidationTTL is how long an invalidation record stays
	// in Redis (not a flag): past it no JWT it could void is left, as long
	// as no template's ttl is longer.
	DefaultRedisInvalidationTTL = redistier.DefaultInvalidationTTL
	// MaxCredentialBytes is the largest credential that is sent to Ory. A
	// larger one is treated as invalid without asking Ory.
	MaxCredentialBytes = 16 << 10
)

// OnMissing is authz.OnMissing: the modes of --on-missing and of the
// per-route `on_missing` context extension.
type OnMissing = authz.OnMissing

// The modes, as authz defines them.
const (
	OnMissingDeny     = authz.OnMissingDeny
	OnMissingAllow    = authz.OnMissingAllow
	OnMissingRedirect = authz.OnMissingRedirect
)

// ParseOnMissing validates a mode given as text.
func ParseOnMissing(s string) (OnMissing, error) { return authz.ParseOnMissing(s) }

// Config is the whole configuration of `ory-ext-authz serve`.
type Config struct {
	GRPCAddr           string
	HTTPAddr           string
	AdminAddr          string
	ForwardAuthAddr    string
	TrustedProxies     []netip.Prefix
	OryURL             string
	TokenizeAs         string
	SessionCookies     []string
	SessionTokenHeader string
	OnMissing          OnMissing
	LoginURL           string
	WhoamiTimeout      time.Duration
	ExpiryLeeway       time.Duration
	NegativeTTL        time.Duration
	CacheMaxBytes      int64
	LogLevel           string
	LogFormat          string
	ShutdownDelay      time.Duration
	ShutdownTimeout    time.Duration
	OryMaxInflight     int
	OryCAFile          string
	// PassClientAuthorization leaves a client's Authorization to the
	// upstream in allow mode without a session (an API key or third-party
	// token the upstream reads itself). Preflights still remove it, and
	// an answer with a JWT always overwrites it.
	PassClientAuthorization bool
	// MaxRequestHeaders, MaxRequestHeaderBytes and MaxCookies bound what a
	// request may carry; over a limit it is denied as invalid without
	// asking Ory.
	MaxRequestHeaders     int
	MaxRequestHeaderBytes int
	MaxCookies            int
	// TLS of the gRPC listener. TLSClientCA turns on mTLS.
	TLSCert, TLSKey, TLSClientCA string
	// TLS of the admin listener, likewise.
	AdminTLSCert, AdminTLSKey, AdminTLSClientCA string
	// JWKSPublish is a file of the tokenizer's public keys, served at
	// jwkspub.Path on the HTTP listener; empty is off. Read by serve at
	// start (a private or symmetric key is refused) and whenever it
	// changes.
	JWKSPublish string
	// Routes is the route table file (docs/routes.md); empty is off. Read
	// by serve at start (a file that does not load, or sets a setting the
	// Check path does not enforce yet, is refused) and whenever it changes
	// (then a refused file keeps the previous table).
	Routes string

	// RedisURL turns on the cache tier shared by replicas; empty is off.
	// It may hold a password, so it prints redacted.
	RedisURL RedactedURL
	// RedisSecretFile (required with RedisURL) and RedisPreviousSecretFile
	// (a rotation) hold the secrets that name and seal what is in Redis;
	// RedisOptions reads them.
	RedisSecretFile, RedisPreviousSecretFile string
	RedisTimeout                             time.Duration
	// RedisUsername and the password (RedisPasswordFile, else
	// RedisPassword from the environment variable EnvRedisPassword) are
	// the AUTH credentials; they override the URL's.
	RedisUsername     string
	RedisPasswordFile string
	RedisPassword     Secret
	// TLS of the Redis connection (a rediss:// URL): CAs trusted on top of
	// the system roots, a client certificate.
	RedisCAFile, RedisCertFile, RedisKeyFile string
}

// EnvRedisPassword is the environment variable of the Redis password. It
// is not the variable of a flag: a password on the command line shows in
// ps. --redis-password-file wins over it.
const EnvRedisPassword = EnvPrefix + "REDIS_PASSWORD"

// EnvOnly lists the variables read from the environment that are not the
// variable of a flag.
func EnvOnly() []string { return []string{EnvRedisPassword} }

// Default returns a Config holding every default.
func Default() Config {
	return Config{
		GRPCAddr:           DefaultGRPCAddr,
		HTTPAddr:           DefaultHTTPAddr,
		AdminAddr:          DefaultAdminAddr,
		TrustedProxies:     slices.Clone(authz.DefaultTrustedProxies),
		SessionCookies:     splitList(DefaultSessionCookies),
		SessionTokenHeader: DefaultSessionTokenHeader,
		OnMissing:          DefaultOnMissing,
		WhoamiTimeout:      DefaultWhoamiTimeout,
		ExpiryLeeway:       DefaultExpiryLeeway,
		NegativeTTL:        DefaultNegativeTTL,
		CacheMaxBytes:      DefaultCacheMaxBytes,
		LogLevel:           DefaultLogLevel,
		LogFormat:          DefaultLogFormat,
		ShutdownDelay:      DefaultShutdownDelay,
		ShutdownTimeout:    DefaultShutdownTimeout,
		OryMaxInflight:     DefaultOryMaxInflight,

		MaxRequestHeaders:     DefaultMaxRequestHeaders,
		MaxRequestHeaderBytes: DefaultMaxRequestHeaderBytes,
		MaxCookies:            DefaultMaxCookies,

		RedisTimeout: DefaultRedisTimeout,

		PassClientAuthorization: DefaultPassClientAuthorization,
	}
}

// FlagSet returns the flags of `serve`, bound to c. Its usage text is the
// reference documentation of the settings.
func (c *Config) FlagSet(name string, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "listen address of the gRPC server: envoy.service.auth.v3.Authorization, grpc.health.v1.Health and server reflection")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "listen address of the HTTP server: GET /healthz (alive), GET /readyz (serving), GET /metrics, and GET "+jwkspub.Path+" with --jwks-publish")
	fs.StringVar(&c.JWKSPublish, "jwks-publish", c.JWKSPublish, fmt.Sprintf("file of the tokenizer's public JWKS (as printed by: ory-ext-authz jwks public jwks.json > jwks.public.json) to serve at GET %s on --http-addr, for Envoy's jwt_authn remote_jwks and Istio's RequestAuthentication jwksUri (empty: off). Cache-Control max-age=%d, an ETag, 304 on If-None-Match. Re-read when it changes; a file holding a private or symmetric key is refused, at start and on every reload (then the previous keys stay served)", jwkspub.Path, int(jwkspub.DefaultMaxAge.Seconds())))
	fs.StringVar(&c.ForwardAuthAddr, "forward-auth-addr", c.ForwardAuthAddr, "listen address of the HTTP forward-auth endpoint (/auth for nginx auth_request, Traefik ForwardAuth, Caddy forward_auth; /envoy/ for Envoy's http_service; docs/forward-auth.md), e.g. :9004; empty disables it")
	fs.Var((*prefixList)(&c.TrustedProxies), "trusted-proxies", "comma-separated CIDRs of the proxies whose X-Forwarded-* and X-Original-* headers are read on --forward-auth-addr; from other peers they are ignored and the defaults apply")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "listen address of the admin gRPC API (ory_ext_authz.admin.v1.Admin: cache invalidation, stats); empty disables it. Never served on --grpc-addr")
	fs.StringVar(&c.AdminTLSCert, "admin-tls-cert", c.AdminTLSCert, "PEM certificate of the admin listener; with --admin-tls-key turns on TLS")
	fs.StringVar(&c.AdminTLSKey, "admin-tls-key", c.AdminTLSKey, "PEM private key of --admin-tls-cert")
	fs.StringVar(&c.AdminTLSClientCA, "admin-tls-client-ca", c.AdminTLSClientCA, "PEM CA certificates for admin clients: turns on mTLS on the admin listener")
	fs.StringVar(&c.OryURL, "ory-url", c.OryURL, "Ory public base URL: the Kratos public endpoint or the Ory Network project URL (required; no user info: whoami takes no basic auth)")
	fs.StringVar(&c.TokenizeAs, "tokenize-as", c.TokenizeAs, "default tokenizer template of /sessions/whoami?tokenize_as= (required; a route may override it with the context extension tokenize_as)")
	fs.Var((*listValue)(&c.SessionCookies), "session-cookies", "comma-separated session cookie names; a trailing * matches a prefix")
	fs.StringVar(&c.SessionTokenHeader, "session-token-header", c.SessionTokenHeader, "request header carrying a native Ory session token")
	fs.Var((*onMissingValue)(&c.OnMissing), "on-missing", "what a request without a valid session gets: deny (401), allow (pass through, the client's Authorization removed) or redirect (browsers to --login-url, others 401); a route may override it with the context extension on_missing")
	fs.BoolVar(&c.PassClientAuthorization, "pass-client-authorization", c.PassClientAuthorization, "opt-out, for upstreams behind an allow route that take their own credentials in Authorization: in on_missing=allow mode a request without a valid session keeps the client's Authorization header; by default it is removed, so the upstream only ever sees an Authorization ory-ext-authz set. CORS preflights always lose it; a JWT always overwrites it")
	fs.StringVar(&c.Routes, "routes", c.Routes, "route table file (docs/routes.md; empty: off): the first rule matching a request's method, host and path sets its tokenize_as, on_missing and pass_client_authorization over the flags (context_extensions still override those) and adds require_aal (step-up), a CEL authorize rule and identity headers; a path the table finds ambiguous is denied (400). Re-read when it changes; a file that does not load, or has on_missing: redirect without --login-url, is refused at start and on reload (then the previous table stays)")
	fs.StringVar(&c.LoginURL, "login-url", c.LoginURL, "login page for --on-missing=redirect and for a route's require_aal step-up (default for the step-up: <ory-url>/self-service/login/browser): an absolute http(s) URL without return_to or aal; &return_to=<original URL, query-escaped> (a step-up: &aal=aal2&return_to=...) is appended to its query as written, before any fragment")
	fs.DurationVar(&c.WhoamiTimeout, "whoami-timeout", c.WhoamiTimeout, "timeout of one whoami call to Ory; keep it below the ext_authz timeout of Envoy")
	fs.DurationVar(&c.ExpiryLeeway, "expiry-leeway", c.ExpiryLeeway, "a cached JWT is served only while it has more validity than this left")
	fs.DurationVar(&c.NegativeTTL, "negative-ttl", c.NegativeTTL, "how long a 401 from Ory is remembered for that credential (0 disables)")
	fs.Int64Var(&c.CacheMaxBytes, "cache-max-bytes", c.CacheMaxBytes, "upper bound of the token cache, in bytes of cached entries")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: json or text")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", c.ShutdownDelay, "on SIGTERM, how long to report NOT_SERVING before the listeners stop accepting, so that Envoy's health checks move traffic away first")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "on SIGTERM, how long in-flight requests may take to finish before they are cut")
	fs.IntVar(&c.OryMaxInflight, "ory-max-inflight", c.OryMaxInflight, "most whoami calls in flight at once; a cache miss over the cap waits for a slot while Ory keeps answering (until --whoami-timeout), and fails with Unavailable once Ory has not answered for a quarter of --whoami-timeout")
	fs.StringVar(&c.OryCAFile, "ory-ca-file", c.OryCAFile, "PEM file of CA certificates trusted for Ory's TLS, in addition to the system roots")
	fs.IntVar(&c.MaxRequestHeaders, "max-request-headers", c.MaxRequestHeaders, "a request with more headers is denied as invalid (400) without asking Ory")
	fs.IntVar(&c.MaxRequestHeaderBytes, "max-request-header-bytes", c.MaxRequestHeaderBytes, "a request whose header names and values add up to more bytes is denied as invalid (400)")
	fs.IntVar(&c.MaxCookies, "max-cookies", c.MaxCookies, "a request with more cookies is denied as invalid (400)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) of the gRPC listener; with --tls-key turns on TLS; re-read when the file changes")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "PEM CA certificates for client certificates: turns on mTLS on the gRPC listener; re-read when the file changes")
	fs.Var((*urlValue)(&c.RedisURL), "redis-url", "Redis or Valkey shared by the replicas as a second cache tier (empty: off). Standalone redis://host:6379/0, TLS rediss://host:6380; Sentinel redis://sentinel1:26379?addr=sentinel2:26379&master_set=mymaster (the sentinels' addresses; TLS applies to them too, the credentials only to the master); Cluster redis://node1:6379?addr=node2:6379 (one node is enough). valkey:// and valkeys:// work alike. A password in the URL works but prefer --redis-password-file or "+EnvRedisPassword+"; the URL is only ever printed without it. Redis is never a readiness dependency: with it down, checks go on with the local cache and Ory")
	fs.StringVar(&c.RedisSecretFile, "redis-secret-file", c.RedisSecretFile, fmt.Sprintf("file holding the secret (at least %d bytes; a trailing newline is ignored) from which key names and the encryption of values in Redis are derived; the same on every replica; required with --redis-url", redistier.MinSecretLen))
	fs.StringVar(&c.RedisPreviousSecretFile, "redis-previous-secret-file", c.RedisPreviousSecretFile, "file holding the previous secret during a rotation: still accepted for reads; drop it once the longest JWT lifetime has passed since every replica has the new --redis-secret-file")
	fs.DurationVar(&c.RedisTimeout, "redis-timeout", c.RedisTimeout, "timeout of one Redis operation; a cache miss makes a few, so keep it well below --whoami-timeout")
	fs.StringVar(&c.RedisUsername, "redis-username", c.RedisUsername, "Redis ACL user (empty: the default user, or the URL's)")
	fs.StringVar(&c.RedisPasswordFile, "redis-password-file", c.RedisPasswordFile, "file holding the Redis password (a trailing newline is ignored); wins over "+EnvRedisPassword+" and the URL's password")
	fs.StringVar(&c.RedisCAFile, "redis-ca-file", c.RedisCAFile, "PEM CA certificates trusted for Redis' TLS in addition to the system roots (needs a rediss:// URL)")
	fs.StringVar(&c.RedisCertFile, "redis-cert-file", c.RedisCertFile, "PEM client certificate for Redis' TLS, with --redis-key-file (needs a rediss:// URL)")
	fs.StringVar(&c.RedisKeyFile, "redis-key-file", c.RedisKeyFile, "PEM private key of --redis-cert-file")
	fs.Usage = func() { usage(fs) }
	return fs
}

// usage prints the reference of every flag with its environment variable.
func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: ory-ext-authz %s [flags]\n\nEvery flag can also be set in the environment; a flag on the command line wins.\n\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s (%s, default %s)\n      %s\n", f.Name, EnvName(f.Name), def, f.Usage)
	})
}

// EnvName is the environment variable of a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses the arguments of `serve` over the defaults, then takes every
// flag not given on the command line from the environment (getenv), and the
// variables of EnvOnly, and validates the result. It reads no file: the
// Redis secrets and password are read by RedisOptions.
func Parse(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	c := Default()
	fs := c.FlagSet("serve", output)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	c.RedisPassword = Secret(getenv(EnvRedisPassword))
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// FlagNames lists the names of every flag of `serve`, for tests and docs that
// must stay in step with the real flags.
func FlagNames() []string {
	var names []string
	for _, f := range Flags() {
		names = append(names, f.Name)
	}
	return names
}

// Validate fails fast on a setting that cannot work, naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flagName, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flagName, fmt.Sprintf(format, args...)))
	}
	if c.OryURL == "" {
		bad("ory-url", "required (or %s)", EnvName("ory-url"))
	} else if err := checkOryURL(c.OryURL); err != nil {
		bad("ory-url", "%v", err)
	}
	if c.TokenizeAs == "" {
		bad("tokenize-as", "required (or %s)", EnvName("tokenize-as"))
	}
	for _, addr := range []struct{ flag, v string }{{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr}, {"admin-addr", c.AdminAddr}, {"forward-auth-addr", c.ForwardAuthAddr}} {
		if addr.v == "" && (addr.flag == "admin-addr" || addr.flag == "forward-auth-addr") {
			continue
		}
		if _, _, err := net.SplitHostPort(addr.v); err != nil {
			bad(addr.flag, "%v", err)
		}
	}
	if c.ForwardAuthAddr != "" && (c.ForwardAuthAddr == c.GRPCAddr || c.ForwardAuthAddr == c.HTTPAddr || c.ForwardAuthAddr == c.AdminAddr) {
		bad("forward-auth-addr", "must differ from --grpc-addr, --http-addr and --admin-addr")
	}
	if c.AdminAddr != "" && c.AdminAddr == c.GRPCAddr {
		bad("admin-addr", "must differ from --grpc-addr: the admin API is never served on the ext_authz listener")
	}
	if len(c.SessionCookies) == 0 {
		bad("session-cookies", "at least one cookie name is needed")
	}
	for _, n := range c.SessionCookies {
		name := strings.TrimSuffix(n, "*")
		if name == "" || strings.ContainsAny(name, "*=;, \t") {
			bad("session-cookies", "invalid cookie name %q", n)
		}
	}
	if c.SessionTokenHeader == "" || strings.ContainsAny(c.SessionTokenHeader, ": \t") || strings.HasPrefix(c.SessionTokenHeader, ":") {
		bad("session-token-header", "invalid header name %q", c.SessionTokenHeader)
	}
	c.SessionTokenHeader = strings.ToLower(c.SessionTokenHeader)
	if _, err := ParseOnMissing(string(c.OnMissing)); err != nil {
		bad("on-missing", "%v", err)
	}
	if c.LoginURL != "" {
		if err := authz.CheckStepUpURL(c.LoginURL); err != nil {
			bad("login-url", "%v", err)
		}
	} else if c.OnMissing == OnMissingRedirect {
		bad("login-url", "required with --on-missing=redirect")
	}
	if c.WhoamiTimeout <= 0 {
		bad("whoami-timeout", "must be positive")
	}
	if c.ExpiryLeeway < 0 {
		bad("expiry-leeway", "must not be negative")
	}
	if c.NegativeTTL < 0 {
		bad("negative-ttl", "must not be negative")
	}
	if c.CacheMaxBytes < 1<<20 {
		bad("cache-max-bytes", "must be at least 1048576 (1 MiB)")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad("log-level", "%v", err)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("log-format", "unknown format %q (want json or text)", c.LogFormat)
	}
	if c.ShutdownDelay < 0 || c.ShutdownTimeout < 0 {
		bad("shutdown-timeout", "shutdown durations must not be negative")
	}
	if c.OryMaxInflight < 1 {
		bad("ory-max-inflight", "must be at least 1")
	}
	for _, l := range []struct {
		flag string
		v    int
	}{{"max-request-headers", c.MaxRequestHeaders}, {"max-request-header-bytes", c.MaxRequestHeaderBytes}, {"max-cookies", c.MaxCookies}} {
		if l.v < 1 {
			bad(l.flag, "must be at least 1")
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "--tls-cert and --tls-key go together")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		bad("tls-client-ca", "mTLS needs --tls-cert and --tls-key")
	}
	if (c.AdminTLSCert == "") != (c.AdminTLSKey == "") {
		bad("admin-tls-cert", "--admin-tls-cert and --admin-tls-key go together")
	}
	if c.AdminTLSClientCA != "" && c.AdminTLSCert == "" {
		bad("admin-tls-client-ca", "mTLS needs --admin-tls-cert and --admin-tls-key")
	}
	errs = append(errs, c.validateRedis()...)
	return errors.Join(errs...)
}

// checkOryURL validates --ory-url. User info is refused rather than redacted:
// Ory's whoami authenticates the session (X-Session-Token, the session
// cookie, or a Bearer session token) and takes no basic auth, while net/http
// would send user info as "Authorization: Basic" on every call, and every
// log line or error quoting the URL would carry it. The errors show the URL
// without its user info, the user name included (it may be a token).
func checkOryURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not err: url.Parse's error quotes the whole value.
		return fmt.Errorf("%q is not an http(s) URL", withoutUserinfo(raw))
	}
	if u.User != nil {
		u.User = nil
		return fmt.Errorf("must not hold user info (user:password@): Ory's whoami takes no basic auth; use %q", u.String())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not have a query or fragment", raw)
	}
	return nil
}

// withoutUserinfo cuts what may be user info out of a value url.Parse
// refused or did not read as an http(s) URL: everything between "//" (or the
// start) and the last "@". It cuts too much rather than too little, since a
// password may hold "/", "?" or "#" and so end the authority early.
func withoutUserinfo(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "//"); i >= 0 && i < at {
		start = i + 2
	}
	return raw[:start] + "<redacted>@" + raw[at+1:]
}

// ParseLevel parses a --log-level value.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// listValue is a comma-separated list flag.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }
func (l *listValue) Set(s string) error {
	*l = splitList(s)
	return nil
}

// onMissingValue is the --on-missing flag.
type onMissingValue OnMissing

func (m *onMissingValue) String() string { return string(*m) }
func (m *onMissingValue) Set(s string) error {
	v, err := ParseOnMissing(s)
	*m = onMissingValue(v)
	return err
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// prefixList is a flag.Value of comma-separated CIDRs (a bare address is
// its /32 or /128).
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	if p == nil {
		return ""
	}
	out := make([]string, len(*p))
	for i, x := range *p {
		out[i] = x.String()
	}
	return strings.Join(out, ",")
}

func (p *prefixList) Set(v string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR or an address", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR", f)
		}
		if pr != pr.Masked() {
			return fmt.Errorf("%q has host bits set (write %s)", f, pr.Masked())
		}
		out = append(out, pr)
	}
	*p = out
	return nil
}
