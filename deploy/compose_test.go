package deploy_test

import (
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
)

// Docker cannot run where these tests run, so docker-compose.yaml is checked
// structurally: strictly parsed into the subset of the Compose schema it
// uses, then every name, path, port and file it refers to is resolved.

const composeFilePath = "envoy/docker-compose.yaml"

// The compose services the checks look for by role.
const (
	composeServer = "ory-ext-authz"
	composeKratos = "kratos"
	composeEnvoy  = "envoy"
)

type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]struct{}       `json:"volumes"`
}

type composeService struct {
	Image       string            `json:"image"`
	Build       *composeBuild     `json:"build"`
	Entrypoint  []string          `json:"entrypoint"`
	Command     []string          `json:"command"`
	WorkingDir  string            `json:"working_dir"`
	Environment map[string]string `json:"environment"`
	Volumes     []string          `json:"volumes"`
	Ports       []string          `json:"ports"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
	Target     string `json:"target"`
}

// mount is one entry of a service's volumes.
type mount struct {
	source, target string // host path (relative to envoyDir) or volume name
	volume         bool
}

func (s composeService) mounts(t *testing.T) []mount {
	t.Helper()
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw") {
			t.Fatalf("volume %q: want SOURCE:TARGET[:ro]", v)
		}
		m := mount{source: parts[0], target: path.Clean(parts[1])}
		m.volume = !strings.HasPrefix(m.source, ".") && !strings.HasPrefix(m.source, "/")
		out = append(out, m)
	}
	return out
}

// resolve finds the mount that holds the container path p (the longest
// target that is p or a parent of it) and p relative to it.
func (s composeService) resolve(t *testing.T, p string) (mount, string, bool) {
	t.Helper()
	p = path.Clean(p)
	var best mount
	var rel string
	found := false
	for _, m := range s.mounts(t) {
		if p != m.target && !strings.HasPrefix(p, m.target+"/") {
			continue
		}
		if !found || len(m.target) > len(best.target) {
			best, rel, found = m, strings.TrimPrefix(strings.TrimPrefix(p, m.target), "/"), true
		}
	}
	return best, rel, found
}

// hostFile resolves a container path to a file of this repository, failing
// the test if it is not bind-mounted or does not exist.
func (s composeService) hostFile(t *testing.T, name, p string) string {
	t.Helper()
	m, rel, ok := s.resolve(t, p)
	if !ok || m.volume {
		t.Fatalf("service %s: %s is not bind-mounted from the repository", name, p)
	}
	host := filepath.Join(envoyDir, filepath.FromSlash(m.source), filepath.FromSlash(rel))
	if _, err := os.Stat(host); err != nil {
		t.Fatalf("service %s: %s is mounted from %s: %v", name, p, host, err)
	}
	return host
}

// flagValues returns the values following flag in args.
func flagValues(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

// published is one "HOST_IP:HOST_PORT:CONTAINER_PORT" entry.
type published struct {
	ip               string
	host, containerP uint32
}

func (s composeService) published(t *testing.T) []published {
	t.Helper()
	var out []published
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		if len(parts) != 3 {
			t.Fatalf("port %q: want HOST_IP:HOST_PORT:CONTAINER_PORT (publish on an explicit address)", p)
		}
		hp, err1 := strconv.ParseUint(parts[1], 10, 16)
		cp, err2 := strconv.ParseUint(parts[2], 10, 16)
		if err1 != nil || err2 != nil {
			t.Fatalf("port %q: not numeric", p)
		}
		out = append(out, published{ip: parts[0], host: uint32(hp), containerP: uint32(cp)})
	}
	return out
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var cf composeFile
	if err := yaml.UnmarshalStrict(readFile(t, composeFilePath), &cf); err != nil {
		t.Fatalf("%s: %v", composeFilePath, err)
	}
	for _, name := range []string{composeServer, composeKratos, composeEnvoy} {
		if _, ok := cf.Services[name]; !ok {
			t.Fatalf("%s: no service %q", composeFilePath, name)
		}
	}
	return cf
}

// composeKratosConfig returns the effective config of the compose Kratos: its
// -c files, resolved through its bind mounts and merged in order.
func composeKratosConfig(t *testing.T, cf composeFile) map[string]any {
	t.Helper()
	k := cf.Services[composeKratos]
	files := flagValues(k.Command, "-c")
	if len(files) == 0 {
		t.Fatalf("service %s: no -c config file in %q", composeKratos, k.Command)
	}
	var cfg map[string]any
	for _, f := range files {
		cfg = mergeMaps(cfg, loadYAMLMap(t, k.hostFile(t, composeKratos, f)))
	}
	return cfg
}

// serverConfig parses the server's compose environment with the server's own
// parser and validation.
func serverConfig(t *testing.T, name string, env map[string]string) config.Config {
	t.Helper()
	checkEnvNames(t, name, env)
	cfg, err := config.Parse(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("%s: the server rejects this environment: %v", name, err)
	}
	return cfg
}

// checkEnvNames: every ORY_EXT_AUTHZ_* variable is the env name of a flag,
// or one of the few read from the environment only (config.EnvOnly).
func checkEnvNames(t *testing.T, where string, env map[string]string) {
	t.Helper()
	valid := map[string]bool{}
	for _, f := range config.FlagNames() {
		valid[config.EnvName(f)] = true
	}
	for _, name := range config.EnvOnly() {
		valid[name] = true
	}
	for k := range env {
		if strings.HasPrefix(k, config.EnvPrefix) && !valid[k] {
			t.Errorf("%s: %s is not the environment variable of any serve flag", where, k)
		}
	}
}

var pinnedImage = regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9]+\.[0-9]+\.[0-9]+$`)

func TestDockerCompose(t *testing.T) {
	cf := loadCompose(t)
	s := loadEnvoy(t, envoyConfig)

	t.Run("images pinned, builds resolve", func(t *testing.T) {
		for name, svc := range cf.Services {
			switch {
			case svc.Image != "" && svc.Build != nil:
				t.Errorf("service %s: both image and build", name)
			case svc.Image != "":
				if !pinnedImage.MatchString(svc.Image) {
					t.Errorf("service %s: image %q is not pinned to a release", name, svc.Image)
				}
			case svc.Build != nil:
				ctx := filepath.Join(envoyDir, filepath.FromSlash(svc.Build.Context))
				if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
					t.Errorf("service %s: build context %s is not the repository root: %v", name, ctx, err)
				}
				df := filepath.Join(ctx, svc.Build.Dockerfile)
				if svc.Build.Target != "" && !slices.Contains(dockerStages(t, df), svc.Build.Target) {
					t.Errorf("service %s: %s has no stage %q", name, df, svc.Build.Target)
				}
			default:
				t.Errorf("service %s: neither image nor build", name)
			}
			for dep := range svc.DependsOn {
				if _, ok := cf.Services[dep]; !ok {
					t.Errorf("service %s depends on unknown service %s", name, dep)
				}
			}
			for _, m := range svc.mounts(t) {
				if m.volume {
					if _, ok := cf.Volumes[m.source]; !ok {
						t.Errorf("service %s: volume %q is not declared", name, m.source)
					}
				} else if _, err := os.Stat(filepath.Join(envoyDir, m.source)); err != nil {
					t.Errorf("service %s: bind mount: %v", name, err)
				}
			}
		}
		if got := cf.Services[composeKratos].Image; got != "oryd/kratos:v1.3.1" {
			t.Errorf("Kratos image %q, want oryd/kratos:v1.3.1 (the version the project is tested against)", got)
		}
		if got := cf.Services[composeEnvoy].Image; !strings.HasPrefix(got, "envoyproxy/envoy:v1.37.") {
			t.Errorf("Envoy image %q, want envoyproxy/envoy:v1.37.x (the version envoy.yaml targets)", got)
		}
		if b := cf.Services[composeServer].Build; b == nil || b.Target != "" || b.Dockerfile != "Dockerfile" {
			t.Errorf("service %s must be the runtime image of the top-level Dockerfile, got build %+v", composeServer, b)
		}
	})

	envoy := cf.Services[composeEnvoy]
	t.Run("Envoy runs envoy.yaml and publishes its listener", func(t *testing.T) {
		cfgs := flagValues(envoy.Command, "-c")
		if len(cfgs) != 1 {
			t.Fatalf("envoy command %q: want one -c", envoy.Command)
		}
		if got := envoy.hostFile(t, composeEnvoy, cfgs[0]); filepath.Clean(got) != filepath.Clean(envoyConfig) {
			t.Errorf("Envoy runs %s, want %s", got, envoyConfig)
		}
		port := s.listener.GetAddress().GetSocketAddress().GetPortValue()
		pubs := envoy.published(t)
		if !slices.ContainsFunc(pubs, func(p published) bool { return p.containerP == port && p.ip == "127.0.0.1" }) {
			t.Errorf("Envoy ports %q do not publish the listener port %d on 127.0.0.1", envoy.Ports, port)
		}
		for _, p := range pubs {
			if p.ip != "127.0.0.1" {
				t.Errorf("Envoy port %+v: publish on the host's loopback only", p)
			}
		}
	})

	t.Run("the server publishes a JWKS that exists when it starts", func(t *testing.T) {
		cfg := serverConfig(t, composeServer, cf.Services[composeServer].Environment)
		if cfg.JWKSPublish == "" {
			t.Fatalf("service %s: no %s: Envoy's remote_jwks would get 404", composeServer, config.EnvName("jwks-publish"))
		}
		checkGeneratedFile(t, cf, composeServer, cfg.JWKSPublish)
		if m, _, _ := cf.Services[composeServer].resolve(t, cfg.JWKSPublish); !slices.Contains(cf.Services[composeServer].Volumes, m.source+":"+m.target+":ro") {
			t.Errorf("service %s: the JWKS volume %s is not mounted read-only", composeServer, m.source)
		}
	})

	t.Run("only Kratos and the key writer mount the private key", func(t *testing.T) {
		k := cf.Services[composeKratos]
		var private mount
		found := false
		for name, tpl := range kratosTemplates(composeKratosConfig(t, cf)) {
			u, _ := tpl.(map[string]any)["jwks_url"].(string)
			p, ok := strings.CutPrefix(u, "file://")
			if !ok {
				t.Fatalf("template %s: jwks_url %q is no file", name, u)
			}
			m, _, ok := k.resolve(t, p)
			if !ok || !m.volume || (found && m.source != private.source) {
				t.Fatalf("template %s: jwks_url %s is not in the one key volume", name, u)
			}
			private, found = m, true
		}
		if !found {
			t.Fatal("Kratos has no tokenizer template")
		}
		for name, svc := range cf.Services {
			for _, m := range svc.mounts(t) {
				if !m.volume || m.source != private.source {
					continue
				}
				script := strings.Join(append(slices.Clone(svc.Entrypoint), svc.Command...), " ")
				if name != composeKratos && !strings.Contains(script, "jwks generate") {
					t.Errorf("service %s mounts %s, the volume of the tokenizer's private key", name, private.source)
				}
			}
		}
	})

	t.Run("clusters point at compose services", func(t *testing.T) {
		for name, c := range s.clusters {
			if c.GetType() != clusterv3.Cluster_STRICT_DNS {
				t.Errorf("cluster %s: want STRICT_DNS on a compose service name", name)
			}
			for _, ep := range c.GetLoadAssignment().GetEndpoints() {
				for _, lb := range ep.GetLbEndpoints() {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					if _, ok := cf.Services[sa.GetAddress()]; !ok {
						t.Errorf("cluster %s: address %q is no compose service", name, sa.GetAddress())
					}
					if _, ok := envoy.DependsOn[sa.GetAddress()]; !ok {
						t.Errorf("service %s does not depend on %s, which its cluster %s uses", composeEnvoy, sa.GetAddress(), name)
					}
				}
			}
		}
		srv := cf.Services[composeServer]
		cfg := serverConfig(t, composeServer, srv.Environment)
		for cluster, addr := range map[string]struct{ flag, addr string }{authzCluster: {"--grpc-addr", cfg.GRPCAddr}, jwksCluster: {"--http-addr", cfg.HTTPAddr}} {
			for _, ep := range s.clusters[cluster].GetLoadAssignment().GetEndpoints() {
				for _, lb := range ep.GetLbEndpoints() {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					if sa.GetAddress() != composeServer || sa.GetPortValue() != addrPort(t, addr.addr) {
						t.Errorf("cluster %s: %s:%d, want %s:%d (the server's %s)", cluster, sa.GetAddress(), sa.GetPortValue(), composeServer, addrPort(t, addr.addr), addr.flag)
					}
				}
			}
		}
	})

	kcfg := composeKratosConfig(t, cf)
	t.Run("Kratos issues what jwt_authn accepts", func(t *testing.T) {
		base := lookupString(t, kcfg, "serve", "public", "base_url")
		for name, p := range s.jwt.GetProviders() {
			if p.GetIssuer() != base {
				t.Errorf("provider %s: issuer %q, but the compose Kratos' serve.public.base_url (its iss claim) is %q", name, p.GetIssuer(), base)
			}
		}
		// The browser and curl on the host reach Kratos at base_url.
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := lookup(kcfg, "serve", "public", "port")
		kp, _ := port.(float64)
		hostPort, _ := strconv.ParseUint(u.Port(), 10, 16)
		if !slices.ContainsFunc(cf.Services[composeKratos].published(t), func(p published) bool {
			return p.ip == u.Hostname() && p.host == uint32(hostPort) && p.containerP == uint32(kp)
		}) {
			t.Errorf("Kratos base_url %s is not published: ports %q, serve.public.port %v", base, cf.Services[composeKratos].Ports, port)
		}
		if host, _ := lookup(kcfg, "serve", "public", "host"); host != "0.0.0.0" {
			t.Errorf("Kratos serve.public.host = %v: in a container it must listen on 0.0.0.0", host)
		}
	})

	t.Run("the server reaches Kratos and asks for templates it has", func(t *testing.T) {
		cfg := serverConfig(t, composeServer, cf.Services[composeServer].Environment)
		u, err := url.Parse(cfg.OryURL)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := lookup(kcfg, "serve", "public", "port")
		kp, _ := port.(float64)
		if u.Hostname() != composeKratos || u.Port() != strconv.Itoa(int(kp)) {
			t.Errorf("--ory-url %s, want the compose service %s on serve.public.port %v", cfg.OryURL, composeKratos, port)
		}
		templates := kratosTemplates(kcfg)
		for _, tpl := range append([]string{cfg.TokenizeAs}, routeTemplates(t, s)...) {
			tm, ok := templates[tpl].(map[string]any)
			if !ok {
				t.Errorf("template %q is not in the compose Kratos' tokenizer templates", tpl)
				continue
			}
			if _, ok := tm["ttl"]; !ok {
				t.Errorf("template %q has no ttl: Kratos would mint already expired JWTs", tpl)
			}
		}
	})

	t.Run("Kratos' files resolve", func(t *testing.T) {
		k := cf.Services[composeKratos]
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for _, e := range v {
					walk(e)
				}
			case []any:
				for _, e := range v {
					walk(e)
				}
			case string:
				if !strings.HasPrefix(v, "file://") {
					return
				}
				p := strings.TrimPrefix(v, "file://")
				if !path.IsAbs(p) {
					p = path.Join(k.WorkingDir, p)
				}
				if m, _, ok := k.resolve(t, p); ok && m.volume {
					checkGeneratedFile(t, cf, composeKratos, p)
				} else {
					k.hostFile(t, composeKratos, p)
				}
			}
		}
		walk(kcfg)
	})
}

// checkGeneratedFile: the container path p of service svc lies in a volume
// that a one-shot service writes the file into before svc starts.
func checkGeneratedFile(t *testing.T, cf composeFile, svc, p string) {
	t.Helper()
	m, rel, ok := cf.Services[svc].resolve(t, p)
	if !ok || !m.volume {
		t.Errorf("service %s: %s is not in a volume", svc, p)
		return
	}
	for name, w := range cf.Services {
		for _, wm := range w.mounts(t) {
			if !wm.volume || wm.source != m.source {
				continue
			}
			script := strings.Join(append(slices.Clone(w.Entrypoint), w.Command...), " ")
			if !strings.Contains(script, "> "+path.Base(rel)) {
				continue
			}
			if dep, ok := cf.Services[svc].DependsOn[name]; !ok || dep.Condition != "service_completed_successfully" {
				t.Errorf("service %s reads %s, which %s writes, but does not wait for it to complete", svc, p, name)
			}
			return
		}
	}
	t.Errorf("service %s: no service writes %s into volume %s", svc, rel, m.source)
}

// dockerStages lists the stage names (FROM ... AS name) of a Dockerfile.
func dockerStages(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, ins := range dockerInstructions(t, path) {
		if ins.cmd == "FROM" {
			f := strings.Fields(ins.args)
			if len(f) >= 3 && strings.EqualFold(f[len(f)-2], "AS") {
				out = append(out, f[len(f)-1])
			}
		}
	}
	return out
}
