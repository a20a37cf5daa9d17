package config

import (
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
