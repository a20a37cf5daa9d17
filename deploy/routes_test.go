package deploy_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// The directories whose YAML files are searched for routes files, relative
// to deploy/, and the JSON Schema of a routes file.
var routesRoots = []string{".", "../docs"}

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
