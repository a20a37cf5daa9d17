package config

import (
	"strings"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
)

// AuthzOptions returns the authz.Options `serve` builds from c, asking Ory
// through t; Observer, Tracer, Logger and Now are left for the caller. It is
// the one place where flags become the Check server's options, for serve and
// for the tests and benchmarks that run the server as serve would. Routes
// (--routes) is left for the caller too: serve runs its Watcher.
func (c Config) AuthzOptions(t authz.Tokenizer) authz.Options {
	return authz.Options{
		Tokenizer:       t,
		Extractor:       credential.NewExtractor(c.SessionCookies, c.SessionTokenHeader, MaxCredentialBytes),
		DefaultTemplate: c.TokenizeAs,
		OnMissing:       c.OnMissing,
		LoginURL:        c.LoginURL,
		StepUpURL:       c.StepUpURL(),
		ExpiryLeeway:    c.ExpiryLeeway,
		NegativeTTL:     c.NegativeTTL,
		FetchTimeout:    c.WhoamiTimeout,
		CacheMaxBytes:   c.CacheMaxBytes,
		Limits: authz.Limits{
			Headers:     c.MaxRequestHeaders,
			HeaderBytes: c.MaxRequestHeaderBytes,
			Cookies:     c.MaxCookies,
		},
		PassClientAuthorization: c.PassClientAuthorization,
	}
}

// StepUpURL is where a browser below a route's require_aal goes: the login
// UI of --login-url when set (a custom UI, Ory Network's Account
// Experience), otherwise Kratos' browser login flow at --ory-url, which
// creates the aal2 flow and sends the browser on to its UI.
func (c Config) StepUpURL() string {
	if c.LoginURL != "" {
		return c.LoginURL
	}
	if c.OryURL == "" {
		return ""
	}
	return strings.TrimSuffix(c.OryURL, "/") + "/self-service/login/browser"
}
