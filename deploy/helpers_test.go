package deploy_test

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The tests run in deploy/; paths are relative to it.
const (
	envoyDir      = "envoy"
	istioDir      = "istio"
	kubernetesDir = "kubernetes"
	// kratosBaseConfig is the local Kratos config (kratosdev.BaseConfig,
	// relative to the repository root).
	kratosBaseConfig = "kratos/kratos.yml"
)

// strict is protojson without tolerance: an unknown field or a misspelt
// enum is an error, never silently dropped.
var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlToJSON converts one YAML document to JSON.
func yamlToJSON(t *testing.T, path string, y []byte) []byte {
	t.Helper()
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return j
}

// loadProtoYAML strictly unmarshals a YAML file into m.
func loadProtoYAML(t *testing.T, path string, m proto.Message) {
	t.Helper()
	if err := strict.Unmarshal(yamlToJSON(t, path, readFile(t, path)), m); err != nil {
		t.Fatalf("%s: strict protojson into %T: %v", path, m, err)
	}
}

// loadYAMLMap reads a YAML file as generic maps (numbers as float64).
func loadYAMLMap(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(readFile(t, path), &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// mergeMaps merges src over dst key by key, the way Kratos merges its -c
// files: nested objects merge, anything else is replaced.
func mergeMaps(dst, src map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeMaps(dv, sv)
				continue
			}
			dst[k] = mergeMaps(nil, sv)
			continue
		}
		dst[k] = v
	}
	return dst
}

// lookup walks nested maps.
func lookup(m map[string]any, keys ...string) (any, bool) {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func lookupString(t *testing.T, m map[string]any, keys ...string) string {
	t.Helper()
	v, ok := lookup(m, keys...)
	s, isString := v.(string)
	if !ok || !isString {
		t.Fatalf("%s: missing or not a string", strings.Join(keys, "."))
	}
	return s
}

// kratosTemplates returns the tokenizer templates of a Kratos config.
func kratosTemplates(cfg map[string]any) map[string]any {
	v, _ := lookup(cfg, "session", "whoami", "tokenizer", "templates")
	m, _ := v.(map[string]any)
	return m
}

// addrPort returns the port of a listen address such as ":9001".
func addrPort(t *testing.T, addr string) uint32 {
	t.Helper()
	_, port := splitAddr(t, addr)
	return port
}

// splitAddr splits a host:port address into its host and its port.
func splitAddr(t *testing.T, addr string) (host string, port uint32) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return host, uint32(n)
}

// matchString evaluates an Envoy StringMatcher the way Envoy does for header
// names (which are lower-case).
func matchString(t *testing.T, m *matcherv3.StringMatcher, s string) bool {
	t.Helper()
	if m.GetIgnoreCase() {
		s = strings.ToLower(s)
	}
	fold := func(p string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(p)
		}
		return p
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == fold(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(s, fold(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(s, fold(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(s, fold(p.Contains))
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			t.Fatalf("regex %q: %v", p.SafeRegex.GetRegex(), err)
		}
		return re.MatchString(s)
	default:
		t.Fatalf("string matcher %v: pattern not supported by this test", m)
		return false
	}
}

// yamlFiles lists the *.yaml and *.yml files of dir.
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) == 0 {
		t.Fatalf("no YAML files in %s", dir)
	}
	return out
}

// kubeManifest decodes one manifest strictly (an unknown field is an
// error) into the k8s.io/api type of its kind, checking its apiVersion; a
// ServiceMonitor (a CRD of the Prometheus operator) becomes a map. A kind
// no test covers fails t.
func kubeManifest(t *testing.T, where string, doc []byte) (kind string, obj any) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	want := ""
	switch tm.Kind {
	case "Namespace":
		obj, want = &corev1.Namespace{}, "v1"
	case "ServiceAccount":
		obj, want = &corev1.ServiceAccount{}, "v1"
	case "ConfigMap":
		obj, want = &corev1.ConfigMap{}, "v1"
	case "Secret":
		obj, want = &corev1.Secret{}, "v1"
	case "Service":
		obj, want = &corev1.Service{}, "v1"
	case "Deployment":
		obj, want = &appsv1.Deployment{}, "apps/v1"
	case "PodDisruptionBudget":
		obj, want = &policyv1.PodDisruptionBudget{}, "policy/v1"
	case "HorizontalPodAutoscaler":
		obj, want = &autoscalingv2.HorizontalPodAutoscaler{}, "autoscaling/v2"
	case "NetworkPolicy":
		obj, want = &networkingv1.NetworkPolicy{}, "networking.k8s.io/v1"
	case "ServiceMonitor":
		obj, want = &map[string]any{}, "monitoring.coreos.com/v1"
	default:
		t.Fatalf("%s: kind %q not covered by the tests", where, tm.Kind)
	}
	if tm.APIVersion != want {
		t.Errorf("%s: apiVersion %s, want %s for %s", where, tm.APIVersion, want, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: strict into %T: %v\n%s", where, obj, err, doc)
	}
	if m, ok := obj.(*map[string]any); ok {
		obj = *m
	}
	return tm.Kind, obj
}
