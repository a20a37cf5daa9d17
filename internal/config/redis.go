package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// RedactedURL is a URL that may hold a password (--redis-url). It prints
// without it (String, GoString, and so any fmt verb and the flag's usage);
// string(u) is the URL itself, for the client only.
type RedactedURL string

// String is the URL with its password replaced by "xxxxx".
func (u RedactedURL) String() string { return redactURL(string(u)) }

// GoString is String, quoted.
func (u RedactedURL) GoString() string { return strconv.Quote(u.String()) }

// Secret is a value that never prints: String and GoString say whether it
// is set, nothing more.
type Secret string

// String is "" for an empty Secret and "[redacted]" otherwise.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString is String, quoted.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// urlValue is the --redis-url flag; its String redacts, so a default or
// an error of the flag package never shows the password.
type urlValue RedactedURL

func (v *urlValue) String() string {
	if v == nil {
		return ""
	}
	return RedactedURL(*v).String()
}

func (v *urlValue) Set(s string) error {
	*v = urlValue(s)
	return nil
}

// redactURL is raw without its password; a value url.Parse refuses loses
// everything that may be user info.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return withoutUserinfo(raw)
	}
	return u.Redacted()
}

// redisSchemes are the schemes rueidis.ParseURL takes; tls those with TLS.
var redisSchemes = map[string]bool{"redis": false, "valkey": false, "unix": false, "rediss": true, "valkeys": true}

// validateRedis checks the --redis-* flags without reading a file.
func (c *Config) validateRedis() []error {
	var errs []error
	bad := func(flagName, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flagName, fmt.Sprintf(format, args...)))
	}
	files := []struct{ flag, v string }{
		{"redis-secret-file", c.RedisSecretFile}, {"redis-previous-secret-file", c.RedisPreviousSecretFile},
		{"redis-username", c.RedisUsername}, {"redis-password-file", c.RedisPasswordFile},
		{"redis-ca-file", c.RedisCAFile}, {"redis-cert-file", c.RedisCertFile}, {"redis-key-file", c.RedisKeyFile},
	}
	if c.RedisURL == "" {
		// Settings for a tier that is off are a mistake (a misspelt
		// ORY_EXT_AUTHZ_REDIS_URL, a component applied half-way), not
		// something to ignore silently.
		for _, f := range files {
			if f.v != "" {
				bad(f.flag, "needs --redis-url")
			}
		}
		if c.RedisPassword != "" {
			errs = append(errs, fmt.Errorf("%s: needs --redis-url", EnvRedisPassword))
		}
		return errs
	}
	tls, err := checkRedisURL(string(c.RedisURL))
	if err != nil {
		bad("redis-url", "%v", err)
	}
	if c.RedisSecretFile == "" {
		bad("redis-secret-file", "required with --redis-url (or %s)", EnvName("redis-secret-file"))
	} else if c.RedisPreviousSecretFile == c.RedisSecretFile {
		bad("redis-previous-secret-file", "is --redis-secret-file itself")
	}
	switch {
	case c.RedisTimeout <= 0:
		bad("redis-timeout", "must be positive")
	case c.WhoamiTimeout > 0 && c.RedisTimeout >= c.WhoamiTimeout:
		bad("redis-timeout", "%v must be below --whoami-timeout %v: a cache miss makes a few Redis operations before it asks Ory", c.RedisTimeout, c.WhoamiTimeout)
	}
	if err == nil && !tls {
		for _, f := range files[4:] {
			if f.v != "" {
				bad(f.flag, "needs a rediss:// (TLS) --redis-url")
			}
		}
	}
	if (c.RedisCertFile == "") != (c.RedisKeyFile == "") {
		bad("redis-cert-file", "--redis-cert-file and --redis-key-file go together")
	}
	return errs
}

// checkRedisURL validates --redis-url as rueidis reads it and tells whether
// it asks for TLS. Errors show the URL without its password.
func checkRedisURL(raw string) (tls bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not err: url.Parse's error quotes the whole value.
		return false, fmt.Errorf("%q is not a URL", withoutUserinfo(raw))
	}
	tls, ok := redisSchemes[u.Scheme]
	if !ok {
		return false, fmt.Errorf("%q: scheme %q, want redis, rediss (TLS), valkey, valkeys or unix", u.Redacted(), u.Scheme)
	}
	if u.Scheme != "unix" && u.Host == "" {
		// rueidis would quietly dial localhost:6379.
		return false, fmt.Errorf("%q has no host", u.Redacted())
	}
	if _, err := rueidis.ParseURL(raw); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, fmt.Errorf("%q: %w", u.Redacted(), err)
	}
	return tls, nil
}

// RedisOptions returns the redistier.Options `serve` builds from c, with
// the secret and password files read; ok is false when --redis-url is
// empty. Logger and Observer are left for the caller. Errors name the flag
// and never hold a secret.
func (c Config) RedisOptions() (o redistier.Options, ok bool, err error) {
	if c.RedisURL == "" {
		return redistier.Options{}, false, nil
	}
	current, err := readSecret("redis-secret-file", c.RedisSecretFile)
	if err != nil {
		return o, false, err
	}
	if len(current) < redistier.MinSecretLen {
		return o, false, fmt.Errorf("--redis-secret-file: %s holds %d bytes, want at least %d (e.g. `head -c 32 /dev/urandom | base64`)", c.RedisSecretFile, len(current), redistier.MinSecretLen)
	}
	secrets := [][]byte{current}
	if c.RedisPreviousSecretFile != "" {
		prev, err := readSecret("redis-previous-secret-file", c.RedisPreviousSecretFile)
		if err != nil {
			return o, false, err
		}
		switch {
		case len(prev) < redistier.MinSecretLen:
			return o, false, fmt.Errorf("--redis-previous-secret-file: %s holds %d bytes, want at least %d", c.RedisPreviousSecretFile, len(prev), redistier.MinSecretLen)
		case bytes.Equal(prev, current):
			return o, false, errors.New("--redis-previous-secret-file: holds the same secret as --redis-secret-file")
		}
		secrets = append(secrets, prev)
	}
	password := string(c.RedisPassword)
	if c.RedisPasswordFile != "" {
		b, err := readSecret("redis-password-file", c.RedisPasswordFile)
		if err != nil {
			return o, false, err
		}
		if len(b) == 0 {
			return o, false, fmt.Errorf("--redis-password-file: %s is empty", c.RedisPasswordFile)
		}
		password = string(b)
	}
	// The TLS files are read by redistier.New; read here first so that a
	// missing one is reported under its flag.
	for _, f := range []struct{ flag, path string }{{"redis-ca-file", c.RedisCAFile}, {"redis-cert-file", c.RedisCertFile}, {"redis-key-file", c.RedisKeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return o, false, fmt.Errorf("--%s: %w", f.flag, err)
		}
	}
	return redistier.Options{
		URL:             string(c.RedisURL),
		Secrets:         secrets,
		Timeout:         c.RedisTimeout,
		Username:        c.RedisUsername,
		Password:        password,
		CAFile:          c.RedisCAFile,
		CertFile:        c.RedisCertFile,
		KeyFile:         c.RedisKeyFile,
		InvalidationTTL: DefaultRedisInvalidationTTL,
	}, true, nil
}

// readSecret reads a secret file without its trailing newlines (an editor's
// or echo's). The error names the flag and the file, never the content.
func readSecret(flagName, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagName, err)
	}
	return bytes.TrimRight(b, "\r\n"), nil
}
