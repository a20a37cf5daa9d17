package config

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// parseCase is a command line and environment, and what Parse makes of
// them: a Config check passes or an error holding wantErr.
type parseCase struct {
	name    string
	args    []string
	env     map[string]string
	check   func(t *testing.T, c Config)
	wantErr string
}

// runParseCases runs each case as a subtest. No error may hold any of
// secrets.
func runParseCases(t *testing.T, tests []parseCase, secrets ...string) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, env(tt.env), io.Discard)
			for _, s := range secrets {
				if err != nil && strings.Contains(err.Error(), s) {
					t.Fatalf("the error shows a secret: %v", err)
				}
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestParse(t *testing.T) {
	required := []string{"--ory-url", "http://127.0.0.1:4433", "--tokenize-as", "mesh"}
	tests := []parseCase{
		{"defaults", required, nil, func(t *testing.T, c Config) {
			if c.GRPCAddr != ":9001" || c.HTTPAddr != ":9002" || c.OnMissing != OnMissingDeny || c.WhoamiTimeout != time.Second ||
				c.ExpiryLeeway != 5*time.Second || c.NegativeTTL != 5*time.Second || c.CacheMaxBytes != 64<<20 ||
				strings.Join(c.SessionCookies, ",") != "ory_kratos_session,ory_session_*" || c.SessionTokenHeader != "x-session-token" {
				t.Errorf("defaults: %+v", c)
			}
		}, ""},
		{"forward-auth defaults", required, nil, func(t *testing.T, c Config) {
			if c.ForwardAuthAddr != "" || (*prefixList)(&c.TrustedProxies).String() != "127.0.0.0/8,::1/128" {
				t.Errorf("forward-auth %q, trusted %v", c.ForwardAuthAddr, c.TrustedProxies)
			}
		}, ""},
		{"trusted proxies", append(slices.Clone(required), "--forward-auth-addr", ":9004", "--trusted-proxies", "10.0.0.0/8, 192.0.2.7,fd00::/8"), nil, func(t *testing.T, c Config) {
			if got := (*prefixList)(&c.TrustedProxies).String(); got != "10.0.0.0/8,192.0.2.7/32,fd00::/8" || c.ForwardAuthAddr != ":9004" {
				t.Errorf("trusted %q, addr %q", got, c.ForwardAuthAddr)
			}
		}, ""},
		{"trusted proxies from the environment", required, map[string]string{"ORY_EXT_AUTHZ_TRUSTED_PROXIES": "172.16.0.0/12"}, func(t *testing.T, c Config) {
			if got := (*prefixList)(&c.TrustedProxies).String(); got != "172.16.0.0/12" {
				t.Errorf("trusted %q", got)
			}
		}, ""},
		{"trusted proxies, not a CIDR", append(slices.Clone(required), "--trusted-proxies", "10.0.0.0/33"), nil, nil, "is not a CIDR"},
		{"trusted proxies, host bits", append(slices.Clone(required), "--trusted-proxies", "10.1.2.3/8"), nil, nil, "host bits set (write 10.0.0.0/8)"},
		{"forward-auth on the gRPC address", append(slices.Clone(required), "--forward-auth-addr", ":9001"), nil, nil, "--forward-auth-addr: must differ"},
		{"env only", nil, map[string]string{"ORY_EXT_AUTHZ_ORY_URL": "https://x.projects.oryapis.com", "ORY_EXT_AUTHZ_TOKENIZE_AS": "jwt", "ORY_EXT_AUTHZ_WHOAMI_TIMEOUT": "150ms", "ORY_EXT_AUTHZ_SESSION_COOKIES": "a, b*"},
			func(t *testing.T, c Config) {
				if c.OryURL != "https://x.projects.oryapis.com" || c.TokenizeAs != "jwt" || c.WhoamiTimeout != 150*time.Millisecond || strings.Join(c.SessionCookies, ",") != "a,b*" {
					t.Errorf("env: %+v", c)
				}
			}, ""},
		{"flag wins over env", append([]string{"--on-missing", "allow"}, required...), map[string]string{"ORY_EXT_AUTHZ_ON_MISSING": "deny", "ORY_EXT_AUTHZ_TOKENIZE_AS": "other"},
			func(t *testing.T, c Config) {
				if c.OnMissing != OnMissingAllow || c.TokenizeAs != "mesh" {
					t.Errorf("precedence: %+v", c)
				}
			}, ""},
		{"token header lower-cased", append([]string{"--session-token-header", "X-Token"}, required...), nil, func(t *testing.T, c Config) {
			if c.SessionTokenHeader != "x-token" {
				t.Errorf("header %q", c.SessionTokenHeader)
			}
		}, ""},
		{"client authorization is not passed by default", required, nil, func(t *testing.T, c Config) {
			if c.PassClientAuthorization {
				t.Error("PassClientAuthorization is on by default")
			}
		}, ""},
		{"pass client authorization flag", append([]string{"--pass-client-authorization"}, required...), nil, func(t *testing.T, c Config) {
			if !c.PassClientAuthorization {
				t.Error("--pass-client-authorization did not turn it on")
			}
		}, ""},
		{"pass client authorization env", required, map[string]string{"ORY_EXT_AUTHZ_PASS_CLIENT_AUTHORIZATION": "true"}, func(t *testing.T, c Config) {
			if !c.PassClientAuthorization {
				t.Error("ORY_EXT_AUTHZ_PASS_CLIENT_AUTHORIZATION=true did not turn it on")
			}
		}, ""},
		{"pass client authorization flag false wins over env", append([]string{"--pass-client-authorization=false"}, required...), map[string]string{"ORY_EXT_AUTHZ_PASS_CLIENT_AUTHORIZATION": "true"}, func(t *testing.T, c Config) {
			if c.PassClientAuthorization {
				t.Error("the flag's false lost to the environment")
			}
		}, ""},
		{"jwks publish is off by default", required, nil, func(t *testing.T, c Config) {
			if c.JWKSPublish != "" {
				t.Errorf("JWKSPublish %q by default", c.JWKSPublish)
			}
		}, ""},
		{"jwks publish flag", append([]string{"--jwks-publish", "/etc/jwks/public.json"}, required...), nil, func(t *testing.T, c Config) {
			if c.JWKSPublish != "/etc/jwks/public.json" {
				t.Errorf("JWKSPublish %q", c.JWKSPublish)
			}
		}, ""},
		{"jwks publish env", required, map[string]string{"ORY_EXT_AUTHZ_JWKS_PUBLISH": "/etc/jwks/public.json"}, func(t *testing.T, c Config) {
			if c.JWKSPublish != "/etc/jwks/public.json" {
				t.Errorf("JWKSPublish %q from ORY_EXT_AUTHZ_JWKS_PUBLISH", c.JWKSPublish)
			}
		}, ""},
		{"bad pass client authorization env", required, map[string]string{"ORY_EXT_AUTHZ_PASS_CLIENT_AUTHORIZATION": "sometimes"}, nil, "ORY_EXT_AUTHZ_PASS_CLIENT_AUTHORIZATION"},
		{"missing ory url", []string{"--tokenize-as", "mesh"}, nil, nil, "--ory-url: required"},
		{"missing template", []string{"--ory-url", "http://x"}, nil, nil, "--tokenize-as: required"},
		{"bad url", []string{"--ory-url", "ftp://x", "--tokenize-as", "m"}, nil, nil, "--ory-url"},
		{"bad mode", append([]string{"--on-missing", "maybe"}, required...), nil, nil, "on-missing"},
		{"bad env value names the variable", required, map[string]string{"ORY_EXT_AUTHZ_WHOAMI_TIMEOUT": "soon"}, nil, "ORY_EXT_AUTHZ_WHOAMI_TIMEOUT"},
		{"redirect needs login url", append([]string{"--on-missing", "redirect"}, required...), nil, nil, "--login-url: required"},
		{"zero timeout", append([]string{"--whoami-timeout", "0s"}, required...), nil, nil, "--whoami-timeout"},
		{"tiny cache", append([]string{"--cache-max-bytes", "10"}, required...), nil, nil, "--cache-max-bytes"},
		{"bad cookie name", append([]string{"--session-cookies", "a;b"}, required...), nil, nil, "--session-cookies"},
		{"bad log level", append([]string{"--log-level", "loud"}, required...), nil, nil, "--log-level"},
		{"stray argument", append(required, "extra"), nil, nil, "unexpected arguments"},
	}
	runParseCases(t, tests)
}

func TestEveryFlagHasAnEnvName(t *testing.T) {
	for _, name := range FlagNames() {
		got := EnvName(name)
		if !strings.HasPrefix(got, EnvPrefix) || strings.ContainsAny(got, "-abcdefghijklmnopqrstuvwxyz") {
			t.Errorf("EnvName(%q) = %q", name, got)
		}
	}
	if EnvName("ory-url") != "ORY_EXT_AUTHZ_ORY_URL" {
		t.Error(EnvName("ory-url"))
	}
}

// TestOryURLUserinfo: an --ory-url with user info is refused (Ory's whoami
// takes no basic auth, and net/http would send it as an Authorization header
// on every call), and no error, from either source, repeats the user info:
// not the password, and not a user name alone either, which may be a token.
func TestOryURLUserinfo(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	tests := []struct {
		name    string
		url     string
		fromEnv bool
		wantErr string
	}{
		{"user and password", "https://admin:" + secret + "@x.projects.oryapis.com", false, "user info"},
		{"user and password from the environment", "https://admin:" + secret + "@x.projects.oryapis.com", true, "user info"},
		{"user name only (may be a token)", "https://" + secret + "@x.projects.oryapis.com", false, "user info"},
		{"empty password", "http://" + secret + ":@127.0.0.1:4433", false, "user info"},
		{"unparseable, with a password", "https://admin:" + secret + "@bad host", false, "not an http(s) URL"},
		{"unparseable escape, with a password", "https://admin:" + secret + "@x.example/%zz", false, "not an http(s) URL"},
		{"wrong scheme, with a password", "ftp://admin:" + secret + "@x.example", false, "not an http(s) URL"},
		{"no scheme, with a password", "admin:" + secret + "@x.example", false, "not an http(s) URL"},
		{"a slash in the password", "https://admin:" + secret + "/x@x.example", false, "not an http(s) URL"},
		{"query, with a password", "https://admin:" + secret + "@x.example/?a=b", false, "--ory-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--tokenize-as", "mesh"}
			e := map[string]string{}
			if tt.fromEnv {
				e["ORY_EXT_AUTHZ_ORY_URL"] = tt.url
			} else {
				args = append(args, "--ory-url", tt.url)
			}
			_, err := Parse(args, env(e), io.Discard)
			if err == nil || !strings.Contains(err.Error(), "--ory-url") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one naming --ory-url and containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error repeats the user info: %v", err)
			}
		})
	}
}

// TestValidateLoginURL: a login URL is taken only as an absolute http(s)
// URL whose query Go's url.ParseQuery reads in full (Kratos reads return_to
// with it too) and that leaves return_to and aal to ory-ext-authz. Errors name the
// flag and never show the URL's userinfo.
func TestValidateLoginURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		wantErr string // "" for valid
	}{
		{"plain", "https://login.example/ui/login", ""},
		{"query and fragment", "https://login.example/ui/login?flow=x&a=%2F#frag", ""},
		{"empty query", "https://login.example/ui/login?", ""},
		{"http on loopback", "http://127.0.0.1:4455/login", ""},
		{"relative", "/ui/login", "not an absolute http(s) URL"},
		{"other scheme", "ftp://login.example/login", "not an absolute http(s) URL"},
		{"no host", "https:///login", "not an absolute http(s) URL"},
		{"opaque", "https:login.example", "not an absolute http(s) URL"},
		{"semicolon in the query", "https://login.example/ui/login?a=1;b=2", "query"},
		{"bad escape in the query", "https://login.example/ui/login?a=%zz", "query"},
		{"return_to already there", "https://login.example/ui/login?flow=x&return_to=https://app.example", "return_to"},
		{"escaped return_to already there", "https://login.example/ui/login?return%5Fto=x", "return_to"},
		// It is also the step-up URL, which appends aal=aal2.
		{"aal already there", "https://login.example/ui/login?aal=aal1", "already has an aal"},
		{"unparsable", "https://login example/ui/login", "not a valid URL"},
		{"userinfo not echoed", "https://alice:hunter2@login.example/ui/login?a=1;b=2", "query"},
		{"userinfo of an unparsable URL not echoed", "https://alice:hunter2@login example/", "not a valid URL"},
		{"userinfo of a relative URL not echoed", "//alice:hunter2@login.example/", "not an absolute http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.OryURL, c.TokenizeAs, c.LoginURL, c.OnMissing = "http://127.0.0.1:4433", "mesh", tt.url, OnMissingRedirect
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %q", tt.url)
			}
			msg := err.Error()
			if !strings.Contains(msg, "--login-url") || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("err = %q, want one naming --login-url and saying %q", msg, tt.wantErr)
			}
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, "alice") {
				t.Errorf("err = %q shows the userinfo", msg)
			}
		})
	}
}

// TestStepUpURL: a step-up goes to the login UI when there is one, else to
// Kratos' browser login flow at --ory-url.
func TestStepUpURL(t *testing.T) {
	c := Default()
	c.OryURL = "https://auth.example.org/"
	if got, want := c.StepUpURL(), "https://auth.example.org/self-service/login/browser"; got != want {
		t.Errorf("StepUpURL() = %q, want %q", got, want)
	}
	c.LoginURL = "https://app.example.org/login"
	if got := c.StepUpURL(); got != c.LoginURL {
		t.Errorf("StepUpURL() with --login-url = %q, want it", got)
	}
	if got := c.AuthzOptions(nil).StepUpURL; got != c.LoginURL {
		t.Errorf("AuthzOptions StepUpURL = %q", got)
	}
}
