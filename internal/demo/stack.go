package demo

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// RoutesFile is the demo's route table, below the repository root.
const RoutesFile = "internal/demo/routes.yaml"

// KratosConfig is what the demo adds to deploy/kratos/kratos.yml for a
// browser on origin (e.g. "http://127.0.0.1:8080"): the UI's pages as the
// flows' ui_url, the origin as the only place Kratos may send a browser
// back to, and the signed-out page after Kratos' own logout.
// kratosdev.Options.Config takes it, with PublicBaseURL origin + "/".
func KratosConfig(origin string) map[string]any {
	ui := func(page string) map[string]any { return map[string]any{"ui_url": origin + "/ui/" + page} }
	login, registration, settings := ui("login"), ui("registration"), ui("settings")
	return map[string]any{
		"selfservice": map[string]any{
			"default_browser_return_url": origin + "/",
			"allowed_return_urls":        []string{origin + "/"},
			"flows": map[string]any{
				"error":        ui("error"),
				"login":        login,
				"registration": registration,
				"settings":     settings,
				"logout": map[string]any{"after": map[string]any{
					"default_browser_return_url": origin + "/ui/logout",
				}},
			},
		},
	}
}

// LoginURL is ory-ext-authz's --login-url for the demo: Kratos' browser
// login on the demo's origin (ory-ext-authz appends return_to).
func LoginURL(origin string) string { return origin + "/self-service/login/browser" }

//go:embed Caddyfile.tmpl
var caddyfileTemplate string

var caddyfile = template.Must(template.New("Caddyfile").Funcs(template.FuncMap{
	"quote": func(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` },
}).Parse(caddyfileTemplate))

// CaddyVars fill the demo's Caddyfile: host:port addresses on loopback.
type CaddyVars struct {
	Listen      string // the demo's origin, e.g. 127.0.0.1:8080
	Kratos      string // Kratos' public API
	UI, App     string // the UI's and the app's servers
	ForwardAuth string // ory-ext-authz's --forward-auth-addr
	Storage     string // a directory of Caddy's own (it is told to keep nothing else)
}

// WriteCaddyfile renders the demo's Caddyfile into dir/Caddyfile and
// returns its path.
func WriteCaddyfile(dir string, v CaddyVars) (string, error) {
	for name, addr := range map[string]string{"Listen": v.Listen, "Kratos": v.Kratos, "UI": v.UI, "App": v.App, "ForwardAuth": v.ForwardAuth} {
		if addr == "" || strings.ContainsAny(addr, " \t\n{}\"#") {
			return "", fmt.Errorf("demo: Caddy address %s %q: want host:port", name, addr)
		}
	}
	var buf bytes.Buffer
	if err := caddyfile.Execute(&buf, v); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "Caddyfile")
	return path, os.WriteFile(path, buf.Bytes(), 0o600)
}

// CaddyEnv is Caddy's environment: HOME and the XDG directories (where it
// would keep config autosaves, data and certificates) inside dir.
func CaddyEnv(dir string) []string {
	home := filepath.Join(dir, "home")
	env := []string{"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
	}
	if p, ok := os.LookupEnv("PATH"); ok {
		env = append(env, "PATH="+p)
	}
	return env
}
