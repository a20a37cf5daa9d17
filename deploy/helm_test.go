package deploy_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/internal/helmschema"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// chartDir is the Helm chart, relative to deploy/.
const chartDir = "helm/ory-ext-authz"

// The release the tests render.
const (
	releaseName      = "authz"
	releaseNamespace = "ory-ext-authz"
)

// helmCaps are the capabilities of a cluster the chart supports
// (kubeVersion >=1.27; the SDK's own default in tests is 1.20).
func helmCaps(t *testing.T) *common.Capabilities {
	t.Helper()
	kv, err := common.ParseKubeVersion("v1.33.0")
	if err != nil {
		t.Fatal(err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	return caps
}

func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return c
}

// renderChart renders the chart with vals over its values.yaml, the schema
// checked as `helm install` checks it.
func renderChart(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	c := loadChart(t)
	rv, err := chartutil.ToRenderValuesWithSchemaValidation(c, vals,
		common.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, IsInstall: true}, helmCaps(t), false)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, rv)
}

// chartRender is one rendering, decoded strictly into the Kubernetes types.
type chartRender struct {
	deployment     *appsv1.Deployment
	service        *corev1.Service
	serviceAccount *corev1.ServiceAccount
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	networkPolicy  *networkingv1.NetworkPolicy
	serviceMonitor map[string]any
	configMaps     map[string]*corev1.ConfigMap
	secrets        map[string]*corev1.Secret
	notes          string
}

func mustRender(t *testing.T, vals map[string]any) chartRender {
	t.Helper()
	files, err := renderChart(t, vals)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	r := chartRender{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for name, text := range files {
		switch {
		case strings.HasSuffix(name, "NOTES.txt"):
			r.notes = text
			continue
		case strings.TrimSpace(text) == "":
			continue
		}
		for _, doc := range strings.Split(text, "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			r.decode(t, name, []byte(doc))
		}
	}
	if r.deployment == nil || r.service == nil {
		t.Fatalf("the chart rendered no Deployment or no Service: %v", slices.Sorted(maps.Keys(files)))
	}
	return r
}

func (r *chartRender) decode(t *testing.T, name string, doc []byte) {
	t.Helper()
	_, obj := kubeManifest(t, name, doc)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		r.deployment = o
	case *corev1.Service:
		r.service = o
	case *corev1.ServiceAccount:
		r.serviceAccount = o
	case *policyv1.PodDisruptionBudget:
		r.pdb = o
	case *autoscalingv2.HorizontalPodAutoscaler:
		r.hpa = o
	case *networkingv1.NetworkPolicy:
		r.networkPolicy = o
	case *corev1.ConfigMap:
		r.configMaps[o.Name] = o
	case *corev1.Secret:
		r.secrets[o.Name] = o
	case map[string]any:
		r.serviceMonitor = o
	default:
		t.Fatalf("%s: %T does not belong in the chart", name, obj)
	}
}

// serverConfig runs the server's own config.Parse on the container's
// environment: every variable must name a flag (or one of EnvOnly), and
// the values must pass Validate. A variable from a Secret gets a stand-in.
func (r chartRender) serverConfig(t *testing.T) config.Config {
	t.Helper()
	c := r.deployment.Spec.Template.Spec.Containers[0]
	known := map[string]bool{"GOMEMLIMIT": true}
	for _, f := range config.FlagNames() {
		known[config.EnvName(f)] = true
	}
	for _, e := range config.EnvOnly() {
		known[e] = true
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if !known[e.Name] {
			t.Errorf("env %s names no flag of serve", e.Name)
		}
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.Name == config.EnvName("redis-url"):
			env[e.Name] = "rediss://:from-a-secret@redis.example:6380/0"
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "from-a-secret"
		case e.ValueFrom != nil:
			env[e.Name] = ""
		default:
			env[e.Name] = e.Value
		}
	}
	cfg, err := config.Parse(nil, func(k string) string { return env[k] }, os.Stderr)
	if err != nil {
		t.Fatalf("config.Parse refuses the chart's environment: %v", err)
	}
	return cfg
}

// portOf is the port of a listen address, as a container port.
func portOf(t *testing.T, addr string) int32 { t.Helper(); return int32(addrPort(t, addr)) }

// checkWiring checks what every rendering must hold.
func (r chartRender) checkWiring(t *testing.T) config.Config {
	t.Helper()
	cfg := r.serverConfig(t)
	pod := r.deployment.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	// Ports: the container's are the flags' ports; the Service's targets
	// name them.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	wantPorts := map[string]int32{"grpc": portOf(t, cfg.GRPCAddr), "http-health": portOf(t, cfg.HTTPAddr)}
	if cfg.ForwardAuthAddr != "" {
		wantPorts["forward-auth"] = portOf(t, cfg.ForwardAuthAddr)
	}
	if !maps.Equal(ports, wantPorts) {
		t.Errorf("container ports %v, want %v (from the flags)", ports, wantPorts)
	}
	if _, ok := ports["admin"]; ok || slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return cfg.AdminAddr != "" && p.ContainerPort == portOf(t, cfg.AdminAddr)
	}) {
		t.Error("the admin port is declared on the container")
	}
	for _, sp := range r.service.Spec.Ports {
		if sp.TargetPort.Type != intstr.String || ports[sp.TargetPort.StrVal] == 0 {
			t.Errorf("Service port %s targets %v, not a named container port", sp.Name, sp.TargetPort)
		}
		if sp.Name == "grpc" && (sp.AppProtocol == nil || *sp.AppProtocol != "grpc") {
			t.Error("the Service's grpc port lacks appProtocol grpc (Istio needs it for HTTP/2)")
		}
	}
	if !subset(r.service.Spec.Selector, r.deployment.Spec.Template.Labels) || !subset(r.deployment.Spec.Selector.MatchLabels, r.deployment.Spec.Template.Labels) {
		t.Error("the Service's or the Deployment's selector does not select the pods")
	}

	// Probes: gRPC health on the gRPC port, or HTTP with TLS on it.
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		switch {
		case p == nil:
			t.Errorf("no %s probe", name)
		case cfg.TLSCert == "" && (p.GRPC == nil || p.GRPC.Port != ports["grpc"]):
			t.Errorf("%s probe %+v, want gRPC on port %d", name, p.ProbeHandler, ports["grpc"])
		case cfg.TLSCert != "" && (p.HTTPGet == nil || p.HTTPGet.Port.StrVal != "http-health"):
			t.Errorf("%s probe %+v with TLS on the gRPC port, want HTTP on http-health", name, p.ProbeHandler)
		}
	}

	// The same hardened security context as deploy/kubernetes.
	base := loadKubernetes(t).deployment.Spec.Template.Spec
	if got, want := c.SecurityContext, base.Containers[0].SecurityContext; !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("container securityContext %+v, want deploy/kubernetes' %+v", got, want)
	}
	if pod.SecurityContext == nil || deref(pod.SecurityContext.RunAsNonRoot) != true || deref(pod.SecurityContext.RunAsUser) != distrolessNonroot ||
		pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", pod.SecurityContext)
	}
	if deref(pod.AutomountServiceAccountToken) || c.Resources.Limits.Memory().IsZero() {
		t.Error("the service account token is mounted, or there is no memory limit")
	}
	grace := int64(cfg.ShutdownDelay.Seconds() + cfg.ShutdownTimeout.Seconds() + 1)
	if deref(pod.TerminationGracePeriodSeconds) < grace {
		t.Errorf("terminationGracePeriodSeconds %d < shutdown delay + timeout + 1s (%d)", deref(pod.TerminationGracePeriodSeconds), grace)
	}

	// Files the flags name are mounted from the chart's ConfigMaps and
	// Secrets, which hold the key.
	for flagName, file := range map[string]string{"routes": cfg.Routes, "jwks-publish": cfg.JWKSPublish} {
		if file == "" {
			continue
		}
		cm, key, ok := configMapFileKey(pod, c, file)
		if !ok {
			t.Errorf("--%s %s is not mounted from a ConfigMap", flagName, file)
			continue
		}
		if own, mine := r.configMaps[cm]; mine && own.Data[key] == "" {
			t.Errorf("--%s: ConfigMap %s has no key %s", flagName, cm, key)
		}
	}
	for flagName, file := range map[string]string{"tls-cert": cfg.TLSCert, "tls-key": cfg.TLSKey, "tls-client-ca": cfg.TLSClientCA,
		"redis-secret-file": cfg.RedisSecretFile, "redis-previous-secret-file": cfg.RedisPreviousSecretFile,
		"redis-ca-file": cfg.RedisCAFile, "redis-cert-file": cfg.RedisCertFile, "redis-key-file": cfg.RedisKeyFile} {
		if file == "" {
			continue
		}
		ref, mode, ok := secretFileKey(t, pod, c, file)
		if !ok {
			t.Errorf("--%s %s is not mounted from a Secret", flagName, file)
			continue
		}
		if mode&0o004 != 0 {
			t.Errorf("--%s: the Secret's file is world-readable (mode %o)", flagName, mode)
		}
		if mode&0o040 != 0 && (pod.SecurityContext == nil || deref(pod.SecurityContext.FSGroup) != distrolessNonroot) {
			t.Errorf("--%s: mode %o needs fsGroup %d to be readable by the server", flagName, mode, distrolessNonroot)
		}
		if own, mine := r.secrets[ref.Name]; mine && len(own.Data[ref.Key]) == 0 {
			t.Errorf("--%s: Secret %s has no key %s", flagName, ref.Name, ref.Key)
		}
	}

	// PDB and HPA point at these pods.
	if r.pdb != nil && !subset(r.pdb.Spec.Selector.MatchLabels, r.deployment.Spec.Template.Labels) {
		t.Error("the PodDisruptionBudget selects other pods")
	}
	switch {
	case r.hpa != nil && r.deployment.Spec.Replicas != nil:
		t.Error("with the HPA the Deployment must not set replicas (each apply would reset the HPA's count)")
	case r.hpa != nil && (r.hpa.Spec.ScaleTargetRef.Name != r.deployment.Name || r.hpa.Spec.ScaleTargetRef.Kind != "Deployment"):
		t.Errorf("the HPA scales %+v", r.hpa.Spec.ScaleTargetRef)
	case r.hpa == nil && r.deployment.Spec.Replicas == nil:
		t.Error("without the HPA the Deployment sets no replicas")
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || !subset(tsc.LabelSelector.MatchLabels, r.deployment.Spec.Template.Labels) {
			t.Error("a topology spread constraint selects other pods")
		}
	}

	// The NetworkPolicy lets in the Service's ports and nothing else.
	if r.networkPolicy != nil {
		if !subset(r.networkPolicy.Spec.PodSelector.MatchLabels, r.deployment.Spec.Template.Labels) {
			t.Error("the NetworkPolicy selects other pods")
		}
		var open []int32
		for _, rule := range r.networkPolicy.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Error("a NetworkPolicy ingress rule opens every port")
			}
			for _, p := range rule.Ports {
				open = append(open, p.Port.IntVal)
			}
		}
		var want []int32
		for _, p := range wantPorts {
			want = append(want, p)
		}
		slices.Sort(open)
		slices.Sort(want)
		if !slices.Equal(open, want) {
			t.Errorf("the NetworkPolicy opens ports %v, want %v", open, want)
		}
		if cfg.AdminAddr != "" && slices.Contains(open, portOf(t, cfg.AdminAddr)) {
			t.Error("the NetworkPolicy opens the admin port")
		}
	}
	if r.serviceMonitor != nil {
		eps, _ := lookup(r.serviceMonitor, "spec", "endpoints")
		list, _ := eps.([]any)
		if len(list) != 1 {
			t.Fatalf("ServiceMonitor endpoints %v", eps)
		}
		ep := list[0].(map[string]any)
		if ep["port"] != "http-health" || ep["path"] != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %v, want port http-health path /metrics", ep)
		}
		sel, _ := lookup(r.serviceMonitor, "spec", "selector", "matchLabels")
		labels := map[string]string{}
		for k, v := range sel.(map[string]any) {
			labels[k] = fmt.Sprint(v)
		}
		if !subset(labels, r.service.Labels) {
			t.Errorf("the ServiceMonitor's selector %v does not select the Service %v", labels, r.service.Labels)
		}
	}

	// NOTES.txt: the Istio provider for this Service, as a MeshConfig.
	r.checkNotes(t, ports["grpc"])
	return cfg
}

// checkNotes reads the meshConfig snippet of NOTES.txt strictly as Istio's
// MeshConfig and checks that it names the Service and its gRPC port.
func (r chartRender) checkNotes(t *testing.T, grpcPort int32) {
	t.Helper()
	i := strings.Index(r.notes, "meshConfig:\n")
	if i < 0 {
		t.Fatalf("NOTES.txt has no meshConfig snippet:\n%s", r.notes)
	}
	snippet := r.notes[i:]
	if j := strings.Index(snippet, "\n\n"); j >= 0 {
		snippet = snippet[:j]
	}
	var doc struct {
		MeshConfig map[string]any `json:"meshConfig"`
	}
	if err := yaml.UnmarshalStrict([]byte(snippet), &doc); err != nil {
		t.Fatalf("NOTES.txt's snippet: %v\n%s", err, snippet)
	}
	js, err := yaml.Marshal(doc.MeshConfig)
	if err != nil {
		t.Fatal(err)
	}
	var mc meshv1alpha1.MeshConfig
	if err := strict.Unmarshal(yamlToJSON(t, "NOTES.txt", js), &mc); err != nil {
		t.Fatalf("NOTES.txt's snippet: strict protojson into MeshConfig: %v", err)
	}
	if len(mc.GetExtensionProviders()) != 1 {
		t.Fatalf("want one extension provider, got %d", len(mc.GetExtensionProviders()))
	}
	p := mc.GetExtensionProviders()[0].GetEnvoyExtAuthzGrpc()
	fqdn := r.service.Name + "." + releaseNamespace + ".svc.cluster.local"
	if p == nil || p.GetService() != fqdn || int32(p.GetPort()) != grpcPort || p.GetFailOpen() {
		t.Errorf("NOTES.txt's provider %v, want envoyExtAuthzGrpc %s:%d failing closed", p, fqdn, grpcPort)
	}
}

// routesTable is the route table of deploy/kubernetes, as chart values.
func routesTable(t *testing.T) map[string]any {
	t.Helper()
	cm := loadKubernetes(t).configMaps["ory-ext-authz-routes"]
	var table map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["routes.yaml"]), &table); err != nil {
		t.Fatal(err)
	}
	return table
}

// The value sets the chart is rendered with.
func helmValueSets(t *testing.T) map[string]map[string]any {
	t.Helper()
	jwks := loadKubernetes(t).configMaps["ory-ext-authz-jwks"].Data["jwks.public.json"]
	return map[string]map[string]any{
		"defaults": nil,
		"tls from values, mTLS": {
			"tls": map[string]any{"enabled": true, "cert": "-----BEGIN CERTIFICATE-----\n...\n", "key": "-----BEGIN PRIVATE KEY-----\n...\n",
				"clientCA": map[string]any{"enabled": true, "ca": "-----BEGIN CERTIFICATE-----\n...\n"}},
		},
		"tls from cert-manager's Secret, mTLS from another": {
			"tls": map[string]any{"enabled": true, "secretName": "authz-cert",
				"clientCA": map[string]any{"enabled": true, "secretName": "envoy-ca", "key": "bundle.pem"}},
		},
		"redis, existing Secrets": {
			"redis": map[string]any{"enabled": true,
				"secret":   map[string]any{"existingSecret": "authz-redis", "previous": true},
				"password": map[string]any{"existingSecret": "redis-auth", "key": "redis-password"}},
		},
		"redis, URL and TLS from Secrets": {
			"redis": map[string]any{"enabled": true,
				"urlSecret": map[string]any{"name": "redis-conn", "key": "url"},
				"secret":    map[string]any{"existingSecret": "authz-redis"},
				"tls":       map[string]any{"secretName": "redis-client-cert", "clientCert": true}},
		},
		"redis, the chart's Secret": {
			"redis": map[string]any{"enabled": true, "secret": map[string]any{"value": strings.Repeat("s", 32)}},
		},
		"hpa off": {"autoscaling": map[string]any{"enabled": false}, "replicaCount": 3},
		"routes and jwks": {
			"routes": map[string]any{"enabled": true, "table": routesTable(t)},
			"jwks":   map[string]any{"enabled": true, "publicJWKS": jwks},
			"config": map[string]any{"login-url": "https://auth.example.com/self-service/login/browser"},
		},
		"forward-auth, admin on all addresses, ServiceMonitor, no NetworkPolicy peers": {
			"config": map[string]any{"forward-auth-addr": ":9004", "trusted-proxies": "10.0.0.0/8", "admin-addr": ":9003",
				"grpc-addr": ":19001", "cache-max-bytes": 1 << 27, "pass-client-authorization": true, "ory-max-inflight": 32},
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
		},
	}
}

// TestHelmChart renders the chart with each value set, decodes every
// manifest strictly into the Kubernetes types, and checks the wiring the
// kustomize tests check: env the server parses, ports that match the flags,
// probes on the gRPC port, mounted files behind the file flags.
func TestHelmChart(t *testing.T) {
	for name, vals := range helmValueSets(t) {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, vals)
			cfg := r.checkWiring(t)
			switch name {
			case "defaults":
				base := loadKubernetes(t)
				if cfg.OryURL == "" || cfg.TokenizeAs != "mesh" || r.hpa == nil || r.pdb == nil || r.networkPolicy == nil || r.serviceMonitor != nil {
					t.Errorf("defaults: ory-url %q, tokenize-as %q, hpa %v, pdb %v, netpol %v, servicemonitor %v",
						cfg.OryURL, cfg.TokenizeAs, r.hpa != nil, r.pdb != nil, r.networkPolicy != nil, r.serviceMonitor != nil)
				}
				if got, want := r.deployment.Spec.Template.Spec.Containers[0].Resources, base.deployment.Spec.Template.Spec.Containers[0].Resources; !equality.Semantic.DeepEqual(got, want) {
					t.Errorf("resources %v, want deploy/kubernetes' %v", got, want)
				}
				if r.hpa.Spec.MinReplicas == nil || *r.hpa.Spec.MinReplicas != *base.hpa.Spec.MinReplicas || r.hpa.Spec.MaxReplicas != base.hpa.Spec.MaxReplicas {
					t.Error("the HPA's bounds differ from deploy/kubernetes'")
				}
			case "tls from values, mTLS":
				s := r.secrets[releaseName+"-ory-ext-authz-tls"]
				if s == nil || s.Type != corev1.SecretTypeTLS || len(s.Data["ca.crt"]) == 0 || cfg.TLSClientCA == "" {
					t.Errorf("the chart's TLS Secret %v, client CA %q", s, cfg.TLSClientCA)
				}
			case "tls from cert-manager's Secret, mTLS from another":
				if len(r.secrets) != 0 {
					t.Errorf("the chart made Secrets next to existing ones: %v", r.secrets)
				}
				ref, _, ok := secretFileKey(t, r.deployment.Spec.Template.Spec, r.deployment.Spec.Template.Spec.Containers[0], cfg.TLSClientCA)
				if !ok || ref.Name != "envoy-ca" || ref.Key != "bundle.pem" {
					t.Errorf("client CA from %+v", ref)
				}
			case "redis, existing Secrets":
				if cfg.RedisURL == "" || cfg.RedisSecretFile == "" || cfg.RedisPreviousSecretFile == "" || string(cfg.RedisPassword) != "from-a-secret" {
					t.Errorf("redis: url set %v, secret file %q, previous %q, password from a Secret %v",
						cfg.RedisURL != "", cfg.RedisSecretFile, cfg.RedisPreviousSecretFile, cfg.RedisPassword != "")
				}
				if len(r.secrets) != 0 {
					t.Errorf("the chart made Secrets next to existing ones: %v", r.secrets)
				}
			case "redis, URL and TLS from Secrets":
				c := r.deployment.Spec.Template.Spec.Containers[0]
				i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == config.EnvName("redis-url") })
				if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef.Name != "redis-conn" {
					t.Errorf("--redis-url is not taken from the Secret redis-conn: %+v", c.Env)
				}
				if cfg.RedisCAFile == "" || cfg.RedisCertFile == "" || cfg.RedisKeyFile == "" {
					t.Errorf("Redis TLS files: ca %q cert %q key %q", cfg.RedisCAFile, cfg.RedisCertFile, cfg.RedisKeyFile)
				}
			case "redis, the chart's Secret":
				s := r.secrets[releaseName+"-ory-ext-authz-redis"]
				if s == nil || string(s.Data["secret"]) != strings.Repeat("s", 32) {
					t.Errorf("the chart's Redis Secret %v", s)
				}
				if r.deployment.Spec.Template.Annotations["checksum/redis"] == "" {
					t.Error("no checksum of the Redis Secret on the pods: a new secret would not roll them")
				}
			case "hpa off":
				if r.hpa != nil || deref(r.deployment.Spec.Replicas) != 3 {
					t.Errorf("hpa %v, replicas %v", r.hpa != nil, r.deployment.Spec.Replicas)
				}
			case "routes and jwks":
				cm := r.configMaps[releaseName+"-ory-ext-authz-routes"]
				if cm == nil {
					t.Fatal("no routes ConfigMap")
				}
				table, err := routes.Parse([]byte(cm.Data["routes.yaml"]))
				if err != nil || len(table.Rules()) != len(routesTable(t)["rules"].([]any)) {
					t.Errorf("the rendered route table does not load as the values' table: %v", err)
				}
				checkPublicJWKS(t, "the chart's JWKS ConfigMap", r.configMaps[releaseName+"-ory-ext-authz-jwks"].Data["jwks.public.json"])
			default:
				if cfg.ForwardAuthAddr != ":9004" || r.serviceMonitor == nil || cfg.CacheMaxBytes != 1<<27 || !cfg.PassClientAuthorization || cfg.OryMaxInflight != 32 {
					t.Errorf("forward-auth %q, servicemonitor %v, cache-max-bytes %d, pass-client-authorization %v",
						cfg.ForwardAuthAddr, r.serviceMonitor != nil, cfg.CacheMaxBytes, cfg.PassClientAuthorization)
				}
			}
		})
	}
}

// TestHelmChartRefuses: values the schema or the templates refuse, each
// with a message that says why.
func TestHelmChartRefuses(t *testing.T) {
	tests := map[string]struct {
		vals map[string]any
		want string
	}{
		"unknown top-level key":     {map[string]any{"replicas": 3}, "additional properties 'replicas' not allowed"},
		"unknown flag":              {map[string]any{"config": map[string]any{"ory-uri": "http://x"}}, "additional properties 'ory-uri' not allowed"},
		"flag of the wrong type":    {map[string]any{"config": map[string]any{"cache-max-bytes": "64Mi"}}, "cache-max-bytes"},
		"not a duration":            {map[string]any{"config": map[string]any{"whoami-timeout": "1 second"}}, "whoami-timeout"},
		"unknown key in an object":  {map[string]any{"redis": map[string]any{"enabled": true, "passwort": "x"}}, "additional properties 'passwort' not allowed"},
		"redis without a secret":    {map[string]any{"redis": map[string]any{"enabled": true}}, "redis.secret.existingSecret"},
		"redis secret too short":    {map[string]any{"redis": map[string]any{"enabled": true, "secret": map[string]any{"value": "short"}}}, "at least 32 bytes"},
		"tls without a certificate": {map[string]any{"tls": map[string]any{"enabled": true}}, "tls.secretName"},
		"routes without a table":    {map[string]any{"routes": map[string]any{"enabled": true}}, "routes.table"},
	}
	// Every flag the chart sets itself is refused in config, naming the
	// value to use.
	for _, f := range helmschema.ManagedFlags {
		vals := map[string]any{
			"routes": map[string]any{"enabled": true, "table": map[string]any{"rules": []any{}}},
			"jwks":   map[string]any{"enabled": true, "publicJWKS": "{}"},
			"tls":    map[string]any{"enabled": true, "secretName": "x", "clientCA": map[string]any{"enabled": true}},
			"redis": map[string]any{"enabled": true, "secret": map[string]any{"existingSecret": "x", "previous": true},
				"tls": map[string]any{"secretName": "x", "clientCert": true}},
			"config": map[string]any{f: "1s"},
		}
		tests["config."+f+" next to the chart's own"] = struct {
			vals map[string]any
			want string
		}{vals, "config." + f + ": the chart sets this flag from"}
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(t, tt.vals)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("render: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestHelmValuesFileUnknownKey: a values file with an unknown key, read as
// `helm install -f` reads it, fails the schema.
func TestHelmValuesFileUnknownKey(t *testing.T) {
	c := loadChart(t)
	for name, text := range map[string]string{
		"top level": "replicaCount: 2\nreplicas: 3\n",
		"config":    "config:\n  tokenize-as: mesh\n  tokenise-as: mesh\n",
		"nested":    "autoscaling:\n  enabled: true\n  minReplica: 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			vals, err := common.ReadValuesFile(path)
			if err != nil {
				t.Fatal(err)
			}
			merged, err := chartutil.CoalesceValues(c, vals)
			if err != nil {
				t.Fatal(err)
			}
			if err := chartutil.ValidateAgainstSchema(c, merged); err == nil || !strings.Contains(err.Error(), "additional properties") {
				t.Fatalf("schema: %v, want an unknown key refused", err)
			}
		})
	}
	// The chart's own values pass.
	merged, err := chartutil.CoalesceValues(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := chartutil.ValidateAgainstSchema(c, merged); err != nil {
		t.Fatalf("the chart's values.yaml fails its schema: %v", err)
	}
}

// TestHelmSchemaFresh: the committed values.schema.json is what the flag
// table generates, and its config object lists exactly the flags of serve.
func TestHelmSchemaFresh(t *testing.T) {
	want, err := helmschema.Generate()
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, filepath.Join(chartDir, "values.schema.json"))
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run make helm-schema and commit it", helmschema.Path)
	}
	props := helmschema.Schema()["properties"].(map[string]any)["config"].(map[string]any)["properties"].(map[string]any)
	names := slices.Sorted(maps.Keys(props))
	flags := config.FlagNames()
	slices.Sort(flags)
	if !slices.Equal(names, flags) {
		t.Errorf("schema config keys %v, flags %v", names, flags)
	}
	// Every flag the templates manage exists.
	for _, f := range helmschema.ManagedFlags {
		if !slices.Contains(flags, f) {
			t.Errorf("managed flag %q is not a flag of serve", f)
		}
	}
	// And every flag the templates refuse in config is in ManagedFlags.
	helpers := string(readFile(t, filepath.Join(chartDir, "templates", "_helpers.tpl")))
	for _, m := range regexp.MustCompile(`set \$managed "([a-z-]+)"`).FindAllStringSubmatch(helpers, -1) {
		if !slices.Contains(helmschema.ManagedFlags, m[1]) {
			t.Errorf("_helpers.tpl manages %q, which helmschema.ManagedFlags lacks", m[1])
		}
	}
}

// TestHelmLint runs Helm's linter on the chart with the value sets.
func TestHelmLint(t *testing.T) {
	kv, err := common.ParseKubeVersion("v1.33.0")
	if err != nil {
		t.Fatal(err)
	}
	for name, vals := range helmValueSets(t) {
		t.Run(name, func(t *testing.T) {
			res := lint.RunAll(chartDir, vals, releaseNamespace, lint.WithKubeVersion(kv))
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestHelmEveryFlag: every flag of serve the chart does not set itself
// passes the schema with a value of its kind and reaches the container as
// its variable, with that value as the server reads it.
func TestHelmEveryFlag(t *testing.T) {
	for _, f := range config.Flags() {
		if slices.Contains(helmschema.ManagedFlags, f.Name) {
			continue
		}
		var v any
		var want string
		switch f.Kind {
		case config.KindInteger:
			v, want = 1<<40, "1099511627776"
		case config.KindBoolean:
			v, want = true, "true"
		case config.KindDuration:
			v, want = "1m30s", "1m30s"
		default:
			v, want = "x-"+f.Name, "x-"+f.Name
			if strings.HasSuffix(f.Name, "-addr") {
				v, want = "127.0.0.1:7777", "127.0.0.1:7777"
			}
		}
		t.Run(f.Name, func(t *testing.T) {
			files, err := renderChart(t, map[string]any{"config": map[string]any{f.Name: v}})
			if err != nil {
				t.Fatalf("config.%s: %v", f.Name, err)
			}
			var d appsv1.Deployment
			if err := yaml.Unmarshal([]byte(files["ory-ext-authz/templates/deployment.yaml"]), &d); err != nil {
				t.Fatal(err)
			}
			env := d.Spec.Template.Spec.Containers[0].Env
			i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == f.Env })
			if i < 0 || env[i].Value != want {
				t.Errorf("config.%s: %s is %+v, want %q", f.Name, f.Env, env, want)
			}
		})
	}
}
