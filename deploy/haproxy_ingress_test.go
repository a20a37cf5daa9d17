package deploy_test

import (
	"bytes"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
)

const haproxyIngressFile = "haproxy-ingress/ingress.yaml"

// haproxyAnn is the prefix of HAProxy Ingress' annotations.
const haproxyAnn = "haproxy-ingress.github.io/"

// The annotation keys ingress.yaml may use (docs/content/en/docs/
// configuration/keys.md of jcmoraisjr/haproxy-ingress): a misspelt key is
// ignored by the controller, so the test refuses any other.
var haproxyKeys = []string{
	"auth-url", "auth-method", "auth-headers-request", "auth-headers-succeed", "auth-headers-fail",
	"config-backend-early", "config-backend-late",
}

// loadHAProxyIngresses decodes every document of ingress.yaml strictly
// into networking/v1 Ingresses.
func loadHAProxyIngresses(t *testing.T) []*networkingv1.Ingress {
	t.Helper()
	var out []*networkingv1.Ingress
	for i, doc := range bytes.Split(readFile(t, haproxyIngressFile), []byte("\n---\n")) {
		ing := &networkingv1.Ingress{}
		if err := yaml.UnmarshalStrict(doc, ing); err != nil {
			t.Fatalf("%s: document %d: strict into %T: %v", haproxyIngressFile, i, ing, err)
		}
		if ing.APIVersion != "networking.k8s.io/v1" || ing.Kind != "Ingress" {
			t.Fatalf("%s: document %d is %s %s, want a networking.k8s.io/v1 Ingress", haproxyIngressFile, i, ing.APIVersion, ing.Kind)
		}
		out = append(out, ing)
	}
	return out
}

// haproxyList reads an auth-headers-* value as HAProxy Ingress does:
// comma-separated, lower-cased (setAuthExternal in
// pkg/converters/ingress/annotations/backend.go).
func haproxyList(v string) []string {
	out := strings.Split(strings.ToLower(v), ",")
	slices.Sort(out)
	return out
}

// haproxyGlob is auth-request.lua's globToLuaPattern followed by
// header_match, for one comma-separated list: * any run, ? one character;
// host and content-length never match; "-" matches nothing.
func haproxyGlob(list []string, header string) bool {
	if header == "host" || header == "content-length" {
		return false
	}
	for _, g := range list {
		if g == "-" {
			return false
		}
		re := "^" + strings.ReplaceAll(strings.ReplaceAll(regexp.QuoteMeta(g), `\*`, ".*"), `\?`, ".") + "$"
		if regexp.MustCompile(re).MatchString(header) {
			return true
		}
	}
	return false
}

// The snippet lines the model understands; any other fails the test.
var (
	haproxySetFromRequest = regexp.MustCompile(`^http-request set-header (\S+) %\[(method|req\.hdr\(host\)|pathq)\]$`)
	haproxyDel            = regexp.MustCompile(`^http-request del-header (\S+)$`)
	haproxyDelUnanswered  = regexp.MustCompile(`^http-request del-header (\S+) if !\{ var\(req\.auth_response_header\.([a-z0-9_]+)\) -m found \}$`)
	haproxySetVar         = regexp.MustCompile(`^http-request set-var\(txn\.([a-z0-9_]+)\) var\(req\.auth_response_header\.([a-z0-9_]+)\)$`)
	haproxyRespAdd        = regexp.MustCompile(`^http-response add-header (\S+) %\[var\(txn\.([a-z0-9_]+)\)\] if \{ var\(txn\.([a-z0-9_]+)\) -m found \}$`)
)

// haproxyVar is the name auth-request.lua gives the variable of an answer
// header (sanitize_header_for_variable on a lower-case name).
func haproxyVar(header string) string {
	return regexp.MustCompile(`[^a-zA-Z0-9]`).ReplaceAllString(strings.ToLower(header), "_")
}

// snippetLines are the non-empty lines of an annotation's snippet.
func snippetLines(v string) []string {
	var out []string
	for _, l := range strings.Split(v, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestHAProxyIngressConfig: ingress.yaml decodes strictly into
// networking/v1 Ingresses for the haproxy class; the checked one's
// annotations ask the server's /auth on the forward-auth port of the
// deploy/kubernetes Service with GET, send it what it reads (and the
// X-Forwarded-* the backend snippet sets from the request, with the values
// the server expects), copy the JWT and every identity header of the route
// table on 2xx, pass a denial's headers to the client, delete the client's
// identity headers before the check and its Authorization (unless the
// answer set one) and session token after it; the public one has no check
// and the same backend.
func TestHAProxyIngressConfig(t *testing.T) {
	ings := loadHAProxyIngresses(t)
	table, where := httpServiceTable(t)
	kube := loadKubernetes(t)
	var checked, public *networkingv1.Ingress
	for _, ing := range ings {
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "haproxy" {
			t.Errorf("Ingress %s: ingressClassName %v, want haproxy", ing.Name, ing.Spec.IngressClassName)
		}
		for k := range ing.Annotations {
			if name, ok := strings.CutPrefix(k, haproxyAnn); !ok || !slices.Contains(haproxyKeys, name) {
				t.Errorf("Ingress %s: annotation %s is not one this setup uses (%s%v)", ing.Name, k, haproxyAnn, haproxyKeys)
			}
		}
		if _, ok := ing.Annotations[haproxyAnn+"auth-url"]; ok {
			checked = ing
		} else {
			public = ing
		}
	}
	if checked == nil || public == nil || len(ings) != 2 {
		t.Fatalf("want one Ingress with auth-url and one without, got %d", len(ings))
	}
	a := func(key string) string { return checked.Annotations[haproxyAnn+key] }

	t.Run("auth-url", func(t *testing.T) {
		u, err := url.Parse(a("auth-url"))
		if err != nil {
			t.Fatal(err)
		}
		host := kube.service.Name + "." + kube.kustomization.Namespace + ".svc.cluster.local"
		if u.Scheme != "http" || u.Hostname() != host || u.Port() != strconv.Itoa(forwardAuthPort) || u.Path != authz.ForwardAuthPath || u.RawQuery != "" {
			t.Errorf("auth-url %s, want http://%s:%d%s", u, host, forwardAuthPort, authz.ForwardAuthPath)
		}
		if m := a("auth-method"); m != http.MethodGet {
			t.Errorf("auth-method %q, want GET (the server reads the method from X-Forwarded-Method)", m)
		}
		if _, ok := checked.Annotations[haproxyAnn+"auth-signin"]; ok {
			t.Error("auth-signin set: every failure, an API client's too, would become a redirect without return_to")
		}
	})

	t.Run("headers", func(t *testing.T) {
		want := []string{"x-forwarded-method", "x-forwarded-host", "x-forwarded-uri"}
		want = append(want, authz.HeadersRead(config.DefaultSessionTokenHeader)...)
		slices.Sort(want)
		req := haproxyList(a("auth-headers-request"))
		if !slices.Equal(req, want) {
			t.Errorf("auth-headers-request %q, want %q (what the server reads, nothing else)", req, want)
		}
		for _, h := range req {
			if strings.ContainsAny(h, "*?") {
				t.Errorf("auth-headers-request has the pattern %q: list names", h)
			}
		}
		succeed := haproxyList(a("auth-headers-succeed"))
		if ws := lowerAll(append([]string{"authorization"}, table.HeaderNames()...)); !slices.Equal(succeed, ws) {
			t.Errorf("auth-headers-succeed %q, want the JWT and every identity header of %s: %q", succeed, where, ws)
		}
		fail := haproxyList(a("auth-headers-fail"))
		for _, h := range []string{"content-type", "cache-control", "location"} {
			if !haproxyGlob(fail, h) {
				t.Errorf("auth-headers-fail %q drops %s of the server's denials", fail, h)
			}
		}
	})

	t.Run("snippets", func(t *testing.T) {
		set := map[string]string{}
		var delEarly []string
		for _, l := range snippetLines(a("config-backend-early")) {
			switch m := haproxySetFromRequest.FindStringSubmatch(l); {
			case m != nil:
				set[strings.ToLower(m[1])] = m[2]
			case haproxyDel.MatchString(l):
				delEarly = append(delEarly, strings.ToLower(haproxyDel.FindStringSubmatch(l)[1]))
			default:
				t.Errorf("config-backend-early: %q is no line this test knows", l)
			}
		}
		wantSet := map[string]string{"x-forwarded-method": "method", "x-forwarded-host": "req.hdr(host)", "x-forwarded-uri": "pathq"}
		if len(set) != len(wantSet) {
			t.Errorf("config-backend-early sets %v, want %v", set, wantSet)
		}
		for h, v := range wantSet {
			if set[h] != v {
				t.Errorf("config-backend-early sets %s to %%[%s], want %%[%s]", h, set[h], v)
			}
		}
		slices.Sort(delEarly)
		if ws := lowerAll(table.HeaderNames()); !slices.Equal(delEarly, ws) {
			t.Errorf("config-backend-early deletes %q, want every identity header of %s: %q", delEarly, where, ws)
		}
		var delAuth, delToken bool
		for _, l := range snippetLines(a("config-backend-late")) {
			switch {
			case haproxyDelUnanswered.MatchString(l):
				m := haproxyDelUnanswered.FindStringSubmatch(l)
				delAuth = delAuth || (strings.EqualFold(m[1], "authorization") && m[2] == haproxyVar("authorization"))
			case haproxyDel.MatchString(l):
				delToken = delToken || strings.EqualFold(haproxyDel.FindStringSubmatch(l)[1], config.DefaultSessionTokenHeader)
			case haproxySetVar.MatchString(l), haproxyRespAdd.MatchString(l):
			default:
				t.Errorf("config-backend-late: %q is no line this test knows", l)
			}
		}
		if !delAuth {
			t.Error("config-backend-late keeps a client's Authorization when the answer sets none")
		}
		if !delToken {
			t.Errorf("config-backend-late keeps %s", config.DefaultSessionTokenHeader)
		}
	})

	t.Run("public Ingress shares the backend", func(t *testing.T) {
		if len(public.Annotations) != 0 {
			t.Errorf("Ingress %s has annotations %v", public.Name, public.Annotations)
		}
		backend := func(ing *networkingv1.Ingress) (string, []string) {
			var svc string
			var paths []string
			for _, r := range ing.Spec.Rules {
				for _, p := range r.HTTP.Paths {
					s := p.Backend.Service
					svc = r.Host + " " + s.Name + ":" + strconv.Itoa(int(s.Port.Number))
					paths = append(paths, p.Path)
					if p.PathType == nil || *p.PathType != networkingv1.PathTypePrefix {
						t.Errorf("Ingress %s: path %s is not Prefix", ing.Name, p.Path)
					}
				}
			}
			return svc, paths
		}
		cs, cp := backend(checked)
		ps, pp := backend(public)
		if cs != ps || !slices.Equal(cp, []string{"/"}) || len(pp) == 0 {
			t.Errorf("checked %s %v, public %s %v: want the same host and service, / checked", cs, cp, ps, pp)
		}
	})

	if !strings.Contains(string(readFile(t, "haproxy-ingress/README.md")), "ORY_EXT_AUTHZ_FORWARD_AUTH_ADDR") {
		t.Error("README.md does not say how to turn the forward-auth listener on")
	}
}

// haproxyIngress plays, without HAProxy, what ingress.yaml makes HAProxy
// Ingress do with one request: the frontend's X-Forwarded-Proto (and its
// removal of the client's X-Forwarded-For); the backend's early snippet;
// for a path of the checked Ingress, auth-request.lua (auth_request: the
// client headers auth-headers-request matches, GET to the auth-url path on
// the real server's forward-auth listener; every answer header as a
// req.auth_response_header.* variable; 2xx sets the auth-headers-succeed
// headers; any other answer goes to the client with the auth-headers-fail
// headers and its body); then the late snippet.
type haproxyIngress struct {
	early, late        []string
	path               string // auth-url's path
	req, succeed, fail []string
	checkedPrefix      []string // the paths of the checked Ingress
	allPrefixes        []string
	forward            string
	client             *http.Client
}

func (hi *haproxyIngress) removesUnset() bool { return true }

func (hi *haproxyIngress) do(t *testing.T, method, host, p string, h map[string]string) proxyOutcome {
	t.Helper()
	req := map[string]string{}
	for k, v := range h {
		req[strings.ToLower(k)] = v
	}
	req["host"] = host
	delete(req, "x-forwarded-for")
	req["x-forwarded-proto"] = "http"
	out := proxyOutcome{client: http.Header{}}
	vars := map[string]string{}
	run := func(lines []string) {
		for _, l := range lines {
			switch {
			case haproxySetFromRequest.MatchString(l):
				m := haproxySetFromRequest.FindStringSubmatch(l)
				v := map[string]string{"method": method, "req.hdr(host)": host, "pathq": p}[m[2]]
				req[strings.ToLower(m[1])] = v
			case haproxyDel.MatchString(l):
				delete(req, strings.ToLower(haproxyDel.FindStringSubmatch(l)[1]))
			case haproxyDelUnanswered.MatchString(l):
				m := haproxyDelUnanswered.FindStringSubmatch(l)
				if _, ok := vars["req.auth_response_header."+m[2]]; !ok {
					delete(req, strings.ToLower(m[1]))
				}
			case haproxySetVar.MatchString(l):
				m := haproxySetVar.FindStringSubmatch(l)
				if v, ok := vars["req.auth_response_header."+m[2]]; ok {
					vars["txn."+m[1]] = v
				}
			case haproxyRespAdd.MatchString(l):
				m := haproxyRespAdd.FindStringSubmatch(l)
				if _, ok := vars["txn."+m[3]]; ok {
					out.client.Add(m[1], vars["txn."+m[2]])
				}
			default:
				t.Fatalf("snippet line %q: the model does not know it", l)
			}
		}
	}
	// The longest path of the two Ingresses wins.
	best := ""
	for _, pre := range hi.allPrefixes {
		if strings.HasPrefix(p, pre) && len(pre) > len(best) {
			best = pre
		}
	}
	out.route = best
	run(hi.early)
	if slices.Contains(hi.checkedPrefix, best) {
		out.checked = true
		areq, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+hi.forward+hi.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range req {
			if haproxyGlob(hi.req, k) {
				areq.Header.Set(k, v)
			}
		}
		// haproxy-lua-http's defaults (M.send).
		if areq.Header.Get("Accept") == "" {
			areq.Header.Set("Accept", "*/*")
		}
		areq.Header.Set("User-Agent", "haproxy-lua-http/1.0")
		resp, body := askForwardAuth(t, hi.client, areq)
		// get_headers(true): lower-case names, repeated ones folded with ",".
		for k, vs := range resp.Header {
			vars["req.auth_response_header."+haproxyVar(k)] = strings.Join(vs, ",")
		}
		if resp.StatusCode < 200 || resp.StatusCode >= 300 {
			out.status, out.body = resp.StatusCode, string(body)
			for k, vs := range resp.Header {
				if haproxyGlob(hi.fail, strings.ToLower(k)) {
					out.client[k] = vs
				}
			}
			return out
		}
		for k, vs := range resp.Header {
			if l := strings.ToLower(k); haproxyGlob(hi.succeed, l) {
				req[l] = strings.Join(vs, ",")
			}
		}
		if len(resp.Header.Values("Set-Cookie")) > 1 {
			t.Errorf("the server's 2xx sets %d cookies: auth-request.lua folds them into one header", len(resp.Header.Values("Set-Cookie")))
		}
	}
	run(hi.late)
	delete(req, "host")
	out.upstream = req
	return out
}

// TestHAProxyIngressRoutesAgainstServer plays HAProxy Ingress' part for
// ingress.yaml without HAProxy (haproxyIngress), against the real
// server's forward-auth listener in front of a real Kratos, for every rule
// of the route table (checkForwardAuthRules): the X-Forwarded-* the
// snippet sets choose the rule, a 2xx copies the JWT and the identity
// headers, the snippets delete what the client forged, every other answer
// reaches the client with its headers and body.
func TestHAProxyIngressRoutesAgainstServer(t *testing.T) {
	ings := loadHAProxyIngresses(t)
	fs := startForwardAuthStack(t)
	hi := &haproxyIngress{
		forward: fs.checks.forwardAddr,
		client:  &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	t.Cleanup(hi.client.CloseIdleConnections)
	for _, ing := range ings {
		var paths []string
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				paths = append(paths, p.Path)
			}
		}
		hi.allPrefixes = append(hi.allPrefixes, paths...)
		// Backend-scoped snippets apply to every path of the service.
		if v := ing.Annotations[haproxyAnn+"config-backend-early"]; v != "" {
			hi.early = snippetLines(v)
		}
		if v := ing.Annotations[haproxyAnn+"config-backend-late"]; v != "" {
			hi.late = snippetLines(v)
		}
		raw, ok := ing.Annotations[haproxyAnn+"auth-url"]
		if !ok {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		hi.path, hi.checkedPrefix = u.Path, paths
		hi.req = haproxyList(ing.Annotations[haproxyAnn+"auth-headers-request"])
		hi.succeed = haproxyList(ing.Annotations[haproxyAnn+"auth-headers-succeed"])
		hi.fail = haproxyList(ing.Annotations[haproxyAnn+"auth-headers-fail"])
	}
	// The frontend is plaintext: X-Forwarded-Proto is http.
	checkForwardAuthRules(t, fs, hi, "http")
}
