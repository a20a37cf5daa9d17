package deploy_test

import (
	"bytes"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// The directories whose YAML files are searched for routes files, relative
// to deploy/ (the make run demo's table included), and the JSON Schema of a
// routes file.
var routesRoots = []string{".", "../docs", "../internal/demo"}

const routesSchema = "../docs/routes.schema.json"

// knownRoutesFiles are the routes files shipped today (a ConfigMap's as
// FILE:KEY). shippedRoutesFiles must find each of them: a renamed key or a
// file the search no longer recognizes fails here, not silently.
var knownRoutesFiles = []string{
	"../docs/routes.example.yaml",
	"kubernetes/configmap-routes.yaml:routes.yaml",
}

// routesFile is one routes file the repository ships.
type routesFile struct {
	where string // the file, or FILE:KEY for a key of a ConfigMap
	data  []byte
	plain bool // a file of its own (not a ConfigMap's key)
}

// isRoutesDoc tells a routes file by its content: a YAML mapping with
// `rules` and no Kubernetes kind.
func isRoutesDoc(b []byte) bool {
	var top map[string]any
	if yaml.Unmarshal(b, &top) != nil {
		return false
	}
	_, rules := top["rules"]
	_, kind := top["kind"]
	return rules && !kind
}

// shippedRoutesFiles walks routesRoots for every routes file: a YAML file
// that is one (isRoutesDoc) or whose name says so (so a broken one is not
// skipped), and every key of a ConfigMap that is one or whose name says
// so. ConfigMaps are decoded strictly as corev1.ConfigMap first.
func shippedRoutesFiles(t *testing.T) []routesFile {
	t.Helper()
	var out []routesFile
	for _, root := range routesRoots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "templates" {
				// A Helm chart's templates are Go templates, not YAML:
				// deploy/helm_test.go renders them and loads the routes
				// ConfigMap they make.
				if _, err := os.Stat(filepath.Join(filepath.Dir(p), "Chart.yaml")); err == nil {
					return filepath.SkipDir
				}
			}
			ext := filepath.Ext(p)
			if d.IsDir() || (ext != ".yaml" && ext != ".yml") {
				return nil
			}
			b := readFile(t, p)
			named := strings.Contains(filepath.Base(p), "routes")
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(b, &tm); err == nil && tm.Kind == "ConfigMap" {
				var cm corev1.ConfigMap
				if err := yaml.UnmarshalStrict(b, &cm); err != nil {
					t.Fatalf("%s: strict into %T: %v", p, &cm, err)
				}
				for key, v := range cm.Data {
					if isRoutesDoc([]byte(v)) || strings.Contains(key, "routes") {
						out = append(out, routesFile{where: p + ":" + key, data: []byte(v)})
					}
				}
				return nil
			}
			if named || isRoutesDoc(b) {
				out = append(out, routesFile{where: p, data: b, plain: true})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(out, func(a, b routesFile) int { return strings.Compare(a.where, b.where) })
	var found []string
	for _, f := range out {
		found = append(found, f.where)
	}
	for _, want := range knownRoutesFiles {
		if !slices.Contains(found, want) {
			t.Errorf("routes file %s not found among %v", want, found)
		}
	}
	return out
}

// compileRoutesSchema compiles docs/routes.schema.json.
func compileRoutesSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(readFile(t, routesSchema)))
	if err != nil {
		t.Fatalf("%s: %v", routesSchema, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("routes.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("routes.schema.json")
	if err != nil {
		t.Fatalf("%s: %v", routesSchema, err)
	}
	return sch
}

// TestShippedRoutesFiles: every routes file under deploy/ and docs/, a
// ConfigMap's included, loads with the server's parser (routes.ParseFile
// for a file of its own, as --routes reads it; routes.Parse for a
// ConfigMap's key, which the kubelet writes to a file byte for byte),
// validates against docs/routes.schema.json as an editor would, and names
// every rule (the name is in the log lines and in a 403 of `authorize`).
func TestShippedRoutesFiles(t *testing.T) {
	sch := compileRoutesSchema(t)
	for _, f := range shippedRoutesFiles(t) {
		t.Run(f.where, func(t *testing.T) {
			var tb *routes.Table
			var err error
			if f.plain {
				tb, err = routes.ParseFile(f.where)
			} else {
				tb, err = routes.Parse(f.data)
			}
			if err != nil {
				t.Fatalf("the server refuses this routes file:\n%v", err)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(yamlToJSON(t, f.where, f.data)))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("%s refuses it: %v", routesSchema, err)
			}
			if len(tb.Rules()) == 0 {
				t.Error("no rules")
			}
			for _, r := range tb.Rules() {
				if r.Name() == "" {
					t.Errorf("%d:%d: %s has no name", r.Line(), r.Column(), r)
				}
			}
		})
	}
}

// containerEnv is the literal environment of c (no valueFrom).
func containerEnv(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// deploymentRoutes finds the routes file the Deployment serves: its
// --routes (ORY_EXT_AUTHZ_ROUTES) on a read-only ConfigMap volume mounted
// without subPath (the kubelet updates only those), a ConfigMap of the
// kustomization with that key. It returns the container's environment,
// FILE:KEY of the ConfigMap and the file.
func deploymentRoutes(t *testing.T, k kubernetesResources) (env map[string]string, where string, data []byte) {
	t.Helper()
	pod := k.deployment.Spec.Template.Spec
	c := pod.Containers[0]
	env = containerEnv(c)
	cfg := serverConfig(t, "Deployment", env)
	if cfg.Routes == "" {
		t.Fatalf("the Deployment serves no route table (%s)", config.EnvName("routes"))
	}
	cm, key, ok := configMapFileKey(pod, c, cfg.Routes)
	if !ok {
		t.Fatalf("--routes %s is on no read-only ConfigMap volume mounted without subPath (the kubelet updates only those)", cfg.Routes)
	}
	m, ok := k.configMaps[cm]
	if !ok {
		t.Fatalf("--routes %s: ConfigMap %s is not in the kustomization", cfg.Routes, cm)
	}
	v, ok := m.Data[key]
	if !ok {
		t.Fatalf("--routes %s: ConfigMap %s has no key %s", cfg.Routes, cm, key)
	}
	for _, f := range yamlFiles(t, kubernetesDir) {
		var got corev1.ConfigMap
		if yaml.Unmarshal(readFile(t, f), &got) == nil && got.Kind == "ConfigMap" && got.Name == cm {
			return env, f + ":" + key, []byte(v)
		}
	}
	t.Fatalf("ConfigMap %s: no file of %s holds it", cm, kubernetesDir)
	return nil, "", nil
}

// writeTemp writes data to a new file name in a temporary directory.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const istioReadme = "istio/README.md"

// documentedHeaders reads the identity header table of deploy/istio's
// README (the table headed "| header | claim | rules |"): for each header,
// its claim and the rules that set it.
func documentedHeaders(t *testing.T) map[string]headerUse {
	t.Helper()
	code := regexp.MustCompile("`([^`]+)`")
	out := map[string]headerUse{}
	in := false
	for _, line := range strings.Split(string(readFile(t, istioReadme)), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		switch {
		case strings.ReplaceAll(line, " ", "") == "|header|claim|rules|":
			in = true
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			in = false
			continue
		case strings.HasPrefix(line, "| ---"):
			continue
		}
		if len(cells) != 3 {
			t.Fatalf("%s: identity header row %q: want 3 cells", istioReadme, line)
		}
		h, c := code.FindStringSubmatch(cells[0]), code.FindStringSubmatch(cells[1])
		if h == nil || c == nil {
			t.Fatalf("%s: identity header row %q: want `header` and `claim`", istioReadme, line)
		}
		var rules []string
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			rules = append(rules, m[1])
		}
		slices.Sort(rules)
		out[h[1]] = headerUse{claim: c[1], rules: rules}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no identity header table (| header | claim | rules |)", istioReadme)
	}
	return out
}

// headerUse is what sets one identity header: the claim and the rules.
type headerUse struct {
	claim string
	rules []string // sorted
}

// TestIstioRoutesFile checks the Deployment's routes file against the rest
// of the Istio example: it gives the routes of envoy.yaml the settings
// envoy.yaml gives them with context_extensions; its identity headers are
// the ones the README lists, from claims the JWT has; and they reach the
// upstream through the mesh's extension provider.
func TestIstioRoutesFile(t *testing.T) {
	kube := loadKubernetes(t)
	env, where, data := deploymentRoutes(t, kube)
	table, err := routes.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	cfg := serverConfig(t, "Deployment", env)
	defaults := routes.Settings{TokenizeAs: cfg.TokenizeAs, OnMissing: routes.OnMissing(cfg.OnMissing), PassClientAuthorization: cfg.PassClientAuthorization}

	t.Run("the routes of envoy.yaml", func(t *testing.T) {
		s := loadEnvoy(t, envoyConfig)
		cf := loadCompose(t)
		envoyCfg := serverConfig(t, composeServer, cf.Services[composeServer].Environment)
		for _, vh := range s.hcm.GetRouteConfig().GetVirtualHosts() {
			for _, route := range vh.GetRoutes() {
				var ext map[string]string
				if a, ok := route.GetTypedPerFilterConfig()[extAuthzFilter]; ok {
					pr := unpack[*extauthzv3.ExtAuthzPerRoute](t, a)
					if pr.GetDisabled() {
						continue // no check: the CUSTOM policy's notPaths
					}
					ext = pr.GetCheckSettings().GetContextExtensions()
				}
				path := "/" + route.GetName() + "/page"
				if !strings.HasPrefix(path, route.GetMatch().GetPrefix()) {
					t.Fatalf("route %s: %s is not under its prefix %q", route.GetName(), path, route.GetMatch().GetPrefix())
				}
				wantTpl, wantMode := envoyCfg.TokenizeAs, string(envoyCfg.OnMissing)
				if v, ok := ext[authz.ContextTokenizeAs]; ok {
					wantTpl = v
				}
				if v, ok := ext[authz.ContextOnMissing]; ok {
					wantMode = v
				}
				r, ok := table.Match(http.MethodGet, gatewayHost, path)
				got := defaults
				if ok {
					got = r.Settings(defaults)
				}
				if got.TokenizeAs != wantTpl || string(got.OnMissing) != wantMode {
					t.Errorf("envoy.yaml route %s (%s): tokenize_as %s, on_missing %s; %s gives it %s: %s, %s", route.GetName(), path, wantTpl, wantMode, where, r, got.TokenizeAs, got.OnMissing)
				}
			}
		}
	})

	t.Run("identity headers as the README says", func(t *testing.T) {
		got := map[string]headerUse{}
		for _, r := range table.Rules() {
			for _, hc := range r.Settings(routes.Settings{}).Headers {
				u, seen := got[hc.Header]
				if seen && u.claim != hc.Claim {
					t.Errorf("%s: %s carries claim %s in one rule and %s in %s; the README's table has one claim per header", where, hc.Header, u.claim, hc.Claim, r)
				}
				u.claim = hc.Claim
				u.rules = append(u.rules, r.Name())
				got[hc.Header] = u
			}
		}
		for h := range got {
			slices.Sort(got[h].rules)
		}
		if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, table.HeaderNames()) {
			t.Fatalf("rules set %v, HeaderNames %v", names, table.HeaderNames())
		}
		doc := documentedHeaders(t)
		if !maps.EqualFunc(got, doc, func(a, b headerUse) bool { return a.claim == b.claim && slices.Equal(a.rules, b.rules) }) {
			t.Errorf("%s sets %+v; %s documents %+v", where, got, istioReadme, doc)
		}
		// Each claim is in every JWT of the templates: one Kratos sets, or
		// one the claims mapper adds.
		mapper := string(readFile(t, "kratos/mesh.claims.jsonnet"))
		for h, u := range got {
			if !slices.Contains(kratosClaims, u.claim) && !strings.Contains(mapper, u.claim+":") {
				t.Errorf("%s: claim %q is neither a Kratos claim nor one mesh.claims.jsonnet adds", h, u.claim)
			}
		}
	})

	// The READMEs and the ConfigMap's comments name the identity headers
	// too: each names all of them, and no other of their family (a name
	// sharing the prefix up to the last '-', x-user-* here).
	t.Run("identity header names in the deploy docs", func(t *testing.T) {
		names := table.HeaderNames()
		var prefixes []string
		for _, n := range names {
			if i := strings.LastIndexByte(n, '-'); i > 0 {
				prefixes = append(prefixes, n[:i+1])
			}
		}
		cm, _, _ := strings.Cut(where, ":")
		for _, doc := range []string{istioReadme, filepath.Join(kubernetesDir, "README.md"), cm} {
			text := string(readFile(t, doc))
			if doc == cm {
				// The comments, not the table itself.
				var lines []string
				for _, l := range strings.Split(text, "\n") {
					if strings.HasPrefix(l, "#") {
						lines = append(lines, l)
					}
				}
				text = strings.Join(lines, "\n")
			}
			for _, n := range names {
				if !strings.Contains(text, n) {
					t.Errorf("%s does not name the identity header %s", doc, n)
				}
			}
			for _, w := range regexp.MustCompile(`[A-Za-z0-9-]+`).FindAllString(text, -1) {
				w = strings.ToLower(w)
				if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(w, p) }) && !slices.Contains(names, w) {
					t.Errorf("%s names %s, which no rule of %s sets", doc, w, where)
				}
			}
		}
	})

	// envoyExtAuthzGrpc has no list of headers to forward: Envoy's gRPC
	// ext_authz applies the answer's mutations as they are. The HTTP
	// provider forwards only headersToUpstreamOnAllow, so one would have
	// to list the JWT's and every identity header.
	t.Run("identity headers reach the upstream", func(t *testing.T) {
		res := loadIstio(t)
		for _, p := range res.providers {
			switch {
			case p.GetEnvoyExtAuthzGrpc() != nil:
			case p.GetEnvoyExtAuthzHttp() != nil:
				allowed := p.GetEnvoyExtAuthzHttp().GetHeadersToUpstreamOnAllow()
				for _, h := range append([]string{"authorization"}, table.HeaderNames()...) {
					if !slices.ContainsFunc(allowed, func(pat string) bool { return istioStringMatch(pat, h) }) {
						t.Errorf("provider %s: headersToUpstreamOnAllow %v lacks %s", p.GetName(), allowed, h)
					}
				}
			default:
				t.Errorf("provider %s is no ext_authz provider", p.GetName())
			}
		}
	})
}

// istioStringMatch is Istio's match of a header name list entry: exact,
// "prefix*" or "*suffix", case-insensitively (header names).
func istioStringMatch(pat, s string) bool {
	pat, s = strings.ToLower(pat), strings.ToLower(s)
	switch {
	case strings.HasSuffix(pat, "*"):
		return strings.HasPrefix(s, strings.TrimSuffix(pat, "*"))
	case strings.HasPrefix(pat, "*"):
		return strings.HasSuffix(s, strings.TrimPrefix(pat, "*"))
	}
	return pat == s
}
