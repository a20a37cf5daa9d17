// Package load holds what the benchmark programs share: the CheckRequests a
// browser behind Envoy produces, the ghz inputs (protoset and data file),
// latency statistics, and a small bounded gRPC load driver.
package load

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// BrowserHeaders is what Envoy sends for a typical browser request: 14
// cookies of which one is the session (sessionPair, "name=value"), and the
// usual request headers. It matches the headers of pkg/authz's benchmarks.
func BrowserHeaders(sessionPair string) map[string]string {
	return map[string]string{
		":method": "GET", ":path": "/api/orders?page=2", ":authority": "app.example.org", ":scheme": "https",
		"accept":            "application/json, text/plain, */*",
		"accept-encoding":   "gzip, deflate, br",
		"accept-language":   "en-US,en;q=0.9",
		"user-agent":        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"x-request-id":      "7f1e1d4c-2b8f-4d4c-9a4e-1f2b3c4d5e6f",
		"x-forwarded-proto": "https",
		"cookie": "_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; theme=dark; lang=en; " +
			"consent=necessary%2Canalytics; _fbp=fb.1.1700000000000.1234567890; ajs_anonymous_id=%2212345678-1234%22; " +
			"csrf_token_abc=Zm9vYmFyYmF6cXV4; intercom-id-x=12345678-aaaa-bbbb-cccc-1234567890ab; " + sessionPair +
			"; sidebar=collapsed; tz=Europe%2FBerlin; ab_test=B",
	}
}

// CheckRequest is the CheckRequest Envoy sends for BrowserHeaders(sessionPair).
func CheckRequest(sessionPair string) *authv3.CheckRequest {
	h := BrowserHeaders(sessionPair)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Id: "7f1e1d4c-2b8f-4d4c-9a4e-1f2b3c4d5e6f", Method: h[":method"], Path: h[":path"],
			Host: h[":authority"], Scheme: "https", Protocol: "HTTP/2", Headers: h,
		},
	}}}
}

// ReadLines reads a file of one value a line (the fake Ory's session file),
// skipping empty lines.
func ReadLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// WriteGhzData writes a ghz --data-file: a JSON array with one CheckRequest
// per session. ghz sends element (request number mod len) on each unary call,
// so consecutive requests cycle through every session.
func WriteGhzData(path string, sessionPairs []string) error {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, p := range sessionPairs {
		if i > 0 {
			b.WriteString(",\n")
		}
		j, err := protojson.Marshal(CheckRequest(p))
		if err != nil {
			return fmt.Errorf("marshal request %d: %w", i, err)
		}
		b.Write(j)
	}
	b.WriteString("]\n")
	return os.WriteFile(path, b.Bytes(), 0o600)
}
