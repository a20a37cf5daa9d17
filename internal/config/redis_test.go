package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
)

// urlPassword and filePassword stand for real passwords: no error, usage
// text or printed Config may hold them.
const (
	urlPassword  = "url-Pa55-w0rd"
	filePassword = "file-Pa55-w0rd"
	envPassword  = "env-Pa55-w0rd"
	secretText   = "redis-test-secret-0123456789abcdef"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestParseRedis: the --redis-* flags and their variables, what Validate
// refuses (naming the flag), and that no error shows a password.
func TestParseRedis(t *testing.T) {
	required := []string{"--ory-url", "http://127.0.0.1:4433", "--tokenize-as", "mesh"}
	secret := writeFile(t, "secret", secretText+"\n")
	withRedis := func(args ...string) []string {
		return append(append([]string{"--redis-url", "redis://127.0.0.1:6379", "--redis-secret-file", secret}, required...), args...)
	}
	tests := []parseCase{
		{"off by default", required, nil, func(t *testing.T, c Config) {
			if c.RedisURL != "" || c.RedisTimeout != redistier.DefaultTimeout {
				t.Errorf("defaults: url %q timeout %v", c.RedisURL, c.RedisTimeout)
			}
			if _, ok, err := c.RedisOptions(); ok || err != nil {
				t.Errorf("RedisOptions without --redis-url: %v %v", ok, err)
			}
		}, ""},
		{"flags", withRedis("--redis-timeout", "80ms", "--redis-username", "oea"), nil, func(t *testing.T, c Config) {
			if c.RedisURL != "redis://127.0.0.1:6379" || c.RedisTimeout != 80*time.Millisecond || c.RedisUsername != "oea" || c.RedisSecretFile != secret {
				t.Errorf("flags: %+v", c)
			}
		}, ""},
		{"environment", required, map[string]string{
			"ORY_EXT_AUTHZ_REDIS_URL": "rediss://redis.example:6380", "ORY_EXT_AUTHZ_REDIS_SECRET_FILE": secret,
			"ORY_EXT_AUTHZ_REDIS_CA_FILE": "/ca.pem", "ORY_EXT_AUTHZ_REDIS_PASSWORD": envPassword,
		}, func(t *testing.T, c Config) {
			if c.RedisURL != "rediss://redis.example:6380" || c.RedisCAFile != "/ca.pem" || c.RedisPassword != envPassword {
				t.Errorf("environment: %+v", c)
			}
		}, ""},
		{"sentinel", append([]string{"--redis-url", "redis://s1:26379?addr=s2:26379&master_set=mymaster", "--redis-secret-file", secret}, required...), nil, nil, ""},
		{"cluster", append([]string{"--redis-url", "redis://n1:6379?addr=n2:6379&addr=n3:6379", "--redis-secret-file", secret}, required...), nil, nil, ""},
		{"valkey", append([]string{"--redis-url", "valkeys://v:6380", "--redis-secret-file", secret, "--redis-cert-file", "c", "--redis-key-file", "k"}, required...), nil, nil, ""},
		{"secret file required", append([]string{"--redis-url", "redis://127.0.0.1:6379"}, required...), nil, nil, "--redis-secret-file: required with --redis-url"},
		{"secret file without url", append([]string{"--redis-secret-file", secret}, required...), nil, nil, "--redis-secret-file: needs --redis-url"},
		{"password variable without url", required, map[string]string{"ORY_EXT_AUTHZ_REDIS_PASSWORD": envPassword}, nil, "ORY_EXT_AUTHZ_REDIS_PASSWORD: needs --redis-url"},
		{"bad scheme", append([]string{"--redis-url", "http://u:" + urlPassword + "@h:6379", "--redis-secret-file", secret}, required...), nil, nil, `--redis-url: "http://u:xxxxx@h:6379": scheme "http"`},
		{"no host", append([]string{"--redis-url", "redis:6379", "--redis-secret-file", secret}, required...), nil, nil, "has no host"},
		{"unparsable", append([]string{"--redis-url", "redis://u:" + urlPassword + "@bad host", "--redis-secret-file", secret}, required...), nil, nil, "--redis-url: \"redis://<redacted>@bad host\" is not a URL"},
		{"bad database", append([]string{"--redis-url", "redis://:" + urlPassword + "@h:6379/x", "--redis-secret-file", secret}, required...), nil, nil, `--redis-url: "redis://:xxxxx@h:6379/x": redis: invalid database number`},
		{"zero timeout", withRedis("--redis-timeout", "0s"), nil, nil, "--redis-timeout: must be positive"},
		{"timeout not below whoami", withRedis("--redis-timeout", "1s"), nil, nil, "--redis-timeout: 1s must be below --whoami-timeout 1s"},
		{"tls files need rediss", withRedis("--redis-ca-file", "/ca.pem"), nil, nil, "--redis-ca-file: needs a rediss://"},
		{"cert without key", append([]string{"--redis-url", "rediss://h:6380", "--redis-secret-file", secret, "--redis-cert-file", "c"}, required...), nil, nil, "--redis-cert-file and --redis-key-file go together"},
		{"previous is current", withRedis("--redis-previous-secret-file", secret), nil, nil, "--redis-previous-secret-file: is --redis-secret-file itself"},
	}
	runParseCases(t, tests, urlPassword)
}

// TestRedisOptions: the files are read (trailing newlines dropped), the
// password file wins over the variable and both over the URL's, and every
// refusal names its flag without showing a secret.
func TestRedisOptions(t *testing.T) {
	secret := writeFile(t, "secret", secretText+"\r\n")
	previous := writeFile(t, "previous", "redis-test-previous-0123456789abcdef\n")
	short := writeFile(t, "short", "too-short-"+filePassword+"\n")
	pwFile := writeFile(t, "password", filePassword+"\n")
	empty := writeFile(t, "empty", "\n")
	base := func(edit func(*Config)) Config {
		c := Default()
		c.OryURL, c.TokenizeAs = "http://127.0.0.1:4433", "mesh"
		c.RedisURL, c.RedisSecretFile = RedactedURL("redis://:"+urlPassword+"@127.0.0.1:6379"), secret
		if edit != nil {
			edit(&c)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("options", func(t *testing.T) {
		c := base(func(c *Config) {
			c.RedisPreviousSecretFile, c.RedisPasswordFile, c.RedisPassword, c.RedisUsername = previous, pwFile, envPassword, "oea"
			c.RedisTimeout = 70 * time.Millisecond
		})
		o, ok, err := c.RedisOptions()
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if o.URL != "redis://:"+urlPassword+"@127.0.0.1:6379" || o.Timeout != 70*time.Millisecond || o.Username != "oea" || o.InvalidationTTL != DefaultRedisInvalidationTTL {
			t.Errorf("options %+v", o)
		}
		if len(o.Secrets) != 2 || string(o.Secrets[0]) != secretText || string(o.Secrets[1]) != "redis-test-previous-0123456789abcdef" {
			t.Errorf("secrets %q", o.Secrets)
		}
		if o.Password != filePassword {
			t.Errorf("password %q, want the file's (it wins over the variable)", o.Password)
		}
	})
	t.Run("password from the variable", func(t *testing.T) {
		o, _, err := base(func(c *Config) { c.RedisPassword = envPassword }).RedisOptions()
		if err != nil || o.Password != envPassword {
			t.Fatalf("password %q, %v", o.Password, err)
		}
	})
	t.Run("no password: the URL's stays", func(t *testing.T) {
		o, _, err := base(nil).RedisOptions()
		if err != nil || o.Password != "" {
			t.Fatalf("password %q, %v (empty: rueidis takes the URL's)", o.Password, err)
		}
	})
	for _, tt := range []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"missing secret file", func(c *Config) { c.RedisSecretFile = filepath.Join(t.TempDir(), "none") }, "--redis-secret-file: open"},
		{"short secret", func(c *Config) { c.RedisSecretFile = short }, fmt.Sprintf("--redis-secret-file: %s holds 24 bytes, want at least %d", short, redistier.MinSecretLen)},
		{"short previous secret", func(c *Config) { c.RedisPreviousSecretFile = short }, "--redis-previous-secret-file: " + short + " holds 24 bytes"},
		{"previous secret equal to the current", func(c *Config) { c.RedisPreviousSecretFile = writeFile(t, "copy", secretText) }, "--redis-previous-secret-file: holds the same secret"},
		{"empty password file", func(c *Config) { c.RedisPasswordFile = empty }, "--redis-password-file: " + empty + " is empty"},
		{"missing password file", func(c *Config) { c.RedisPasswordFile = "/nonexistent/password" }, "--redis-password-file: open /nonexistent/password"},
		{"missing CA file", func(c *Config) {
			c.RedisURL, c.RedisCAFile = "rediss://127.0.0.1:6380", "/nonexistent/ca.pem"
		}, "--redis-ca-file: stat /nonexistent/ca.pem"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := base(tt.edit).RedisOptions()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			for _, s := range []string{secretText, filePassword, urlPassword, "too-short"} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

// TestRedisSecretsNeverPrint: a Config printed with any verb, and the
// usage text with the variables set, hold neither the URL's password nor
// the password from the environment.
func TestRedisSecretsNeverPrint(t *testing.T) {
	secret := writeFile(t, "secret", secretText)
	e := map[string]string{
		"ORY_EXT_AUTHZ_ORY_URL": "http://127.0.0.1:4433", "ORY_EXT_AUTHZ_TOKENIZE_AS": "mesh",
		"ORY_EXT_AUTHZ_REDIS_URL": "redis://oea:" + urlPassword + "@127.0.0.1:6379", "ORY_EXT_AUTHZ_REDIS_SECRET_FILE": secret,
		"ORY_EXT_AUTHZ_REDIS_PASSWORD": envPassword,
	}
	c, err := Parse(nil, env(e), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.RedisURL) != e["ORY_EXT_AUTHZ_REDIS_URL"] || string(c.RedisPassword) != envPassword {
		t.Fatalf("the values themselves are lost: %q %q", string(c.RedisURL), string(c.RedisPassword))
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, c)
		if strings.Contains(out, urlPassword) || strings.Contains(out, envPassword) {
			t.Errorf("Config printed with %s shows a password: %s", verb, out)
		}
	}
	if got := c.RedisURL.String(); got != "redis://oea:xxxxx@127.0.0.1:6379" {
		t.Errorf("RedisURL prints %q", got)
	}
	var usage bytes.Buffer
	_, err = Parse([]string{"--help"}, env(e), &usage)
	if err == nil || strings.Contains(usage.String(), urlPassword) || strings.Contains(usage.String(), envPassword) {
		t.Fatalf("--help: %v\n%s", err, usage.String())
	}
	for _, want := range []string{"--redis-url (ORY_EXT_AUTHZ_REDIS_URL", "--redis-secret-file", "--redis-previous-secret-file", "--redis-timeout (ORY_EXT_AUTHZ_REDIS_TIMEOUT, default 50ms)",
		"--redis-username", "--redis-password-file", "--redis-ca-file", "--redis-cert-file", "--redis-key-file", "master_set=mymaster", EnvRedisPassword} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
