package authz

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
)

// request is the part of a CheckRequest the answers depend on.
type request struct {
	http              *authv3.AttributeContext_HttpRequest
	headers           credential.Headers
	contextExtensions map[string]string
	// noRoute: the request's method, host and path are not known (a
	// forward-auth request from an untrusted peer, or without the
	// forwarded headers): the route table is not consulted, the defaults
	// apply.
	noRoute bool
}

func newRequest(req *authv3.CheckRequest) request {
	h := req.GetAttributes().GetRequest().GetHttp()
	return request{
		http:              h,
		headers:           credential.Headers{Map: h.GetHeaders(), Raw: h.GetHeaderMap().GetHeaders()},
		contextExtensions: req.GetAttributes().GetContextExtensions(),
	}
}

func (r request) header(name string) string {
	v, _ := r.headers.Get(name)
	return v
}

// isPreflight tells a CORS preflight, which browsers send without cookies:
// OPTIONS with Origin and Access-Control-Request-Method, the test of
// Envoy's jwt_authn (bypass_cors_preflight), method compared as it does,
// case-sensitively. Anything less is an ordinary request, so that a bare
// OPTIONS cannot skip the session check.
func (r request) isPreflight() bool {
	return r.http.GetMethod() == "OPTIONS" && r.header("origin") != "" && r.header("access-control-request-method") != ""
}

// isBrowser tells a request from a browser navigating to a page.
func (r request) isBrowser() bool {
	return strings.Contains(strings.ToLower(r.header("accept")), "text/html")
}

// originalURL rebuilds the URL the client asked for, for return_to.
func (r request) originalURL() string {
	scheme := r.header("x-forwarded-proto")
	if i := strings.IndexByte(scheme, ','); i >= 0 {
		scheme = scheme[:i]
	}
	scheme = strings.TrimSpace(scheme)
	if scheme != "http" && scheme != "https" {
		scheme = r.http.GetScheme()
	}
	if scheme == "" {
		scheme = "http"
	}
	host := r.http.GetHost()
	if host == "" {
		host = r.header(":authority")
	}
	path := r.http.GetPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return scheme + "://" + host + path
}
