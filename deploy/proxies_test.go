package deploy_test

import (
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/proxytest"
)

// The shipped forward-auth proxy configs and the example values in them
// that the tests replace.
const (
	caddyDir         = "caddy"
	nginxConfig      = "nginx/nginx.conf"
	ingressNginxFile = "nginx/ingress-nginx.yaml"
	caddyfilePath    = "caddy/Caddyfile"

	// forwardAuthAddr is ory-ext-authz's --forward-auth-addr in the
	// examples, and forwardAuthPath the path that nginx's auth_request,
	// ingress-nginx's auth-url and Caddy's forward_auth ask.
	forwardAuthAddr     = "ory-ext-authz:9004"
	forwardAuthPortText = "9004"
	forwardAuthPath     = "/auth"
	exampleApp          = "app:8080"

	// authRedirectHeader is the header of a 401 or 403 answer that names
	// the login URL nginx redirects a browser to (nginx cannot pass the
	// answer's own 302 on).
	authRedirectHeader = "X-Auth-Redirect"
)

// nginxTemplate is deploy/nginx/nginx.conf as a proxytest template:
// {{listen}}, {{auth}} and {{upstream}} for its example values.
func nginxTemplate(t *testing.T) string {
	t.Helper()
	return proxytest.Substitute(t, string(readFile(t, nginxConfig)),
		"listen 80;", "listen {{listen}};",
		"http://"+forwardAuthAddr+forwardAuthPath+";", "http://{{auth}}"+forwardAuthPath+";",
		"http://"+exampleApp+";", "http://{{upstream}};",
	)
}

// caddyTemplate is deploy/caddy/Caddyfile as a proxytest template: a
// plain-HTTP site on {{port}} for any Host, {{auth}} and {{upstream}}.
func caddyTemplate(t *testing.T) string {
	t.Helper()
	return proxytest.Substitute(t, string(readFile(t, caddyfilePath)),
		"\napp.example.com {", "\nhttp://:{{port}} {",
		"forward_auth "+forwardAuthAddr+" {", "forward_auth {{auth}} {",
		"reverse_proxy "+exampleApp+"\n", "reverse_proxy {{upstream}}\n",
	)
}

// loopbackVars point a template at addresses nginx -t and caddy validate
// accept without anything listening there.
var loopbackVars = proxytest.Vars{"auth": "127.0.0.1:" + forwardAuthPortText, "upstream": "127.0.0.1:8080"}

var (
	nginxAuthSetRE  = regexp.MustCompile(`(?m)^\s*auth_request_set\s+\$(\w+)\s+\$upstream_http_(\w+);`)
	nginxSetRE      = regexp.MustCompile(`(?m)^\s*proxy_set_header\s+(\S+)\s+(.*?);`)
	nginxRedirectRE = regexp.MustCompile(`(?m)^\s*return\s+302\s+\$(\w+);`)
	caddyCopyRE     = regexp.MustCompile(`(?m)^\s*copy_headers\s+(.+)$`)
)

// nginxVar is the $upstream_http_ variable name of a header.
func nginxVar(header string) string {
	return strings.ReplaceAll(strings.ToLower(header), "-", "_")
}

// nginxCopied returns the headers nginx.conf copies from the auth answer
// onto the request to the app (auth_request_set, then proxy_set_header of
// that variable), canonical and sorted.
func nginxCopied(t *testing.T, conf string) []string {
	t.Helper()
	fromAnswer := map[string]string{} // variable -> upstream_http_ name
	for _, m := range nginxAuthSetRE.FindAllStringSubmatch(conf, -1) {
		fromAnswer[m[1]] = m[2]
	}
	var out []string
	for _, m := range nginxSetRE.FindAllStringSubmatch(conf, -1) {
		v, ok := strings.CutPrefix(m[2], "$")
		if !ok {
			continue
		}
		if h, ok := fromAnswer[v]; ok {
			if h != nginxVar(m[1]) {
				t.Errorf("proxy_set_header %s $%s, but $%s holds the answer's %s", m[1], v, v, h)
			}
			out = append(out, http.CanonicalHeaderKey(m[1]))
		}
	}
	slices.Sort(out)
	return out
}

func canonicalSorted(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, http.CanonicalHeaderKey(strings.TrimSpace(n)))
	}
	slices.Sort(out)
	return out
}

// caddyCopied returns the Caddyfile's copy_headers, canonical and sorted.
func caddyCopied(t *testing.T, caddyfile string) []string {
	t.Helper()
	m := caddyCopyRE.FindAllStringSubmatch(caddyfile, -1)
	if len(m) != 1 {
		t.Fatalf("want one copy_headers line in %s, got %d", caddyfilePath, len(m))
	}
	return canonicalSorted(strings.Fields(m[0][1]))
}

// TestNginxConfig runs nginx -t on deploy/nginx/nginx.conf with only the
// addresses rewritten, and checks the wiring that nginx -t cannot: what the
// subrequest sends, which headers are copied, where 401 and 403 go.
func TestNginxConfig(t *testing.T) {
	conf := string(readFile(t, nginxConfig))
	t.Run("nginx -t", func(t *testing.T) {
		proxytest.NginxTest(t, nginxTemplate(t), loopbackVars)
	})

	t.Run("the subrequest", func(t *testing.T) {
		for _, want := range []string{
			"auth_request /_ory_ext_authz;",
			"location = /_ory_ext_authz {",
			"internal;",
			"proxy_pass http://" + forwardAuthAddr + forwardAuthPath + ";",
			"proxy_pass_request_body off;",
			`proxy_set_header Content-Length     "";`,
			"proxy_set_header X-Original-Method  $request_method;",
			"proxy_set_header X-Original-URI     $request_uri;",
			"proxy_set_header X-Original-URL     $scheme://$http_host$request_uri;",
			"proxy_set_header X-Forwarded-Method $request_method;",
			"proxy_set_header X-Forwarded-Uri    $request_uri;",
			"proxy_set_header X-Forwarded-Proto  $scheme;",
			"proxy_set_header X-Forwarded-Host   $http_host;",
			"proxy_set_header X-Forwarded-For    $remote_addr;",
		} {
			if !strings.Contains(conf, want) {
				t.Errorf("%s lacks %q", nginxConfig, want)
			}
		}
	})

	t.Run("the answer's headers reach the app, nothing else of theirs", func(t *testing.T) {
		got := nginxCopied(t, conf)
		want := []string{"Authorization", "X-User-Email", "X-User-Id"}
		if !slices.Equal(got, want) {
			t.Errorf("copied %v, want %v", got, want)
		}
		if !strings.Contains(conf, "auth_request_set $ory_redirect      $upstream_http_"+nginxVar(authRedirectHeader)+";") {
			t.Errorf("%s does not read %s", nginxConfig, authRedirectHeader)
		}
	})

	t.Run("401 and 403 go to named locations that redirect or answer JSON", func(t *testing.T) {
		for _, want := range []string{
			"error_page 401 = @ory_ext_authz_401;",
			"error_page 403 = @ory_ext_authz_403;",
			"location @ory_ext_authz_401 {",
			"location @ory_ext_authz_403 {",
			"return 401 '{",
			"return 403 '{",
		} {
			if !strings.Contains(conf, want) {
				t.Errorf("%s lacks %q", nginxConfig, want)
			}
		}
		for _, m := range nginxRedirectRE.FindAllStringSubmatch(conf, -1) {
			if m[1] != "ory_redirect" {
				t.Errorf("return 302 $%s, want $ory_redirect (%s)", m[1], authRedirectHeader)
			}
		}
		if n := len(nginxRedirectRE.FindAllString(conf, -1)); n != 2 {
			t.Errorf("%d redirects, want one in each named location", n)
		}
	})
}

// TestCaddyfile runs caddy validate on deploy/caddy/Caddyfile with only the
// addresses rewritten, keeps it as caddy fmt formats it, and checks that it
// copies the same headers as the nginx configs.
func TestCaddyfile(t *testing.T) {
	caddyfile := string(readFile(t, caddyfilePath))
	t.Run("caddy validate", func(t *testing.T) {
		proxytest.CaddyValidate(t, caddyTemplate(t), loopbackVars)
	})
	t.Run("caddy fmt", func(t *testing.T) {
		if got := proxytest.CaddyFmt(t, filepath.Join(caddyDir, "Caddyfile")); got != caddyfile {
			t.Errorf("%s is not formatted as caddy fmt formats it; caddy fmt gives:\n%s", caddyfilePath, got)
		}
	})
	t.Run("asks /auth and copies the same headers as nginx", func(t *testing.T) {
		if !strings.Contains(caddyfile, "\t\turi "+forwardAuthPath+"\n") {
			t.Errorf("%s: forward_auth does not ask %s", caddyfilePath, forwardAuthPath)
		}
		if got, want := caddyCopied(t, caddyfile), nginxCopied(t, string(readFile(t, nginxConfig))); !slices.Equal(got, want) {
			t.Errorf("copy_headers %v, nginx.conf copies %v", got, want)
		}
	})
}

// ingress-nginx annotations the shipped Ingress may use.
const ingressAnnotation = "nginx.ingress.kubernetes.io/"

// TestIngressNginx loads deploy/nginx/ingress-nginx.yaml strictly into
// k8s.io/api's Ingress and checks its annotations against the server's
// Service (deploy/kubernetes) and the other proxy configs.
func TestIngressNginx(t *testing.T) {
	b := readFile(t, ingressNginxFile)
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(b, &tm); err != nil {
		t.Fatal(err)
	}
	if tm.APIVersion != "networking.k8s.io/v1" || tm.Kind != "Ingress" {
		t.Fatalf("%s is %s %s, want networking.k8s.io/v1 Ingress", ingressNginxFile, tm.APIVersion, tm.Kind)
	}
	var ing networkingv1.Ingress
	if err := yaml.UnmarshalStrict(b, &ing); err != nil {
		t.Fatalf("%s: strict into %T: %v", ingressNginxFile, &ing, err)
	}
	ann := ing.Annotations

	t.Run("only the auth annotations, no snippets", func(t *testing.T) {
		known := []string{"auth-url", "auth-response-headers", "auth-signin", "auth-signin-redirect-param"}
		for k := range ann {
			name, ok := strings.CutPrefix(k, ingressAnnotation)
			if !ok || !slices.Contains(known, name) {
				t.Errorf("annotation %s: not one of %s%v", k, ingressAnnotation, known)
			}
			if strings.Contains(k, "snippet") {
				t.Errorf("annotation %s: snippets are refused by default in ingress-nginx", k)
			}
		}
	})

	t.Run("auth-url is the Service's forward-auth port", func(t *testing.T) {
		u, err := url.Parse(ann[ingressAnnotation+"auth-url"])
		if err != nil {
			t.Fatal(err)
		}
		k := loadKubernetes(t)
		wantHost := k.service.Name + "." + k.kustomization.Namespace + ".svc.cluster.local"
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			t.Fatalf("auth-url %s: %v", u, err)
		}
		if u.Scheme != "http" || host != wantHost || port != forwardAuthPortText || u.Path != forwardAuthPath || u.RawQuery != "" {
			t.Errorf("auth-url %s, want http://%s:%s%s", u, wantHost, forwardAuthPortText, forwardAuthPath)
		}
	})

	t.Run("copies the same headers as nginx.conf", func(t *testing.T) {
		got := canonicalSorted(strings.Split(ann[ingressAnnotation+"auth-response-headers"], ","))
		if want := nginxCopied(t, string(readFile(t, nginxConfig))); !slices.Equal(got, want) {
			t.Errorf("auth-response-headers %v, nginx.conf copies %v", got, want)
		}
	})

	t.Run("auth-signin is Kratos' browser login with return_to", func(t *testing.T) {
		signin, err := url.Parse(ann[ingressAnnotation+"auth-signin"])
		if err != nil || !signin.IsAbs() || signin.Path != "/self-service/login/browser" || signin.RawQuery != "" {
			t.Errorf("auth-signin %q (%v), want an absolute URL of Kratos' /self-service/login/browser without a query", ann[ingressAnnotation+"auth-signin"], err)
		}
		if p := ann[ingressAnnotation+"auth-signin-redirect-param"]; p != "return_to" {
			t.Errorf("auth-signin-redirect-param %q, want return_to (Kratos' parameter; ingress-nginx's default is rd)", p)
		}
	})

	t.Run("routes to a Service port", func(t *testing.T) {
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
			t.Error("ingressClassName is not nginx")
		}
		if len(ing.Spec.Rules) == 0 {
			t.Fatal("no rules")
		}
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
				t.Fatalf("rule %s has no paths", r.Host)
			}
			for _, p := range r.HTTP.Paths {
				s := p.Backend.Service
				if p.PathType == nil || s == nil || s.Name == "" || (s.Port.Number == 0 && s.Port.Name == "") {
					t.Errorf("path %s: want a pathType and a Service backend with a port", p.Path)
				}
			}
		}
	})
}
