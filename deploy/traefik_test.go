package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

// The Traefik files, relative to deploy/.
const (
	traefikDir        = "traefik"
	traefikDynamic    = "traefik/dynamic.yaml"
	traefikMiddleware = "traefik/middleware.yaml"
	// traefikAuthMiddleware is the name of the forwardAuth middleware in
	// both files.
	traefikAuthMiddleware = "ory-ext-authz"
)

// The structs below mirror the parts of Traefik v3.7's configuration types
// that deploy/traefik uses, with Traefik's own field names (its yaml and
// json tags), so strict decoding (KnownFields) rejects a misspelt or
// unknown field as Traefik's decoders do. Anything these structs leave out
// (another middleware kind, a router's TLS options) is rejected too: this
// test checks nothing it does not decode.

// traefikForwardAuth mirrors dynamic.ForwardAuth
// (pkg/config/dynamic/middlewares.go) and, for the CRD,
// traefikio/v1alpha1.ForwardAuth
// (pkg/provider/kubernetes/crd/traefikio/v1alpha1/middleware.go), which has
// the same fields (its tls is a secret reference instead of file paths).
type traefikForwardAuth struct {
	Address                  string         `yaml:"address"`
	TLS                      map[string]any `yaml:"tls"`
	TrustForwardHeader       *bool          `yaml:"trustForwardHeader"`
	AuthResponseHeaders      []string       `yaml:"authResponseHeaders"`
	AuthResponseHeadersRegex string         `yaml:"authResponseHeadersRegex"`
	AuthRequestHeaders       []string       `yaml:"authRequestHeaders"`
	MaxResponseBodySize      *int64         `yaml:"maxResponseBodySize"`
	AddAuthCookiesToResponse []string       `yaml:"addAuthCookiesToResponse"`
	HeaderField              string         `yaml:"headerField"`
	ForwardBody              bool           `yaml:"forwardBody"`
	MaxBodySize              *int64         `yaml:"maxBodySize"`
	PreserveLocationHeader   bool           `yaml:"preserveLocationHeader"`
	PreserveRequestMethod    bool           `yaml:"preserveRequestMethod"`
	AuthSigninURL            string         `yaml:"authSigninURL"`
}

// traefikHeaders mirrors the customRequestHeaders of dynamic.Headers
// (pkg/config/dynamic/middlewares.go).
type traefikHeaders struct {
	CustomRequestHeaders map[string]string `yaml:"customRequestHeaders"`
}

// traefikMiddlewareConfig mirrors the forwardAuth and headers fields of
// dynamic.Middleware (pkg/config/dynamic/middlewares.go) and of the CRD's
// MiddlewareSpec.
type traefikMiddlewareConfig struct {
	ForwardAuth *traefikForwardAuth `yaml:"forwardAuth"`
	Headers     *traefikHeaders     `yaml:"headers"`
}

// traefikRouter mirrors dynamic.Router (pkg/config/dynamic/http_config.go).
type traefikRouter struct {
	EntryPoints []string `yaml:"entryPoints"`
	Middlewares []string `yaml:"middlewares"`
	Service     string   `yaml:"service"`
	Rule        string   `yaml:"rule"`
	Priority    int      `yaml:"priority"`
}

// traefikService mirrors dynamic.Service, ServersLoadBalancer and Server
// (pkg/config/dynamic/http_config.go).
type traefikService struct {
	LoadBalancer *struct {
		Servers []struct {
			URL string `yaml:"url"`
		} `yaml:"servers"`
		PassHostHeader *bool `yaml:"passHostHeader"`
	} `yaml:"loadBalancer"`
}

// traefikDynamicConfig mirrors dynamic.Configuration and HTTPConfiguration
// (pkg/config/dynamic/config.go, http_config.go).
type traefikDynamicConfig struct {
	HTTP struct {
		Middlewares map[string]*traefikMiddlewareConfig `yaml:"middlewares"`
		Routers     map[string]*traefikRouter           `yaml:"routers"`
		Services    map[string]*traefikService          `yaml:"services"`
	} `yaml:"http"`
}

// traefikCRDMiddleware mirrors traefikio/v1alpha1.Middleware.
type traefikCRDMiddleware struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec traefikMiddlewareConfig `yaml:"spec"`
}

// decodeStrictYAML decodes every document of path into a new T, rejecting
// unknown fields.
func decodeStrictYAML[T any](t *testing.T, path string) []*T {
	t.Helper()
	dec := yamlv3.NewDecoder(bytes.NewReader(readFile(t, path)))
	dec.KnownFields(true)
	var out []*T
	for {
		v := new(T)
		err := dec.Decode(v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: strict YAML into %T: %v", path, v, err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no document", path)
	}
	return out
}

// loadTraefikDynamic decodes dynamic.yaml.
func loadTraefikDynamic(t *testing.T) *traefikDynamicConfig {
	t.Helper()
	docs := decodeStrictYAML[traefikDynamicConfig](t, traefikDynamic)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", traefikDynamic, len(docs))
	}
	return docs[0]
}

// loadTraefikCRDs decodes middleware.yaml, by name.
func loadTraefikCRDs(t *testing.T) map[string]*traefikCRDMiddleware {
	t.Helper()
	out := map[string]*traefikCRDMiddleware{}
	for _, m := range decodeStrictYAML[traefikCRDMiddleware](t, traefikMiddleware) {
		if m.APIVersion != "traefik.io/v1alpha1" || m.Kind != "Middleware" {
			t.Errorf("%s: %s %s, want traefik.io/v1alpha1 Middleware", traefikMiddleware, m.APIVersion, m.Kind)
		}
		if m.Metadata.Name == "" || out[m.Metadata.Name] != nil {
			t.Fatalf("%s: Middleware name %q empty or repeated", traefikMiddleware, m.Metadata.Name)
		}
		out[m.Metadata.Name] = m
	}
	return out
}

// lowerAll returns the names lower-cased and sorted.
func lowerAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	slices.Sort(out)
	return out
}

// checkTraefikForwardAuth: the forwardAuth middleware asks the server's
// /auth on the forward-auth port of host, with Traefik's own X-Forwarded-*
// headers, sends only what the server reads, copies the JWT and every
// identity header of the route table (deleting the client's), hands Kratos'
// session cookie to the client and leaves the answers (and redirects) to
// the server.
func checkTraefikForwardAuth(t *testing.T, where string, fa *traefikForwardAuth, host string) {
	t.Helper()
	if fa == nil {
		t.Fatalf("%s: no forwardAuth", where)
	}
	u, err := url.Parse(fa.Address)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, fa.Address, err)
	}
	if u.Scheme != "http" || u.Path != authz.ForwardAuthPath || u.RawQuery != "" || u.Port() != strconv.Itoa(forwardAuthPort) || u.Hostname() != host {
		t.Errorf("%s: address %q, want http://%s:%d%s (the forward-auth listener has no TLS)", where, fa.Address, host, forwardAuthPort, authz.ForwardAuthPath)
	}
	if fa.TLS != nil {
		t.Errorf("%s: tls set for a plain HTTP listener", where)
	}
	if fa.TrustForwardHeader == nil || *fa.TrustForwardHeader {
		t.Errorf("%s: trustForwardHeader %v, want false: a client's X-Forwarded-Uri would choose the route table's rule", where, fa.TrustForwardHeader)
	}
	table, tableWhere := httpServiceTable(t)
	want := lowerAll(append([]string{"authorization"}, table.HeaderNames()...))
	if got := lowerAll(fa.AuthResponseHeaders); !slices.Equal(got, want) {
		t.Errorf("%s: authResponseHeaders %q, want the JWT and every identity header of %s: %q", where, got, tableWhere, want)
	}
	if fa.AuthResponseHeadersRegex != "" {
		t.Errorf("%s: authResponseHeadersRegex %q: list the headers instead", where, fa.AuthResponseHeadersRegex)
	}
	// What the server reads, but X-Forwarded-Proto, which Traefik sets.
	var wantReq []string
	for _, h := range authz.HeadersRead(config.DefaultSessionTokenHeader) {
		if h != "x-forwarded-proto" {
			wantReq = append(wantReq, h)
		}
	}
	if got := lowerAll(fa.AuthRequestHeaders); !slices.Equal(got, lowerAll(wantReq)) {
		t.Errorf("%s: authRequestHeaders %q, want what the server reads: %q", where, got, lowerAll(wantReq))
	}
	for _, h := range fa.AuthRequestHeaders {
		if l := strings.ToLower(h); strings.HasPrefix(l, "x-forwarded-") || strings.HasPrefix(l, "x-original-") {
			t.Errorf("%s: authRequestHeaders passes the client's %s, which the server reads as the original request", where, h)
		}
	}
	if len(fa.AddAuthCookiesToResponse) == 0 || !slices.Contains(fa.AddAuthCookiesToResponse, "ory_kratos_session") {
		t.Errorf("%s: addAuthCookiesToResponse %q, want Kratos' ory_kratos_session", where, fa.AddAuthCookiesToResponse)
	}
	for _, c := range fa.AddAuthCookiesToResponse {
		ok := slices.ContainsFunc(strings.Split(config.DefaultSessionCookies, ","), func(p string) bool {
			m, err := path.Match(p, c)
			return err == nil && m
		})
		if !ok {
			t.Errorf("%s: addAuthCookiesToResponse %q is no session cookie the server reads (%s)", where, c, config.DefaultSessionCookies)
		}
	}
	if fa.MaxResponseBodySize == nil || *fa.MaxResponseBodySize < 4096 {
		t.Errorf("%s: maxResponseBodySize %v, want a bound of at least 4 KiB (unset: unbounded; too small: every denial becomes 401)", where, fa.MaxResponseBodySize)
	}
	if fa.ForwardBody || fa.MaxBodySize != nil {
		t.Errorf("%s: forwardBody %v maxBodySize %v: the server reads no body", where, fa.ForwardBody, fa.MaxBodySize)
	}
	if fa.PreserveRequestMethod {
		t.Errorf("%s: preserveRequestMethod: the server reads the method from X-Forwarded-Method", where)
	}
	if fa.AuthSigninURL != "" {
		t.Errorf("%s: authSigninURL %q would turn every 401, an API client's too, into a redirect without return_to; the server redirects browsers itself", where, fa.AuthSigninURL)
	}
}

// checkTraefikStrip: a headers middleware that removes each of names (an
// empty value) and sets nothing.
func checkTraefikStrip(t *testing.T, where string, m *traefikMiddlewareConfig, names []string) {
	t.Helper()
	if m == nil || m.Headers == nil || m.ForwardAuth != nil {
		t.Fatalf("%s: want a headers middleware", where)
	}
	var removed []string
	for k, v := range m.Headers.CustomRequestHeaders {
		if v != "" {
			t.Errorf("%s: sets %s: %q", where, k, v)
		}
		removed = append(removed, k)
	}
	if got := lowerAll(removed); !slices.Equal(got, lowerAll(names)) {
		t.Errorf("%s: removes %q, want %q", where, got, lowerAll(names))
	}
}

// traefikPathPrefix reads a rule PathPrefix(`p`), the only kind the files
// use.
var traefikPathPrefix = regexp.MustCompile("^PathPrefix\\(`(/[^`]*)`\\)$")

// TestTraefikConfig decodes dynamic.yaml and middleware.yaml strictly into
// mirrors of Traefik's types and checks them: the forwardAuth middleware
// (checkTraefikForwardAuth) at the compose hostname and at the
// Kubernetes Service of deploy/kubernetes, the same settings in both; the
// catch-all router checked, the session token dropped after the check; a
// public router that strips every credential and identity header; every
// router's middlewares and service defined.
func TestTraefikConfig(t *testing.T) {
	dyn := loadTraefikDynamic(t)
	crds := loadTraefikCRDs(t)
	table, _ := httpServiceTable(t)
	token := config.DefaultSessionTokenHeader
	strip := append([]string{"Authorization", token}, table.HeaderNames()...)

	t.Run("file provider", func(t *testing.T) {
		mw := dyn.HTTP.Middlewares
		checkTraefikForwardAuth(t, traefikDynamic, mw[traefikAuthMiddleware].ForwardAuth, composeServer)
		var authRouters, publicRouters int
		for name, r := range dyn.HTTP.Routers {
			where := traefikDynamic + ": router " + name
			m := traefikPathPrefix.FindStringSubmatch(r.Rule)
			if m == nil {
				t.Fatalf("%s: rule %q; this test reads PathPrefix rules only", where, r.Rule)
			}
			for _, n := range r.Middlewares {
				if mw[n] == nil {
					t.Errorf("%s: middleware %s is not defined", where, n)
				}
			}
			if s := dyn.HTTP.Services[r.Service]; s == nil || s.LoadBalancer == nil || len(s.LoadBalancer.Servers) == 0 {
				t.Errorf("%s: service %q undefined or without servers", where, r.Service)
			}
			if len(r.EntryPoints) == 0 {
				t.Errorf("%s: no entryPoints", where)
			}
			switch {
			case slices.Contains(r.Middlewares, traefikAuthMiddleware):
				authRouters++
				if m[1] != "/" {
					t.Errorf("%s: the checked router matches %s, want the catch-all /", where, m[1])
				}
				// The check first, then the token goes.
				if len(r.Middlewares) != 2 || r.Middlewares[0] != traefikAuthMiddleware {
					t.Fatalf("%s: middlewares %v, want %s then the one dropping %s", where, r.Middlewares, traefikAuthMiddleware, token)
				}
				checkTraefikStrip(t, where+" "+r.Middlewares[1], mw[r.Middlewares[1]], []string{token})
				for other, o := range dyn.HTTP.Routers {
					if other != name && o.Priority <= r.Priority {
						t.Errorf("router %s (priority %d) does not take precedence over the catch-all %s (%d)", other, o.Priority, name, r.Priority)
					}
				}
			default:
				publicRouters++
				if len(r.Middlewares) != 1 {
					t.Fatalf("%s: middlewares %v, want the one stripping credentials", where, r.Middlewares)
				}
				checkTraefikStrip(t, where+" "+r.Middlewares[0], mw[r.Middlewares[0]], strip)
			}
		}
		if authRouters != 1 || publicRouters == 0 {
			t.Errorf("%d checked and %d public routers, want 1 and some", authRouters, publicRouters)
		}
	})

	t.Run("Kubernetes CRD", func(t *testing.T) {
		kube := loadKubernetes(t)
		host := kube.service.Name + "." + kube.kustomization.Namespace + ".svc.cluster.local"
		auth := crds[traefikAuthMiddleware]
		if auth == nil {
			t.Fatalf("%s: no Middleware %s", traefikMiddleware, traefikAuthMiddleware)
		}
		checkTraefikForwardAuth(t, traefikMiddleware, auth.Spec.ForwardAuth, host)
		// The same settings as the file provider's, but the address.
		a, b := *auth.Spec.ForwardAuth, *dyn.HTTP.Middlewares[traefikAuthMiddleware].ForwardAuth
		a.Address, b.Address = "", ""
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s and %s differ in more than the address", traefikMiddleware, traefikDynamic)
		}
		for name, m := range crds {
			if name == traefikAuthMiddleware {
				continue
			}
			d := dyn.HTTP.Middlewares[name]
			if d == nil || d.Headers == nil || m.Spec.Headers == nil {
				t.Errorf("%s: Middleware %s has no headers twin in %s", traefikMiddleware, name, traefikDynamic)
				continue
			}
			checkTraefikStrip(t, traefikMiddleware+": "+name, &m.Spec, slices.Collect(maps.Keys(d.Headers.CustomRequestHeaders)))
		}
		if len(crds) != len(dyn.HTTP.Middlewares) {
			t.Errorf("%s has %d Middlewares, %s %d", traefikMiddleware, len(crds), traefikDynamic, len(dyn.HTTP.Middlewares))
		}
		// deploy/kubernetes serves no forward-auth: the README says how.
		if !strings.Contains(string(readFile(t, filepath.Join(traefikDir, "README.md"))), "ORY_EXT_AUTHZ_FORWARD_AUTH_ADDR") {
			t.Error("README.md does not say how to turn the forward-auth listener on in the Deployment")
		}
	})
}

// traefikForward plays, without Traefik, what dynamic.yaml makes Traefik
// do with one request, per pkg/middlewares/auth/forward.go (v3.7): the
// router of highest priority whose PathPrefix matches; its middlewares in
// order; for forwardAuth, writeHeader with trustForwardHeader false and
// authRequestHeaders, a GET to the address (the real server's forward-auth
// listener), then the answer: not 2xx, to the client with its headers and
// body; 2xx, authResponseHeaders deleted from the request and copied from
// the answer, the addAuthCookiesToResponse cookies to the client.
type traefikForward struct {
	cfg     *traefikDynamicConfig
	forward string // the forward-auth listener, host:port
	client  *http.Client
}

func (tf *traefikForward) removesUnset() bool { return true }

func (tf *traefikForward) do(t *testing.T, method, host, p string, h map[string]string) proxyOutcome {
	t.Helper()
	req := http.Header{}
	for k, v := range h {
		req.Set(k, v)
	}
	var router string
	best := -1
	for name, r := range tf.cfg.HTTP.Routers {
		m := traefikPathPrefix.FindStringSubmatch(r.Rule)
		if m != nil && strings.HasPrefix(p, m[1]) && r.Priority > best {
			router, best = name, r.Priority
		}
	}
	out := proxyOutcome{route: router, client: http.Header{}}
	for _, name := range tf.cfg.HTTP.Routers[router].Middlewares {
		mw := tf.cfg.HTTP.Middlewares[name]
		switch {
		case mw.ForwardAuth != nil:
			out.checked = true
			if !tf.forwardAuth(t, mw.ForwardAuth, method, host, p, req, &out) {
				return out
			}
		case mw.Headers != nil:
			for k, v := range mw.Headers.CustomRequestHeaders {
				if v == "" {
					req.Del(k)
				} else {
					req.Set(k, v)
				}
			}
		}
	}
	out.upstream = map[string]string{}
	for k := range req {
		out.upstream[strings.ToLower(k)] = req.Get(k)
	}
	return out
}

func (tf *traefikForward) forwardAuth(t *testing.T, fa *traefikForwardAuth, method, host, p string, req http.Header, out *proxyOutcome) bool {
	t.Helper()
	u, err := url.Parse(fa.Address)
	if err != nil {
		t.Fatal(err)
	}
	// The request goes to the test's listener, for the address's path.
	areq, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+tf.forward+u.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// writeHeader: the request's headers, the X-Forwarded-* ones deleted
	// (trustForwardHeader false), filtered by authRequestHeaders, then
	// Traefik's X-Forwarded-* from the request it received.
	for _, name := range fa.AuthRequestHeaders {
		if vs := req.Values(name); len(vs) > 0 && !strings.HasPrefix(http.CanonicalHeaderKey(name), "X-Forwarded-") {
			areq.Header[http.CanonicalHeaderKey(name)] = vs
		}
	}
	areq.Header.Set("User-Agent", "")
	areq.Header.Set("X-Forwarded-For", "203.0.113.7")
	areq.Header.Set("X-Forwarded-Method", method)
	areq.Header.Set("X-Forwarded-Proto", "http")
	areq.Header.Set("X-Forwarded-Port", "80")
	areq.Header.Set("X-Forwarded-Host", host)
	areq.Header.Set("X-Forwarded-Uri", p)
	resp, body := askForwardAuth(t, tf.client, areq)
	if int64(len(body)) > *fa.MaxResponseBodySize {
		t.Fatalf("answer of %d bytes over maxResponseBodySize %d: Traefik would answer 401", len(body), *fa.MaxResponseBodySize)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		out.status, out.body = resp.StatusCode, string(body)
		for k, vs := range resp.Header {
			out.client[k] = vs
		}
		return false
	}
	for _, name := range fa.AuthResponseHeaders {
		k := http.CanonicalHeaderKey(name)
		req.Del(k)
		if vs := resp.Header[k]; len(vs) > 0 {
			req[k] = slices.Clone(vs)
		}
	}
	for _, c := range resp.Cookies() {
		if !slices.Contains(fa.AddAuthCookiesToResponse, c.Name) {
			t.Errorf("the server's 2xx sets cookie %s, which Traefik does not pass to the client", c.Name)
			continue
		}
		out.client.Add("Set-Cookie", c.String())
	}
	return true
}

// TestTraefikRoutesAgainstServer plays Traefik's part for dynamic.yaml
// without Traefik (traefikForward), against the real server's forward-auth
// listener in front of a real Kratos, for every rule of the route table
// (checkForwardAuthRules): the X-Forwarded-* headers Traefik sets choose
// the rule, a 2xx copies the JWT and the identity headers over the client's,
// every other answer reaches the client as the server wrote it.
func TestTraefikRoutesAgainstServer(t *testing.T) {
	dyn := loadTraefikDynamic(t)
	fs := startForwardAuthStack(t)
	if _, _, err := net.SplitHostPort(fs.checks.forwardAddr); err != nil {
		t.Fatal(err)
	}
	tf := &traefikForward{
		cfg: dyn, forward: fs.checks.forwardAddr,
		client: &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	t.Cleanup(tf.client.CloseIdleConnections)
	// The entry point is plaintext: X-Forwarded-Proto is http.
	checkForwardAuthRules(t, fs, tf, "http")
}
