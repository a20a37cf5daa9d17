package bench

import (
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
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
	return NewRoutesServer(oryURL, nil)
}

// NewRoutesServer is NewServer with the route table t (as serve --routes
// serves it, never reloaded); nil is no table.
func NewRoutesServer(oryURL string, t *routes.Table) (*authz.Server, error) {
	cfg := Config()
	oc, err := ory.New(ory.Options{BaseURL: oryURL, Timeout: cfg.WhoamiTimeout, MaxJWTBytes: config.MaxCredentialBytes})
	if err != nil {
		return nil, err
	}
	o := cfg.AuthzOptions(oc)
	if t != nil {
		o.Routes = staticTable{t}
	}
	return authz.New(o)
}

// staticTable is a route table that never changes.
type staticTable struct{ t *routes.Table }

func (s staticTable) Table() *routes.Table { return s.t }
