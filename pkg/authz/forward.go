package authz

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// The paths of the forward-auth handler.
const (
	// ForwardAuthPath is the endpoint of nginx auth_request, ingress-nginx
	// auth-url, Traefik ForwardAuth, Caddy forward_auth, haproxy-ingress.
	ForwardAuthPath = "/auth"
	// ForwardAuthEnvoyPrefix is the path_prefix of Envoy's ext_authz
	// http_service, which appends the original path to it.
	ForwardAuthEnvoyPrefix = "/envoy"
	// RedirectHeader carries, on a 401 for nginx, where the browser is to
	// be sent (a login or step-up URL): nginx's auth_request turns every
	// answer but 2xx, 401 and 403 into a 500, so the redirect travels in a
	// header that the nginx config maps to a 302 (error_page 401).
	RedirectHeader = "X-Auth-Redirect"
)

// DefaultTrustedProxies are the peers whose forwarded headers are read by
// default: loopback only (a proxy on the same host or in the same pod).
var DefaultTrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// ForwardAuthOptions configure ForwardAuth.
type ForwardAuthOptions struct {
	// TrustedProxies are the peers (CIDRs) whose X-Forwarded-* and
	// X-Original-* headers say what the original request was; nil:
	// DefaultTrustedProxies. From any other peer they are ignored and the
	// defaults apply (no route of the table).
	TrustedProxies []netip.Prefix
}

// The forwarded headers, as the proxies send them.
const (
	hForwardedMethod = "X-Forwarded-Method"
	hForwardedProto  = "X-Forwarded-Proto"
	hForwardedHost   = "X-Forwarded-Host"
	hForwardedURI    = "X-Forwarded-Uri"
	hForwardedFor    = "X-Forwarded-For"
	hOriginalMethod  = "X-Original-Method"
	// Canonical (net/http's spelling of X-Original-URI and -URL), so that
	// they index http.Header directly.
	hOriginalURI = "X-Original-Uri"
	hOriginalURL = "X-Original-Url"
)

// forwardedHeaders in the order readForwarded reads them.
var forwardedHeaders = [...]string{hForwardedMethod, hForwardedProto, hForwardedHost, hForwardedURI, hForwardedFor, hOriginalMethod, hOriginalURI, hOriginalURL}

// ForwardAuth is the HTTP door to the same decisions Check makes: each
// request is turned into the CheckRequest Envoy would send for the
// original request, answered by the one decision path, and the
// CheckResponse encoded as the proxy expects (docs/forward-auth.md):
// 200 with Authorization and the identity headers to copy upstream; the
// denial's status, headers and JSON body; a redirect as 302, or for nginx
// a 401 with RedirectHeader; Ory trouble as 503 (fail closed).
func (s *Server) ForwardAuth(o ForwardAuthOptions) http.Handler {
	trusted := o.TrustedProxies
	if trusted == nil {
		trusted = DefaultTrustedProxies
	}
	return &forwardAuth{s: s, trusted: trusted}
}

type forwardAuth struct {
	s       *Server
	trusted []netip.Prefix
}

// original is the request a proxy asks about.
type original struct {
	method, proto, host, uri string
	// nginx: the proxy speaks nginx's conventions (X-Original-*), so a
	// redirect must travel as a 401.
	nginx bool
	// envoy: Envoy's http_service, which takes the headers to remove from
	// the upstream request in x-envoy-auth-headers-to-remove.
	envoy bool
	known bool
}

func (f *forwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	envoy := strings.HasPrefix(r.URL.Path, ForwardAuthEnvoyPrefix+"/")
	if r.URL.Path != ForwardAuthPath && !envoy {
		http.NotFound(w, r)
		return
	}
	trusted := f.trustedPeer(r.RemoteAddr)
	var o original
	var err error
	switch {
	case !trusted:
	case envoy:
		o = original{method: r.Method, host: r.Host, uri: strings.TrimPrefix(r.URL.RequestURI(), ForwardAuthEnvoyPrefix), known: true, envoy: true}
		if o.proto, err = single(r.Header, hForwardedProto); err == nil {
			o.proto, err = forwardedProto(o.proto)
		}
	default:
		o, err = readForwarded(r.Header)
		if o.known && o.host == "" {
			o.host = r.Host
		}
	}
	if err != nil {
		f.s.logDenial(r.Context(), slog.LevelInfo, request{http: &authv3.AttributeContext_HttpRequest{Id: r.Header.Get("X-Request-Id")}}, tokencache.Key{}, "forward-auth request refused: bad forwarded headers", err)
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_request", err.Error()))
		return
	}
	req := checkRequestOf(r, o, trusted)
	rq := newRequest(req)
	rq.noRoute = !o.known
	resp, cerr := f.s.answer(r.Context(), rq)
	writeAnswer(w, resp, cerr, o)
}

// trustedPeer tells whether the peer at addr (host:port) is a trusted proxy.
func (f *forwardAuth) trustedPeer(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range f.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// readForwarded reads the original request from the forwarded headers of
// a trusted proxy. A header sent twice, or two headers that disagree (a
// method, URI, host or scheme said differently by X-Forwarded-* and
// X-Original-*), is an error: nothing is guessed.
func readForwarded(h http.Header) (original, error) {
	var o original
	var vals [len(forwardedHeaders)]string
	for i, name := range forwardedHeaders {
		v, err := single(h, name)
		if err != nil {
			return o, err
		}
		vals[i] = v
	}
	fm, fp, fh, fu, om, ou, ourl := vals[0], vals[1], vals[2], vals[3], vals[5], vals[6], vals[7]
	o.nginx = ou != "" || ourl != ""
	var fromURL original
	if raw := ourl; raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return o, fmt.Errorf("%s is not an absolute http(s) URL", hOriginalURL)
		}
		fromURL = original{proto: u.Scheme, host: u.Host, uri: u.RequestURI()}
	}
	var err error
	if o.method, err = agree("method", fm, om); err != nil {
		return o, err
	}
	if o.uri, err = agree("URI", fu, ou, fromURL.uri); err != nil {
		return o, err
	}
	if o.host, err = agree("host", fh, fromURL.host); err != nil {
		return o, err
	}
	proto, err := forwardedProto(fp)
	if err != nil {
		return o, err
	}
	if o.proto, err = agree("scheme", proto, fromURL.proto); err != nil {
		return o, err
	}
	if o.uri == "" {
		if o.method != "" {
			return o, fmt.Errorf("a method is forwarded without a URI (%s or %s)", hForwardedURI, hOriginalURI)
		}
		return o, nil
	}
	if !strings.HasPrefix(o.uri, "/") {
		return o, fmt.Errorf("the forwarded URI does not start with /")
	}
	if o.method == "" {
		o.method = http.MethodGet
	} else if checkToken(o.method) != nil {
		return o, fmt.Errorf("the forwarded method is not an HTTP token")
	}
	if strings.ContainsAny(o.host, "/ \t\\@") {
		return o, fmt.Errorf("the forwarded host is not a host")
	}
	o.known = true
	return o, nil
}

// forwardedProto is the scheme X-Forwarded-Proto v says: its first
// element (a chain such as "https,http" is read as its first), http,
// https or "" when absent; any other is an error.
func forwardedProto(v string) (string, error) {
	p, _, _ := strings.Cut(v, ",")
	switch p = strings.TrimSpace(p); p {
	case "", "http", "https":
		return p, nil
	}
	return "", fmt.Errorf("the forwarded scheme is neither http nor https")
}

// single is the one value of the header name, "" if absent; sent more
// than once it is an error.
func single(h http.Header, name string) (string, error) {
	vs := h[name]
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", fmt.Errorf("%s sent %d times", name, len(vs))
}

// agree is the one value the non-empty vs say, or an error if two differ.
func agree(what string, vs ...string) (string, error) {
	out := ""
	for _, v := range vs {
		switch {
		case v == "":
		case out == "":
			out = v
		case v != out:
			return "", fmt.Errorf("the forwarded headers disagree on the %s", what)
		}
	}
	return out, nil
}

// checkToken tells why m is not an HTTP token (RFC 9110 tchar), nil if
// it is.
func checkToken(m string) error {
	if m == "" {
		return fmt.Errorf("empty")
	}
	for i := 0; i < len(m); i++ {
		if !isTChar(m[i]) {
			return fmt.Errorf("not a token")
		}
	}
	return nil
}

func isTChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// lowerNames are the lower-case names of the headers proxies commonly
// send, so that building a request does not allocate them again.
var lowerNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range append(forwardedHeaders[:], "Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cookie", "Connection",
		"Content-Length", "Content-Type", "Origin", "Referer", "User-Agent", "X-Request-Id", "X-Session-Token", "X-Real-Ip",
		"Access-Control-Request-Method", "Traceparent", "Tracestate") {
		m[http.CanonicalHeaderKey(n)] = strings.ToLower(n)
	}
	return m
}()

// checkRequestOf is the CheckRequest Envoy would send for the original
// request: its headers lower-case (repeated ones joined, cookies with
// "; "), the pseudo-headers of the original request. The forwarded
// headers go only when they were read (a trusted peer), with
// x-forwarded-proto as read.
func checkRequestOf(r *http.Request, o original, trusted bool) *authv3.CheckRequest {
	h := make(map[string]string, len(r.Header)+3)
	for name, vs := range r.Header {
		lower, ok := lowerNames[name]
		if !ok {
			lower = strings.ToLower(name)
		}
		switch {
		case len(vs) == 1:
			h[lower] = vs[0]
		case name == "Cookie":
			h[lower] = strings.Join(vs, "; ")
		default:
			h[lower] = strings.Join(vs, ",")
		}
	}
	if !trusted {
		for _, name := range forwardedHeaders {
			delete(h, lowerNames[name])
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if o.proto != "" {
		scheme = o.proto
		h["x-forwarded-proto"] = o.proto
	} else {
		delete(h, "x-forwarded-proto")
	}
	method, host, uri := o.method, o.host, o.uri
	if !o.known {
		method, host, uri = r.Method, r.Host, "/"
	}
	h[":method"], h[":authority"], h[":path"] = method, host, uri
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Id: h["x-request-id"], Method: method, Host: host, Path: uri, Scheme: scheme, Protocol: r.Proto, Headers: h,
	}}}}
}

var noStore = []string{"no-store"}

// envoyHeadersToRemove is the header in which Envoy's ext_authz
// http_service takes the names to remove from the upstream request.
const envoyHeadersToRemove = "X-Envoy-Auth-Headers-To-Remove"

// setHeader sets k (lower-case, as the answers spell it) to v, without
// canonicalizing the common names again.
func setHeader(h http.Header, k, v string) {
	switch k {
	case "authorization":
		h["Authorization"] = []string{v}
	default:
		h.Set(k, v)
	}
}

// The field numbers walkOK reads, from the descriptors.
var (
	fieldOkResponse    = (&authv3.CheckResponse{}).ProtoReflect().Descriptor().Fields().ByName("ok_response").Number()
	fieldStatus        = (&authv3.CheckResponse{}).ProtoReflect().Descriptor().Fields().ByName("status").Number()
	fieldOkHeaders     = (&authv3.OkHttpResponse{}).ProtoReflect().Descriptor().Fields().ByName("headers").Number()
	fieldOkResponseAdd = (&authv3.OkHttpResponse{}).ProtoReflect().Descriptor().Fields().ByName("response_headers_to_add").Number()
	fieldOptionHeader  = (&corev3.HeaderValueOption{}).ProtoReflect().Descriptor().Fields().ByName("header").Number()
	fieldHeaderKey     = (&corev3.HeaderValue{}).ProtoReflect().Descriptor().Fields().ByName("key").Number()
	fieldHeaderValue   = (&corev3.HeaderValue{}).ProtoReflect().Descriptor().Fields().ByName("value").Number()
	fieldStatusCode    = (&rpcstatus.Status{}).ProtoReflect().Descriptor().Fields().ByName("code").Number()
)

// walkOK applies the headers of the encoded OK answer b (a cached
// answer's bytes) to h: ok_response.headers set, response_headers_to_add
// (Set-Cookie) added. It reports false for an encoding that is not an OK
// answer (a status other than OK, or malformed).
func walkOK(b []byte, h http.Header) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case fieldStatus:
			if code := varintField(v, fieldStatusCode); code != 0 {
				return false
			}
		case fieldOkResponse:
			for rest := v; len(rest) > 0; {
				fn, ft, m := protowire.ConsumeTag(rest)
				if m < 0 {
					return false
				}
				rest = rest[m:]
				if ft != protowire.BytesType {
					if m = protowire.ConsumeFieldValue(fn, ft, rest); m < 0 {
						return false
					}
					rest = rest[m:]
					continue
				}
				opt, m := protowire.ConsumeBytes(rest)
				if m < 0 {
					return false
				}
				rest = rest[m:]
				if fn != fieldOkHeaders && fn != fieldOkResponseAdd {
					continue
				}
				hv, _ := bytesField(opt, fieldOptionHeader)
				k, _ := bytesField(hv, fieldHeaderKey)
				val, _ := bytesField(hv, fieldHeaderValue)
				if fn == fieldOkHeaders {
					setHeader(h, string(k), string(val))
				} else {
					h.Add(string(k), string(val))
				}
			}
		}
	}
	return true
}

// varintField is the first varint field num of b, 0 if none.
func varintField(b []byte, num protowire.Number) uint64 {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0
		}
		b = b[l:]
		if n == num && typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(b)
			return v
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return 0
		}
		b = b[l:]
	}
	return 0
}

// writeAnswer encodes a Check answer for a forward-auth proxy.
func writeAnswer(w http.ResponseWriter, resp *authv3.CheckResponse, err error, o original) {
	if err != nil {
		code := http.StatusInternalServerError
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, errorBody("unavailable", status.Convert(err).Message()))
		return
	}
	hdr := w.Header()
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		// An OK answer of a session is its cached encoding (unknown
		// fields: status, the Authorization header, Set-Cookie) plus the
		// identity headers of its route; both are read as Envoy merges
		// them, the encoding walked without decoding it.
		ok := resp.GetOkResponse()
		for _, h := range ok.GetHeaders() {
			setHeader(hdr, h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		for _, h := range ok.GetResponseHeadersToAdd() {
			hdr.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		if !walkOK(resp.ProtoReflect().GetUnknown(), hdr) {
			writeJSON(w, http.StatusInternalServerError, errorBody("internal", "the answer does not decode"))
			return
		}
		if rm := ok.GetHeadersToRemove(); o.envoy && len(rm) > 0 {
			// Envoy's http_service removes these from the upstream
			// request (ext_authz_http_impl.cc): the client's Authorization
			// on an answer without a session, identity headers not set.
			hdr[envoyHeadersToRemove] = []string{strings.Join(rm, ",")}
		}
		hdr["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
		return
	}
	d := resp.GetDeniedResponse()
	code := int(d.GetStatus().GetCode())
	if code == 0 {
		code = http.StatusForbidden
	}
	for _, h := range d.GetHeaders() {
		hdr.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	body := d.GetBody()
	if loc := hdr.Get("Location"); loc != "" && code >= 300 && code < 400 {
		if o.nginx {
			hdr.Del("Location")
			hdr.Set(RedirectHeader, loc)
			hdr.Set("Content-Type", "application/json")
			code, body = http.StatusUnauthorized, errorBody("login_required", "sign in at the "+RedirectHeader+" URL")
		} else {
			code = http.StatusFound
		}
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// errorBody is the JSON body of an answer that Check has no denial for.
func errorBody(name, message string) string {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{name, message})
	return string(b)
}
