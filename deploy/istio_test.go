package deploy_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
)

// istioResource is a custom resource with its spec kept as JSON, so it can be
// parsed strictly with protojson into the istio.io/api type of its kind.
type istioResource struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
	file string
}

// istioResources are the parsed files of deploy/istio.
type istioResources struct {
	meshConfigs []*meshv1alpha1.MeshConfig
	providers   []*meshv1alpha1.MeshConfig_ExtensionProvider
	authz       map[string]*securityv1beta1.AuthorizationPolicy // by file
	reqAuthn    map[string]*securityv1beta1.RequestAuthentication
	meta        map[string]istioResource
}

func loadIstio(t *testing.T) istioResources {
	t.Helper()
	out := istioResources{
		authz:    map[string]*securityv1beta1.AuthorizationPolicy{},
		reqAuthn: map[string]*securityv1beta1.RequestAuthentication{},
		meta:     map[string]istioResource{},
	}
	for _, f := range yamlFiles(t, istioDir) {
		var r istioResource
		if err := yaml.UnmarshalStrict(readFile(t, f), &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		r.file = filepath.Base(f)
		if r.Metadata.Name == "" || r.Metadata.Namespace == "" {
			t.Errorf("%s: metadata needs name and namespace", f)
		}
		out.meta[r.file] = r
		switch r.APIVersion + " " + r.Kind {
		case "install.istio.io/v1alpha1 IstioOperator":
			// Only meshConfig is set here; parse it as the mesh's own type.
			var spec struct {
				MeshConfig json.RawMessage `json:"meshConfig"`
			}
			if err := yaml.UnmarshalStrict(r.Spec, &spec); err != nil {
				t.Fatalf("%s: spec: %v", f, err)
			}
			var mc meshv1alpha1.MeshConfig
			if err := strict.Unmarshal(spec.MeshConfig, &mc); err != nil {
				t.Fatalf("%s: meshConfig: strict protojson into MeshConfig: %v", f, err)
			}
			out.meshConfigs = append(out.meshConfigs, &mc)
			out.providers = append(out.providers, mc.GetExtensionProviders()...)
		case "security.istio.io/v1 AuthorizationPolicy":
			var p securityv1beta1.AuthorizationPolicy
			if err := strict.Unmarshal(r.Spec, &p); err != nil {
				t.Fatalf("%s: strict protojson into AuthorizationPolicy: %v", f, err)
			}
			out.authz[r.file] = &p
		case "security.istio.io/v1 RequestAuthentication":
			var p securityv1beta1.RequestAuthentication
			if err := strict.Unmarshal(r.Spec, &p); err != nil {
				t.Fatalf("%s: strict protojson into RequestAuthentication: %v", f, err)
			}
			out.reqAuthn[r.file] = &p
		default:
			t.Errorf("%s: unexpected %s %s", f, r.APIVersion, r.Kind)
		}
	}
	return out
}

// claimKey matches request.auth.claims[NAME].
var claimKey = regexp.MustCompile(`^request\.auth\.claims\[([a-z_]+)\]$`)

// kratosClaims are the claims Kratos v1.3.1 sets on every tokenized JWT
// (docs/ARCHITECTURE.md, facts about Kratos); the claims mapper adds more.
var kratosClaims = []string{"sub", "sid", "iss", "iat", "nbf", "exp", "jti"}

func TestIstio(t *testing.T) {
	res := loadIstio(t)

	var provider *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider
	var providerName string
	t.Run("extension provider", func(t *testing.T) {
		if len(res.providers) != 1 {
			t.Fatalf("want one extension provider, got %d", len(res.providers))
		}
		providerName = res.providers[0].GetName()
		provider = res.providers[0].GetEnvoyExtAuthzGrpc()
		if provider == nil {
			t.Fatalf("provider %s is not envoyExtAuthzGrpc", providerName)
		}
		if provider.GetPort() != addrPort(t, config.DefaultGRPCAddr) {
			t.Errorf("port %d, want the server's gRPC port (%s)", provider.GetPort(), config.DefaultGRPCAddr)
		}
		if d := provider.GetTimeout().AsDuration(); d <= config.DefaultWhoamiTimeout {
			t.Errorf("timeout %s must exceed the default --whoami-timeout %s (unset, Istio waits 600s)", d, config.DefaultWhoamiTimeout)
		}
		if provider.GetFailOpen() {
			t.Error("failOpen is true: an unreachable server would let every request through")
		}
		if provider.GetStatusOnError() != "503" {
			t.Errorf("statusOnError %q, want 503", provider.GetStatusOnError())
		}
	})

	// The route table matches the path as Envoy forwards it, which needs
	// normalize_path and merge_slashes (docs/routes.md): Istio's
	// MERGE_SLASHES, or DECODE_AND_MERGE_SLASHES, which also decodes %2F
	// and %5C. A policy that excludes paths (notPaths) needs the decoding:
	// without it, /public/..%2Fadmin is under /public/* to the policy and
	// /admin to an upstream that decodes it.
	t.Run("path normalization", func(t *testing.T) {
		if len(res.meshConfigs) != 1 {
			t.Fatalf("want one meshConfig, got %d", len(res.meshConfigs))
		}
		n := res.meshConfigs[0].GetPathNormalization().GetNormalization()
		switch n {
		case meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES, meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES:
		default:
			t.Fatalf("pathNormalization %v: the route table needs normalize_path and merge_slashes (MERGE_SLASHES or DECODE_AND_MERGE_SLASHES)", n)
		}
		for file, p := range res.authz {
			for _, r := range p.GetRules() {
				for _, to := range r.GetTo() {
					if len(to.GetOperation().GetNotPaths()) > 0 && n != meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES {
						t.Errorf("%s: notPaths %v under pathNormalization %v: an escaped slash reads as one path to the policy and another to the upstream; use DECODE_AND_MERGE_SLASHES", file, to.GetOperation().GetNotPaths(), n)
					}
				}
			}
		}
	})

	t.Run("CUSTOM policy on the ingress gateway", func(t *testing.T) {
		var custom int
		for file, p := range res.authz {
			if p.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
				continue
			}
			custom++
			if got := p.GetProvider().GetName(); got != providerName {
				t.Errorf("%s: provider %q, want the extension provider %q", file, got, providerName)
			}
			if p.GetSelector().GetMatchLabels()["istio"] != "ingressgateway" {
				t.Errorf("%s: selector %v, want the ingress gateway", file, p.GetSelector())
			}
			if res.meta[file].Metadata.Namespace != "istio-system" {
				t.Errorf("%s: namespace %s, want the gateway's (istio-system)", file, res.meta[file].Metadata.Namespace)
			}
			if len(p.GetRules()) == 0 {
				t.Errorf("%s: CUSTOM without rules applies to no request", file)
			}
		}
		if custom != 1 {
			t.Errorf("want one CUSTOM AuthorizationPolicy, got %d", custom)
		}
	})

	t.Run("RequestAuthentication", func(t *testing.T) {
		if len(res.reqAuthn) != 1 {
			t.Fatalf("want one RequestAuthentication, got %d", len(res.reqAuthn))
		}
		for file, ra := range res.reqAuthn {
			for _, r := range ra.GetJwtRules() {
				if u, err := url.Parse(r.GetIssuer()); err != nil || u.Scheme != "https" || u.Host == "" {
					t.Errorf("%s: issuer %q is not the https URL of Ory", file, r.GetIssuer())
				}
				if r.GetJwks() != "" {
					t.Errorf("%s: inline jwks: a copy of the keys, which goes stale on rotation; use jwksUri (the server's --jwks-publish)", file)
				}
				if r.GetJwksUri() == "" {
					t.Errorf("%s: no jwksUri", file)
				}
				if !r.GetForwardOriginalToken() {
					t.Errorf("%s: forwardOriginalToken false: the application would not see the JWT", file)
				}
			}
		}
	})

	t.Run("service policy on claims", func(t *testing.T) {
		mapper := string(readFile(t, "kratos/mesh.claims.jsonnet"))
		var selectors []*typev1beta1.WorkloadSelector
		for _, ra := range res.reqAuthn {
			selectors = append(selectors, ra.GetSelector())
		}
		var allow int
		for file, p := range res.authz {
			if p.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW {
				continue
			}
			allow++
			if !slices.ContainsFunc(selectors, func(s *typev1beta1.WorkloadSelector) bool {
				return maps.Equal(s.GetMatchLabels(), p.GetSelector().GetMatchLabels())
			}) {
				t.Errorf("%s: selects %v, which no RequestAuthentication verifies JWTs for", file, p.GetSelector())
			}
			var claims int
			for _, r := range p.GetRules() {
				for _, c := range r.GetWhen() {
					m := claimKey.FindStringSubmatch(c.GetKey())
					if m == nil {
						continue
					}
					claims++
					if !slices.Contains(kratosClaims, m[1]) && !strings.Contains(mapper, m[1]+":") {
						t.Errorf("%s: claim %q is neither a Kratos claim nor one mesh.claims.jsonnet adds", file, m[1])
					}
				}
			}
			if claims == 0 {
				t.Errorf("%s: requires no JWT claim", file)
			}
		}
		if allow == 0 {
			t.Error("no ALLOW AuthorizationPolicy on the sample service")
		}
	})

	t.Run("jwksUri is the server's JWKS on the Kubernetes Service", func(t *testing.T) {
		k := loadKubernetes(t)
		c := k.deployment.Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				env[e.Name] = e.Value
			}
		}
		cfg, err := config.Parse(nil, func(name string) string { return env[name] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.JWKSPublish == "" {
			t.Fatal("the Deployment publishes no JWKS (--jwks-publish)")
		}
		// The Service port that reaches the container port of --http-addr.
		var httpPort int32
		for _, sp := range k.service.Spec.Ports {
			for _, cp := range c.Ports {
				if (sp.TargetPort.String() == cp.Name || sp.TargetPort.IntValue() == int(cp.ContainerPort)) && uint32(cp.ContainerPort) == addrPort(t, cfg.HTTPAddr) {
					httpPort = sp.Port
				}
			}
		}
		if httpPort == 0 {
			t.Fatalf("no Service port reaches --http-addr %s", cfg.HTTPAddr)
		}
		host := k.service.Name + "." + k.kustomization.Namespace + ".svc.cluster.local"
		for file, ra := range res.reqAuthn {
			for _, r := range ra.GetJwtRules() {
				u, err := url.Parse(r.GetJwksUri())
				if err != nil {
					t.Fatalf("%s: jwksUri: %v", file, err)
				}
				if u.Scheme != "http" || u.Hostname() != host || u.Port() != strconv.Itoa(int(httpPort)) || u.Path != jwkspub.Path || u.RawQuery != "" {
					t.Errorf("%s: jwksUri %q, want http://%s:%d%s (the Service's HTTP port, the server's JWKS path)", file, r.GetJwksUri(), host, httpPort, jwkspub.Path)
				}
			}
		}
	})

	t.Run("provider is the Kubernetes Service", func(t *testing.T) {
		if provider == nil {
			t.Skip("no provider")
		}
		k := loadKubernetes(t)
		want := k.service.Name + "." + k.kustomization.Namespace + ".svc.cluster.local"
		if provider.GetService() != want {
			t.Errorf("provider service %q, want %q (deploy/kubernetes)", provider.GetService(), want)
		}
		if p := k.grpcServicePort(t); uint32(p.Port) != provider.GetPort() {
			t.Errorf("provider port %d, Service gRPC port %d", provider.GetPort(), p.Port)
		}
	})
}
