package checkcli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// minSecretLen is the shortest value the redactor scrubs. Credentials are far
// longer; scrubbing short values (a cookie "theme=dark") would mangle the
// report without protecting anything. The values themselves are never
// formatted into the report: the redactor only catches a server echoing them.
const minSecretLen = 8

// sensitiveHeaders carry credentials; their values are shown as a size only.
var sensitiveHeaders = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"set-cookie":          true,
	"x-session-token":     true,
}

// report accumulates the human-readable output. It is written to stdout only
// after redaction, once every secret (including those in the answer) is known.
type report struct {
	out      bytes.Buffer
	o        *options
	now      time.Time
	secrets  []string
	jwts     []string // compact JWTs of authorization mutations, decoded at the end
	warnings []string
}

func (r *report) printf(format string, args ...any) {
	fmt.Fprintf(&r.out, format, args...)
}

func (r *report) warn(format string, args ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf(format, args...))
}

// addSecret remembers a credential for the final scrub: the whole value, a
// Bearer credential in it, and every cookie value in it.
func (r *report) addSecret(name, v string) {
	r.secrets = append(r.secrets, v)
	if tok, ok := bearerToken(v); ok {
		r.secrets = append(r.secrets, tok)
	}
	if name == "cookie" || name == "set-cookie" {
		for _, c := range splitCookies(v) {
			r.secrets = append(r.secrets, c.value)
		}
	}
}

// redacted returns the report with every known secret replaced.
func (r *report) redacted() []byte {
	var pairs []string
	seen := map[string]bool{}
	secrets := slices.Clone(r.secrets)
	if !r.o.printJWT {
		secrets = append(secrets, r.jwts...)
	}
	// Longest first: at a given position strings.Replacer takes the first
	// matching pair, and a short secret must not leave part of a longer one.
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	for _, s := range secrets {
		if len(s) < minSecretLen || seen[s] {
			continue
		}
		seen[s] = true
		pairs = append(pairs, s, "[redacted]")
	}
	if len(pairs) == 0 {
		return r.out.Bytes()
	}
	return []byte(strings.NewReplacer(pairs...).Replace(r.out.String()))
}

type cookiePair struct{ name, value string }

// splitCookies reads a Cookie header value (or the first pair of a Set-Cookie
// value). It accepts ";" and the "," Envoy uses to join repeated lines.
func splitCookies(v string) []cookiePair {
	var cs []cookiePair
	for part := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ';' || r == ',' }) {
		name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		if name != "" {
			cs = append(cs, cookiePair{name, value})
		}
	}
	return cs
}

func cookieNames(v string) string {
	cs := splitCookies(v)
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
	}
	return fmt.Sprintf("%d cookie(s): %s", len(cs), strings.Join(names, ", "))
}

func (r *report) printRequest(req *authv3.CheckRequest, lines []header) {
	h := req.GetAttributes().GetRequest().GetHttp()
	transport := "plaintext"
	if r.o.tls.Enabled {
		transport = "TLS"
		if r.o.tls.Cert != "" {
			transport = "mTLS"
		}
	}
	r.printf("ory-ext-authz check: envoy.service.auth.v3.Authorization/Check at %s (%s, timeout %s)\n",
		r.o.addr, transport, r.o.timeout)
	r.printf("\nrequest\n")
	r.printf("  id:      %s\n", h.GetId())
	r.printf("  http:    %s %s://%s%s %s\n", h.GetMethod(), h.GetScheme(), h.GetHost(), h.GetPath(), h.GetProtocol())
	if r.o.rawHeaders {
		r.printf("  headers: in header_map with raw_value, one entry per line (encode_raw_headers: true); headers map empty\n")
	} else {
		r.printf("  headers: in the headers map, repeated names joined with \",\"\n")
	}
	var names []string
	for _, l := range lines {
		if !slices.Contains(names, l.name) {
			names = append(names, l.name)
		}
	}
	r.printf("           %s (values not shown)\n", strings.Join(names, ", "))
	for _, l := range lines {
		if sensitiveHeaders[l.name] {
			r.addSecret(l.name, l.value)
		}
	}
	if r.o.cookie != "" {
		r.printf("  cookie:  %s; values not shown\n", cookieNames(r.o.cookie))
	}
	if r.o.sessionToken != "" {
		r.printf("  session token: sent as x-session-token (%d bytes); value not shown\n", len(r.o.sessionToken))
	}
	if ext := req.GetAttributes().GetContextExtensions(); len(ext) > 0 {
		keys := make([]string, 0, len(ext))
		for k := range ext {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		r.printf("  context_extensions:\n")
		for _, k := range keys {
			r.printf("    %s=%s\n", k, ext[k])
		}
	}
}

// printResult prints the answer (or the error) of Check and returns the exit code.
func (r *report) printResult(resp *authv3.CheckResponse, err error) int {
	r.printf("\n")
	if err != nil {
		st := status.Convert(err)
		r.printf("gRPC status: %s: %s\n", st.Code(), printable(st.Message()))
		switch st.Code() {
		case codes.DeadlineExceeded:
			r.printf("  no answer within -timeout %s (Envoy's own ext_authz timeout defaults to 200ms)\n", r.o.timeout)
		case codes.Unavailable:
			// grpc-go words its own transport failures this way; anything else
			// came from the server (ory-ext-authz: Ory unreachable or failing).
			if strings.HasPrefix(st.Message(), "connection error") {
				r.printf("  could not connect: check -addr, that the server runs, and that the -tls flags match it\n")
			} else {
				r.printf("  the server or the connection answered Unavailable (ory-ext-authz does when Ory is unreachable)\n")
			}
		}
		r.printf("decision: ERROR (exit 2): Envoy applies failure_mode_allow and status_on_error\n")
		return exitError
	}
	r.printf("gRPC status: OK\n")

	st := resp.GetStatus()
	if st == nil {
		r.printf("CheckResponse status: OK (not set; Envoy reads a missing status as OK)\n")
	} else {
		r.printf("CheckResponse status: %s (%d)", codeName(st.GetCode()), st.GetCode())
		if st.GetMessage() != "" {
			r.printf(": %s", printable(st.GetMessage()))
		}
		r.printf("\n")
		for _, d := range st.GetDetails() {
			r.printf("  detail: %s\n", d.GetTypeUrl())
		}
	}

	var exit int
	allowed := st.GetCode() == int32(codes.OK)
	switch {
	case allowed:
		exit = exitAllowed
		r.printf("decision: ALLOWED (exit 0)\n")
		if resp.GetDeniedResponse() != nil || resp.GetErrorResponse() != nil {
			r.warn("status OK with a denied_response or error_response: Envoy allows the request and ignores it")
		}
		r.printOK(resp.GetOkResponse())
	case resp.GetErrorResponse() != nil:
		exit = exitError
		r.printf("decision: ERROR (exit 2): error_response; Envoy applies failure_mode_allow and status_on_error\n")
		r.printDenied("error_response", resp.GetErrorResponse(), "status_on_error (403 by default)")
	default:
		exit = exitDenied
		r.printf("decision: DENIED (exit 1)\n")
		if resp.GetOkResponse() != nil {
			r.warn("status %s with an ok_response: Envoy denies and ignores the ok_response", codeName(st.GetCode()))
		}
		r.printDenied("denied_response", resp.GetDeniedResponse(), "403 Forbidden")
	}

	r.printMetadata(resp)
	r.printJWTs()
	if len(r.warnings) > 0 {
		r.printf("\nwarnings\n")
		for _, w := range r.warnings {
			r.printf("  - %s\n", w)
		}
	}
	return exit
}

func (r *report) printOK(ok *authv3.OkHttpResponse) {
	r.printf("\nok_response")
	if ok == nil {
		r.printf(": none (no mutations)\n")
		return
	}
	r.printf("\n")
	r.printHeaderOptions("headers (set on the request to the upstream)", ok.GetHeaders(), true)
	r.printList("headers_to_remove (run after the sets)", ok.GetHeadersToRemove())
	// Removing authorization is right in an answer without a JWT (allow
	// mode, a preflight: the client's own must not reach the upstream);
	// next to a set it drops the JWT.
	isAuth := func(h string) bool { return strings.EqualFold(h, "authorization") }
	sets := slices.ContainsFunc(ok.GetHeaders(), func(h *corev3.HeaderValueOption) bool { return isAuth(h.GetHeader().GetKey()) })
	if sets && slices.ContainsFunc(ok.GetHeadersToRemove(), isAuth) {
		r.warn("headers_to_remove has authorization: it runs after the sets and removes the JWT")
	}
	r.printHeaderOptions("response_headers_to_add (sent to the client)", ok.GetResponseHeadersToAdd(), false)
	if qs := ok.GetQueryParametersToSet(); len(qs) > 0 {
		r.printf("  query_parameters_to_set:\n")
		for _, q := range qs {
			r.printf("    %s=%s\n", printable(q.GetKey()), printable(q.GetValue()))
		}
	} else {
		r.printf("  query_parameters_to_set: none\n")
	}
	r.printList("query_parameters_to_remove", ok.GetQueryParametersToRemove())
}

func (r *report) printList(title string, xs []string) {
	if len(xs) == 0 {
		r.printf("  %s: none\n", title)
		return
	}
	r.printf("  %s: %s\n", title, strings.Join(xs, ", "))
}

func (r *report) printDenied(title string, d *authv3.DeniedHttpResponse, defaultStatus string) {
	r.printf("\n%s", title)
	if d == nil {
		r.printf(": none (Envoy answers %s with an empty body)\n", defaultStatus)
		return
	}
	r.printf("\n")
	if c := int(d.GetStatus().GetCode()); c > 0 {
		r.printf("  HTTP status: %d %s\n", c, http.StatusText(c))
	} else {
		r.printf("  HTTP status: not set (Envoy answers %s)\n", defaultStatus)
	}
	r.printHeaderOptions("headers", d.GetHeaders(), false)
	body := d.GetBody()
	if body == "" {
		r.printf("  body: empty\n")
		return
	}
	r.printf("  body (%d bytes):\n", len(body))
	if !utf8.ValidString(body) || strings.ContainsFunc(body, isUnsafeControl) {
		r.printf("    %q\n", body)
		return
	}
	for line := range strings.Lines(body) {
		r.printf("    %s", line)
	}
	if !strings.HasSuffix(body, "\n") {
		r.printf("\n")
	}
}

// printHeaderOptions prints header mutations with both append fields and the
// action Envoy derives from them, because that derivation has surprised people:
// with append unset Envoy uses append_action, whose zero value appends.
func (r *report) printHeaderOptions(title string, hs []*corev3.HeaderValueOption, upstream bool) {
	if len(hs) == 0 {
		r.printf("  %s: none\n", title)
		return
	}
	r.printf("  %s:\n", title)
	for _, h := range hs {
		key := h.GetHeader().GetKey()
		r.printf("    %s: %s\n", printable(key), r.headerValue(key, h.GetHeader().GetValue(), upstream))
		appendField := "unset"
		if a := deprecatedAppend(h); a != nil {
			appendField = strconv.FormatBool(a.GetValue())
		}
		action, how := effectiveAction(h)
		r.printf("      append=%s append_action=%s -> Envoy applies %s%s\n",
			appendField, actionName(h.GetAppendAction()), actionName(action), how)
		if h.GetKeepEmptyValue() {
			r.printf("      keep_empty_value=true (not supported by ext_authz)\n")
		}
		if len(h.GetHeader().GetRawValue()) > 0 {
			r.printf("      raw_value set (%d bytes): ext_authz reads value, not raw_value, in mutations\n",
				len(h.GetHeader().GetRawValue()))
		}
		if upstream && strings.EqualFold(key, "authorization") && action != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			r.warn("the authorization mutation is applied as %s, not OVERWRITE_IF_EXISTS_OR_ADD: "+
				"a client-sent Authorization header can reach the upstream", actionName(action))
		}
	}
}

// effectiveAction mirrors Envoy's ext_authz client: the deprecated append
// field, when present, wins over append_action; an unknown action is treated
// as OVERWRITE_IF_EXISTS_OR_ADD.
func effectiveAction(h *corev3.HeaderValueOption) (corev3.HeaderValueOption_HeaderAppendAction, string) {
	if a := deprecatedAppend(h); a != nil {
		if a.GetValue() {
			return corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, " (from append)"
		}
		return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, " (from append)"
	}
	if _, ok := corev3.HeaderValueOption_HeaderAppendAction_name[int32(h.GetAppendAction())]; !ok {
		return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, " (append_action unknown)"
	}
	return h.GetAppendAction(), ""
}

// deprecatedAppend reads HeaderValueOption.append. The field is deprecated,
// but Envoy still lets it win over append_action, and servers set it on
// purpose (Envoy 1.37 appended when it was unset), so the report must show it.
func deprecatedAppend(h *corev3.HeaderValueOption) *wrapperspb.BoolValue {
	return h.GetAppend() //nolint:staticcheck // deliberate, see above
}

// deprecatedOkMetadata reads OkHttpResponse.dynamic_metadata, deprecated but
// still honoured by Envoy, which lets it override CheckResponse.dynamic_metadata.
func deprecatedOkMetadata(ok *authv3.OkHttpResponse) *structpb.Struct {
	return ok.GetDynamicMetadata() //nolint:staticcheck // deliberate, see above
}

func actionName(a corev3.HeaderValueOption_HeaderAppendAction) string {
	if n, ok := corev3.HeaderValueOption_HeaderAppendAction_name[int32(a)]; ok {
		return n
	}
	return fmt.Sprintf("UNKNOWN(%d)", a)
}

// headerValue renders a mutation's value for the report, hiding credentials.
func (r *report) headerValue(key, v string, upstream bool) string {
	name := strings.ToLower(key)
	if !sensitiveHeaders[name] {
		return printable(v)
	}
	if name == "authorization" {
		return r.authorizationValue(v, upstream)
	}
	r.addSecret(name, v)
	switch name {
	case "cookie":
		return fmt.Sprintf("<%s; values not shown>", cookieNames(v))
	case "set-cookie":
		// Ory refreshes the session cookie this way: the value is a live
		// session credential, the attributes are what one debugs.
		first, attrs, _ := strings.Cut(v, ";")
		cname, cval, _ := strings.Cut(strings.TrimSpace(first), "=")
		s := fmt.Sprintf("%s=<redacted, %d bytes>", cname, len(cval))
		if attrs != "" {
			s += ";" + printable(attrs)
		}
		return s
	default:
		return fmt.Sprintf("<redacted, %d bytes>", len(v))
	}
}

// authorizationValue renders an authorization mutation: a Bearer JWT is
// shown decoded later (compact only with -print-jwt), anything else may be a
// credential of another kind (a session token passed through) and is hidden.
func (r *report) authorizationValue(v string, upstream bool) string {
	tok, ok := bearerToken(v)
	if !ok {
		r.addSecret("authorization", v)
		return fmt.Sprintf("<redacted, %d bytes: not a Bearer value>", len(v))
	}
	if _, err := decodeJWT(tok); err != nil {
		r.addSecret("authorization", v)
		return fmt.Sprintf("Bearer <redacted, %d bytes: not a JWT: %v>", len(tok), err)
	}
	if upstream {
		r.jwts = append(r.jwts, tok)
	}
	if r.o.printJWT {
		return "Bearer " + tok
	}
	r.addSecret("authorization", v)
	return fmt.Sprintf("Bearer <JWT, %d bytes, decoded below; -print-jwt shows it>", len(tok))
}

func (r *report) printMetadata(resp *authv3.CheckResponse) {
	md, where := resp.GetDynamicMetadata(), "CheckResponse.dynamic_metadata"
	if okMD := deprecatedOkMetadata(resp.GetOkResponse()); okMD != nil {
		md, where = okMD, "ok_response.dynamic_metadata (deprecated; overrides CheckResponse.dynamic_metadata)"
	}
	if md == nil {
		r.printf("\ndynamic_metadata: none\n")
		return
	}
	b, err := json.MarshalIndent(md.AsMap(), "  ", "  ")
	if err != nil {
		r.printf("\ndynamic_metadata: cannot render as JSON: %v\n", err)
		return
	}
	r.printf("\ndynamic_metadata from %s:\n  %s\n", where, b)
}

// printJWTs decodes the Bearer JWTs of authorization mutations. This is the
// point of the tool, so claims are shown in full; the compact form is not.
func (r *report) printJWTs() {
	for _, tok := range r.jwts {
		d, err := decodeJWT(tok)
		if err != nil { // checked in headerValue already
			continue
		}
		r.printf("\nJWT of the authorization mutation (decoded; signature not verified)\n")
		r.printf("  header:\n%s\n", indentBlock(d.header, "    "))
		r.printf("  claims:\n%s\n", indentBlock(d.claims, "    "))
		if d.iat != nil {
			r.printf("  iat: %s (%s)\n", d.iat.Format(time.RFC3339), relative(d.iat.Sub(r.now)))
		}
		if d.nbf != nil {
			r.printf("  nbf: %s (%s)", d.nbf.Format(time.RFC3339), relative(d.nbf.Sub(r.now)))
			if d.nbf.After(r.now) {
				r.printf(": NOT YET VALID")
			}
			r.printf("\n")
		}
		switch {
		case d.exp == nil:
			r.printf("  exp: none: the JWT never expires\n")
			r.warn("the JWT has no exp")
		case d.exp.After(r.now):
			r.printf("  exp: %s (valid for another %s)\n", d.exp.Format(time.RFC3339), duration(d.exp.Sub(r.now)))
		default:
			r.printf("  exp: %s (EXPIRED %s ago)\n", d.exp.Format(time.RFC3339), duration(r.now.Sub(*d.exp)))
			r.warn("the JWT has already expired: a tokenizer template without ttl can produce this")
		}
		if d.iat != nil && d.exp != nil {
			r.printf("  lifetime (exp - iat): %s\n", duration(d.exp.Sub(*d.iat)))
		}
		for _, name := range d.timeErrs {
			r.warn("JWT claim %s is not a NumericDate", name)
		}
	}
}

func codeName(c int32) string {
	if n, ok := rpccode.Code_name[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", c)
}

func relative(d time.Duration) string {
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d > 0:
		return "in " + duration(d)
	}
	return duration(-d) + " ago"
}

// duration rounds for reading: nobody debugging a JWT needs nanoseconds.
func duration(d time.Duration) string {
	if d >= time.Second || d <= -time.Second {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}

func indentBlock(b []byte, prefix string) string {
	var sb strings.Builder
	for line := range strings.Lines(string(b)) {
		sb.WriteString(prefix)
		sb.WriteString(line)
	}
	return strings.TrimRight(sb.String(), "\n")
}

// printable keeps server-chosen text from driving the terminal.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, isUnsafeControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func isUnsafeControl(r rune) bool {
	return r != '\n' && r != '\t' && unicode.IsControl(r)
}
