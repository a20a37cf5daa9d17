// Package checktest reads ext_authz answers in tests: what an OK answer
// with a JWT must look like for Envoy to hand the upstream exactly that JWT.
package checktest

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// BearerJWT returns the JWT of an OK answer, failing t unless the answer
// has exactly one header mutation: authorization, overwriting (append
// explicitly false and OVERWRITE_IF_EXISTS_OR_ADD: Envoy versions differ in
// which one they honour), and not removed again by headers_to_remove,
// which runs after the sets.
func BearerJWT(t testing.TB, resp *authv3.CheckResponse) string {
	t.Helper()
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
		t.Fatalf("status = %v (%s), want OK", c, resp.GetStatus().GetMessage())
	}
	hs := resp.GetOkResponse().GetHeaders()
	if len(hs) != 1 {
		t.Fatalf("%d header mutations, want 1: %v", len(hs), hs)
	}
	h := hs[0]
	if h.GetHeader().GetKey() != "authorization" {
		t.Fatalf("mutation key %q, want lower-case authorization", h.GetHeader().GetKey())
	}
	if a := h.GetAppend(); a == nil || a.GetValue() {
		t.Errorf("append = %v, want explicitly false", a)
	}
	if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Errorf("append_action = %v, want OVERWRITE_IF_EXISTS_OR_ADD", h.GetAppendAction())
	}
	for _, rm := range resp.GetOkResponse().GetHeadersToRemove() {
		if strings.EqualFold(rm, "authorization") {
			t.Error("authorization in headers_to_remove: Envoy would drop the JWT")
		}
	}
	raw, ok := strings.CutPrefix(h.GetHeader().GetValue(), "Bearer ")
	if !ok {
		t.Fatal("authorization mutation is not a Bearer value")
	}
	return raw
}
