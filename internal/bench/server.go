package bench

import (
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// Config is what every benchmark's Check server runs with: serve's
// defaults, the harness's template (mesh) and a whoami timeout generous
// enough for a loaded machine.
func Config() config.Config {
	cfg := config.Default()
	cfg.TokenizeAs, cfg.WhoamiTimeout = "mesh", 5*time.Second
	return cfg
}

// NewServer is the Check server as serve builds it from Config, in front of
// the (fake) Ory at oryURL. The caller closes it.
func NewServer(oryURL string) (*authz.Server, error) {
	cfg := Config()
	oc, err := ory.New(ory.Options{BaseURL: oryURL, Timeout: cfg.WhoamiTimeout, MaxJWTBytes: config.MaxCredentialBytes})
	if err != nil {
		return nil, err
	}
	return authz.New(cfg.AuthzOptions(oc))
}
