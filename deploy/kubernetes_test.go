package deploy_test

import (
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/jwkspub"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/routes"
)

// kustomization is the part of kustomize's Kustomization that the folder
// uses; strict parsing rejects anything else.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

type kubernetesResources struct {
	kustomization kustomization
	deployment    *appsv1.Deployment
	service       *corev1.Service
	pdb           *policyv1.PodDisruptionBudget
	hpa           *autoscalingv2.HorizontalPodAutoscaler
	configMaps    map[string]*corev1.ConfigMap // by name
	kinds         map[string]int
}

// distrolessNonroot is the uid of USER nonroot in the distroless image.
const distrolessNonroot = 65532

func loadKubernetes(t *testing.T) kubernetesResources {
	t.Helper()
	var k kubernetesResources
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(kubernetesDir, "kustomization.yaml")), &k.kustomization); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	k.kinds = map[string]int{}
	k.configMaps = map[string]*corev1.ConfigMap{}
	for _, res := range k.kustomization.Resources {
		path := filepath.Join(kubernetesDir, res)
		kind, obj := kubeManifest(t, path, readFile(t, path))
		switch o := obj.(type) {
		case *appsv1.Deployment:
			k.deployment = o
		case *corev1.Service:
			k.service = o
		case *policyv1.PodDisruptionBudget:
			k.pdb = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			k.hpa = o
		case *corev1.ConfigMap:
			k.configMaps[o.Name] = o
		case *corev1.Namespace, *corev1.ServiceAccount:
		default:
			t.Fatalf("%s: kind %s does not belong in the kustomize base", path, kind)
		}
		k.kinds[kind]++
	}
	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
		if k.kinds[kind] != 1 {
			t.Fatalf("want one %s, got %d", kind, k.kinds[kind])
		}
	}
	return k
}

// grpcServicePort is the Service port that carries ext_authz.
func (k kubernetesResources) grpcServicePort(t *testing.T) corev1.ServicePort {
	t.Helper()
	for _, p := range k.service.Spec.Ports {
		if p.AppProtocol != nil && *p.AppProtocol == "grpc" {
			return p
		}
	}
	t.Fatalf("Service %s has no port with appProtocol grpc (Istio needs it to speak HTTP/2)", k.service.Name)
	return corev1.ServicePort{}
}

func TestKubernetes(t *testing.T) {
	k := loadKubernetes(t)
	d := k.deployment
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}

	t.Run("kustomization lists every file", func(t *testing.T) {
		var files []string
		for _, f := range yamlFiles(t, kubernetesDir) {
			if b := filepath.Base(f); b != "kustomization.yaml" {
				files = append(files, b)
			}
		}
		got := slices.Sorted(slices.Values(k.kustomization.Resources))
		if slices.Sort(files); !slices.Equal(got, files) {
			t.Errorf("kustomization resources %v, files %v", got, files)
		}
		if k.kustomization.Namespace == "" {
			t.Error("kustomization sets no namespace")
		}
	})

	t.Run("configuration through real flags", func(t *testing.T) {
		checkEnvNames(t, "Deployment", env)
		cfg, err := config.Parse(nil, func(name string) string { return env[name] }, io.Discard)
		if err != nil {
			t.Fatalf("the server rejects the Deployment's environment: %v", err)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if ports["grpc"] != int32(addrPort(t, cfg.GRPCAddr)) {
			t.Errorf("container port grpc = %d, server --grpc-addr %s", ports["grpc"], cfg.GRPCAddr)
		}
		if !slices.Contains(slices.Collect(maps.Values(ports)), int32(addrPort(t, cfg.HTTPAddr))) {
			t.Errorf("no container port for --http-addr %s", cfg.HTTPAddr)
		}
		if cfg.WhoamiTimeout >= 2*time.Second {
			t.Errorf("--whoami-timeout %s is not below the proxies' 2s ext_authz timeout", cfg.WhoamiTimeout)
		}

		// Graceful shutdown fits the grace period: preStop, then the delay
		// (NOT_SERVING while still answering), the in-flight timeout and the
		// 1s HTTP shutdown of server.Run.
		var preStop time.Duration
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		need := preStop + cfg.ShutdownDelay + cfg.ShutdownTimeout + time.Second
		if grace := time.Duration(deref(pod.TerminationGracePeriodSeconds)) * time.Second; grace <= need {
			t.Errorf("terminationGracePeriodSeconds %s must exceed preStop + --shutdown-delay + --shutdown-timeout + 1s = %s", grace, need)
		}
		if cfg.ShutdownDelay == 0 && preStop == 0 {
			t.Error("neither --shutdown-delay nor a preStop sleep: endpoints would still route to a stopping pod")
		}
		// Liveness must not kill a pod that is draining.
		if lp := c.LivenessProbe; lp != nil && time.Duration(lp.PeriodSeconds*lp.FailureThreshold)*time.Second <= cfg.ShutdownDelay {
			t.Errorf("liveness fails after %ds, within --shutdown-delay %s", lp.PeriodSeconds*lp.FailureThreshold, cfg.ShutdownDelay)
		}
	})

	t.Run("publishes the JWKS of a ConfigMap", func(t *testing.T) {
		cfg, err := config.Parse(nil, func(name string) string { return env[name] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.JWKSPublish == "" {
			t.Fatalf("no %s: istiod's jwksUri would get 404", config.EnvName("jwks-publish"))
		}
		cm, key, ok := configMapFileKey(pod, c, cfg.JWKSPublish)
		if !ok {
			t.Fatalf("--jwks-publish %s is on no read-only ConfigMap volume mounted without subPath (the kubelet updates only those)", cfg.JWKSPublish)
		}
		m, ok := k.configMaps[cm]
		if !ok {
			t.Fatalf("--jwks-publish %s: ConfigMap %s is not in the kustomization", cfg.JWKSPublish, cm)
		}
		v, ok := m.Data[key]
		if !ok {
			t.Fatalf("--jwks-publish %s: ConfigMap %s has no key %s", cfg.JWKSPublish, cm, key)
		}
		// What the server would do with it at start.
		checkPublicJWKS(t, "ConfigMap "+cm, v)
	})

	t.Run("serves the route table of a ConfigMap", func(t *testing.T) {
		_, where, data := deploymentRoutes(t, k)
		cfg := serverConfig(t, "Deployment", env)
		// What serve does at start: NewWatcher loads the file and
		// authz.CheckTable vets it (a rule with on_missing: redirect needs
		// --login-url).
		w, err := routes.NewWatcher(writeTemp(t, "routes.yaml", data), routes.WatcherOptions{
			Accept: func(tb *routes.Table) error { return authz.CheckTable(tb, cfg.LoginURL != "") },
		})
		if err != nil {
			t.Fatalf("%s: a pod would not start on this table: %v", where, err)
		}
		if len(w.Table().Rules()) == 0 {
			t.Errorf("%s: no rules", where)
		}
	})

	t.Run("probes use grpc.health.v1 on the gRPC port", func(t *testing.T) {
		for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.GRPC == nil {
				t.Errorf("%s probe is not a gRPC probe", name)
				continue
			}
			if uint32(p.GRPC.Port) != addrPort(t, config.DefaultGRPCAddr) {
				t.Errorf("%s probe port %d, want %s", name, p.GRPC.Port, config.DefaultGRPCAddr)
			}
			// The probe asks for "" unless service is set; both "" and the
			// Authorization service are registered (TestEnvoyConfig checks
			// the latter against the real server).
			if s := p.GRPC.Service; s != nil && *s != "" {
				checkHealthServed(t, *s)
			}
		}
		checkHealthServed(t, "")
	})

	t.Run("hardened", func(t *testing.T) {
		if r := deref(d.Spec.Replicas); r != 2 {
			t.Errorf("replicas %d, want 2", r)
		}
		sc := c.SecurityContext
		psc := pod.SecurityContext
		if sc == nil || psc == nil {
			t.Fatal("pod and container need a securityContext")
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("runAsNonRoot is not true")
		}
		if u := deref(sc.RunAsUser); u != distrolessNonroot {
			t.Errorf("runAsUser %d, want %d (distroless nonroot)", u, distrolessNonroot)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation is not false")
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("capabilities %v, want drop ALL", sc.Capabilities)
		}
		for _, s := range []*corev1.SeccompProfile{sc.SeccompProfile, psc.SeccompProfile} {
			if s == nil || s.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("seccompProfile %v, want RuntimeDefault", s)
			}
		}
		r := c.Resources
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := r.Requests[name]; !ok {
				t.Errorf("no %s request", name)
			}
		}
		mem, ok := r.Limits[corev1.ResourceMemory]
		if !ok {
			t.Fatal("no memory limit")
		}
		cfg, err := config.Parse(nil, func(name string) string { return env[name] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if mem.Value() <= cfg.CacheMaxBytes {
			t.Errorf("memory limit %s does not fit --cache-max-bytes %d", mem.String(), cfg.CacheMaxBytes)
		}
	})

	t.Run("Service, PDB and HPA select the Deployment", func(t *testing.T) {
		labels := d.Spec.Template.Labels
		sel, err := metav1.LabelSelectorAsMap(d.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if !subset(sel, labels) {
			t.Errorf("Deployment selector %v does not match its pods %v", sel, labels)
		}
		if !subset(k.service.Spec.Selector, labels) || len(k.service.Spec.Selector) == 0 {
			t.Errorf("Service selector %v does not match the pods %v", k.service.Spec.Selector, labels)
		}
		gp := k.grpcServicePort(t)
		if gp.Port != int32(addrPort(t, config.DefaultGRPCAddr)) {
			t.Errorf("Service gRPC port %d, want %s", gp.Port, config.DefaultGRPCAddr)
		}
		names := map[string]bool{}
		for _, p := range c.Ports {
			names[p.Name] = true
		}
		for _, p := range k.service.Spec.Ports {
			if !names[p.TargetPort.String()] {
				t.Errorf("Service port %s targets %q, which is no container port name", p.Name, p.TargetPort.String())
			}
		}
		pdbSel, err := metav1.LabelSelectorAsMap(k.pdb.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if !subset(pdbSel, labels) {
			t.Errorf("PodDisruptionBudget selector %v does not match the pods", pdbSel)
		}
		if k.pdb.Spec.MinAvailable == nil || k.pdb.Spec.MinAvailable.IntValue() >= int(deref(d.Spec.Replicas)) {
			t.Errorf("PodDisruptionBudget minAvailable %v must be below the replicas (%d), or no node can drain", k.pdb.Spec.MinAvailable, deref(d.Spec.Replicas))
		}
		ref := k.hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("HPA scales %+v, want Deployment %s", ref, d.Name)
		}
		if m := deref(k.hpa.Spec.MinReplicas); m < deref(d.Spec.Replicas) {
			t.Errorf("HPA minReplicas %d is below the Deployment's %d replicas", m, deref(d.Spec.Replicas))
		}
	})
}

// subset: every pair of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// deref is *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

const redisComponentDir = "kubernetes/components/redis"

// kustomizeComponent is the part of kustomize's Component that
// components/redis uses; strict parsing rejects anything else.
type kustomizeComponent struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path   string `json:"path"`
		Target struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target"`
	} `json:"patches"`
}

// mergeDeployment applies patch to a copy of base as kustomize's strategic
// merge does for the fields the component sets: the container's env (by
// name) and volumeMounts (by mountPath), the pod's volumes (by name) and
// fsGroup. It fails t if the patch sets anything else, which this test
// would otherwise not check.
func mergeDeployment(t *testing.T, base, patch *appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	merged := base.DeepCopy()
	pod, ppod := &merged.Spec.Template.Spec, patch.Spec.Template.Spec.DeepCopy()
	if ppod.SecurityContext != nil {
		if pod.SecurityContext == nil {
			pod.SecurityContext = &corev1.PodSecurityContext{}
		}
		pod.SecurityContext.FSGroup = ppod.SecurityContext.FSGroup
		ppod.SecurityContext.FSGroup = nil
		if reflect.ValueOf(*ppod.SecurityContext).IsZero() {
			ppod.SecurityContext = nil
		}
	}
	for _, v := range ppod.Volumes {
		pod.Volumes = slices.DeleteFunc(pod.Volumes, func(o corev1.Volume) bool { return o.Name == v.Name })
		pod.Volumes = append(pod.Volumes, v)
	}
	ppod.Volumes = nil
	for i := range ppod.Containers {
		pc := &ppod.Containers[i]
		j := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == pc.Name })
		if j < 0 {
			t.Fatalf("the patch names container %q, which the Deployment does not have", pc.Name)
		}
		c := &pod.Containers[j]
		for _, e := range pc.Env {
			c.Env = slices.DeleteFunc(c.Env, func(o corev1.EnvVar) bool { return o.Name == e.Name })
			c.Env = append(c.Env, e)
		}
		for _, m := range pc.VolumeMounts {
			c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(o corev1.VolumeMount) bool { return o.MountPath == m.MountPath })
			c.VolumeMounts = append(c.VolumeMounts, m)
		}
		pc.Env, pc.VolumeMounts = nil, nil
	}
	rest := appsv1.Deployment{TypeMeta: patch.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: patch.Name}}
	rest.Spec.Template.Spec = *ppod
	want := appsv1.Deployment{TypeMeta: patch.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: patch.Name}}
	for _, pc := range ppod.Containers {
		want.Spec.Template.Spec.Containers = append(want.Spec.Template.Spec.Containers, corev1.Container{Name: pc.Name})
	}
	if !reflect.DeepEqual(rest, want) {
		t.Fatalf("the patch sets fields this test does not merge: %+v", rest.Spec)
	}
	return merged
}

// TestKubernetesRedisComponent: components/redis decodes strictly into
// k8s.io/api types and, applied to the base Deployment, configures the
// server through variables config.Parse accepts: the secret file on a
// read-only Secret volume the non-root user can read, the password from a
// secretKeyRef (never a literal), a URL without credentials. The placeholder
// secret is refused at start, so the component cannot run unchanged.
func TestKubernetesRedisComponent(t *testing.T) {
	base := loadKubernetes(t)
	var kc kustomizeComponent
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(redisComponentDir, "kustomization.yaml")), &kc); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if kc.APIVersion != "kustomize.config.k8s.io/v1alpha1" || kc.Kind != "Component" {
		t.Fatalf("components/redis is %s %s, want a kustomize.config.k8s.io/v1alpha1 Component", kc.APIVersion, kc.Kind)
	}
	listed := slices.Clone(kc.Resources)
	for _, p := range kc.Patches {
		listed = append(listed, p.Path)
	}
	var files []string
	for _, f := range yamlFiles(t, redisComponentDir) {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			files = append(files, b)
		}
	}
	if slices.Sort(files); !slices.Equal(slices.Sorted(slices.Values(listed)), files) {
		t.Errorf("the component lists %v, the folder has %v", listed, files)
	}

	secrets := map[string]*corev1.Secret{}
	for _, res := range kc.Resources {
		p := filepath.Join(redisComponentDir, res)
		var s corev1.Secret
		if err := yaml.UnmarshalStrict(readFile(t, p), &s); err != nil {
			t.Fatalf("%s: strict into %T: %v", p, &s, err)
		}
		if s.Kind != "Secret" || s.APIVersion != "v1" {
			t.Fatalf("%s: %s %s, want a v1 Secret (the only kind this test covers)", p, s.APIVersion, s.Kind)
		}
		secrets[s.Name] = &s
	}
	if len(kc.Patches) != 1 {
		t.Fatalf("%d patches, want the one of the Deployment", len(kc.Patches))
	}
	pt := kc.Patches[0]
	if pt.Target.Kind != "Deployment" || pt.Target.Name != base.deployment.Name {
		t.Fatalf("the patch targets %s %s, want Deployment %s", pt.Target.Kind, pt.Target.Name, base.deployment.Name)
	}
	var patch appsv1.Deployment
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(redisComponentDir, pt.Path)), &patch); err != nil {
		t.Fatalf("%s: strict into %T: %v", pt.Path, &patch, err)
	}
	if patch.APIVersion != "apps/v1" || patch.Name != base.deployment.Name {
		t.Fatalf("%s: %s %s, want apps/v1 %s", pt.Path, patch.APIVersion, patch.Name, base.deployment.Name)
	}
	d := mergeDeployment(t, base.deployment, &patch)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]

	// secretValue is what a secretKeyRef of the component resolves to.
	secretValue := func(ref *corev1.SecretKeySelector) (string, bool) {
		s, ok := secrets[ref.Name]
		if !ok {
			return "", false
		}
		v, ok := s.StringData[ref.Key]
		if !ok {
			b, inData := s.Data[ref.Key]
			v, ok = string(b), inData
		}
		return v, ok
	}
	env, names := map[string]string{}, map[string]string{}
	for _, e := range c.Env {
		names[e.Name] = ""
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			v, ok := secretValue(e.ValueFrom.SecretKeyRef)
			if !ok {
				t.Errorf("%s: secretKeyRef %s/%s is not a key of the component's Secret", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			env[e.Name] = v
		}
	}
	checkEnvNames(t, "Deployment with components/redis", names)
	cfg, err := config.Parse(nil, func(name string) string { return env[name] }, io.Discard)
	if err != nil {
		t.Fatalf("the server rejects the Deployment's environment with the component: %v", err)
	}
	if cfg.RedisURL == "" {
		t.Fatal("the component does not set ORY_EXT_AUTHZ_REDIS_URL")
	}
	if u, err := url.Parse(string(cfg.RedisURL)); err != nil || u.User != nil {
		t.Errorf("ORY_EXT_AUTHZ_REDIS_URL %s carries credentials; they belong in the Secret", cfg.RedisURL)
	}
	for _, e := range c.Env {
		if e.Name == config.EnvRedisPassword && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s is not taken from a Secret (secretKeyRef)", config.EnvRedisPassword)
		}
	}

	// Each secret file lies on a read-only volume of the component's
	// Secret, at an item the Secret has, readable by the container's user.
	secretFiles := map[string]string{"redis-secret-file": cfg.RedisSecretFile, "redis-previous-secret-file": cfg.RedisPreviousSecretFile, "redis-password-file": cfg.RedisPasswordFile}
	contents := map[string]string{}
	for flag, file := range secretFiles {
		if file == "" {
			continue
		}
		key, mode, ok := secretFileKey(t, pod, c, file)
		if !ok {
			t.Errorf("--%s %s is on no read-only Secret volume", flag, file)
			continue
		}
		v, ok := secretValue(key)
		if !ok {
			t.Errorf("--%s %s: the Secret %s has no key %s", flag, file, key.Name, key.Key)
		}
		contents[flag] = v
		group := pod.SecurityContext.FSGroup != nil && c.SecurityContext != nil && c.SecurityContext.RunAsGroup != nil && *pod.SecurityContext.FSGroup == *c.SecurityContext.RunAsGroup
		if mode&0o004 == 0 && (mode&0o040 == 0 || !group) {
			t.Errorf("--%s %s: mode %#o, fsGroup %v: the container's user cannot read it", flag, file, mode, pod.SecurityContext.FSGroup)
		}
	}
	if cfg.RedisTimeout >= cfg.WhoamiTimeout {
		t.Errorf("--redis-timeout %v is not below --whoami-timeout %v", cfg.RedisTimeout, cfg.WhoamiTimeout)
	}

	// The placeholder secret must not run: the server refuses it at start.
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	placeholder := cfg
	placeholder.RedisSecretFile = write("secret", contents["redis-secret-file"])
	if _, _, err := placeholder.RedisOptions(); err == nil || !strings.Contains(err.Error(), "--redis-secret-file") {
		t.Errorf("the Secret's placeholder secret is accepted (%v); it must fail the start", err)
	}
	// With a real secret in its place the options are complete.
	real := placeholder
	real.RedisSecretFile = write("real", strings.Repeat("k", redistier.MinSecretLen))
	o, ok, err := real.RedisOptions()
	if err != nil || !ok || o.Password != env[config.EnvRedisPassword] || o.Password == "" {
		t.Errorf("RedisOptions with a real secret: ok %v, password from the Secret %v, %v", ok, o.Password != "" && o.Password == env[config.EnvRedisPassword], err)
	}
}

// secretFileKey finds the Secret key mounted at file in container c: a
// read-only volumeMount of a Secret volume whose item (or, without items,
// key) is file's name. mode is the file's mode.
func secretFileKey(t *testing.T, pod corev1.PodSpec, c corev1.Container, file string) (*corev1.SecretKeySelector, int32, bool) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || !m.ReadOnly || m.SubPath != "" {
			continue
		}
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 || pod.Volumes[i].Secret == nil {
			continue
		}
		sv := pod.Volumes[i].Secret
		mode := int32(0o644)
		if sv.DefaultMode != nil {
			mode = *sv.DefaultMode
		}
		if len(sv.Items) == 0 {
			return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: sv.SecretName}, Key: rel}, mode, true
		}
		for _, it := range sv.Items {
			if path.Clean(it.Path) == rel {
				if it.Mode != nil {
					mode = *it.Mode
				}
				return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: sv.SecretName}, Key: it.Key}, mode, true
			}
		}
	}
	return nil, 0, false
}

// configMapFileKey finds the ConfigMap key mounted at file in container c:
// a read-only volumeMount without subPath of a ConfigMap volume whose item
// (or, without items, key) is file's name. The default mode (0644) lets the
// non-root user read it.
func configMapFileKey(pod corev1.PodSpec, c corev1.Container, file string) (configMap, key string, ok bool) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || !m.ReadOnly || m.SubPath != "" {
			continue
		}
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 || pod.Volumes[i].ConfigMap == nil {
			continue
		}
		cv := pod.Volumes[i].ConfigMap
		if len(cv.Items) == 0 {
			return cv.Name, rel, true
		}
		for _, it := range cv.Items {
			if path.Clean(it.Path) == rel {
				return cv.Name, it.Key, true
			}
		}
	}
	return "", "", false
}

// checkPublicJWKS: a JWKS the server publishes (jwkspub.ParsePublic, the
// rule of --jwks-publish: keys, all public, none symmetric), each key with
// kid and alg, as `jwks public` prints them.
func checkPublicJWKS(t *testing.T, where, s string) {
	t.Helper()
	set, err := jwkspub.ParsePublic([]byte(s))
	if err != nil {
		t.Errorf("%s: the server would refuse this JWKS: %v", where, err)
		return
	}
	for _, k := range set.Keys {
		if k.KeyID == "" || k.Algorithm == "" {
			t.Errorf("%s: jwks key without kid or alg", where)
		}
	}
}
