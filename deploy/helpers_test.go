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
