package authz

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// TestAnswerOnTheWire: the pre-encoded answer parses into exactly the answer
// built as a tree, the two dynamic_metadata occurrences merged, for a hit
// and for a fresh fetch.
func TestAnswerOnTheWire(t *testing.T) {
	tok := ory.Token{JWT: "h.p.s", IdentityID: "iid", SessionID: "sid", AAL: "aal2", SetCookies: []string{"a=1; Path=/"}}
	a, cost, err := buildAllowed(tok)
	if err != nil {
		t.Fatal(err)
	}
	if cost < int64(len(tok.JWT)) {
		t.Errorf("cost %d below the JWT's size", cost)
	}
	for _, hit := range []bool{true, false} {
		want := &authv3.CheckResponse{
			Status: statusOK,
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{{
					Header: &corev3.HeaderValue{Key: "authorization", Value: "Bearer h.p.s"},
					Append: wrapFalse, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
				}},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
					Header: &corev3.HeaderValue{Key: "set-cookie", Value: "a=1; Path=/"},
					Append: wrapTrue, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
				}},
			}},
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				"identity_id": structpb.NewStringValue("iid"),
				"session_id":  structpb.NewStringValue("sid"),
				"aal":         structpb.NewStringValue("aal2"),
				"cached":      structpb.NewBoolValue(hit),
			}},
		}
		b, err := proto.Marshal(a.response(hit, nil))
		if err != nil {
			t.Fatal(err)
		}
		var got authv3.CheckResponse
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, want) {
			t.Errorf("hit=%v: on the wire %v, want %v", hit, &got, want)
		}
	}
}

// TestAnswerIDs: the ids the cache reads for invalidation are those encoded
// in the answer, whatever the JWT, cookies and values around them hold, and
// reading them does not allocate.
func TestAnswerIDs(t *testing.T) {
	tests := []ory.Token{
		{JWT: "h.p.s", IdentityID: "iid", SessionID: "sid", AAL: "aal1"},
		// The ids also appear inside the JWT and a cookie: only the
		// metadata counts.
		{JWT: "session_id.identity_id.x", IdentityID: "7b1c", SessionID: "0d2e", AAL: "aal2", SetCookies: []string{"session_id=evil", "identity_id=evil"}},
		{JWT: strings.Repeat("j", 16<<10), IdentityID: strings.Repeat("i", 300), SessionID: "s"},
		{JWT: "h.p.s", IdentityID: "", SessionID: ""},
	}
	for _, tok := range tests {
		a, _, err := buildAllowed(tok)
		if err != nil {
			t.Fatal(err)
		}
		sid, iid := a.ids()
		if string(sid) != tok.SessionID || string(iid) != tok.IdentityID {
			t.Errorf("ids() = %q, %q, want %q, %q", sid, iid, tok.SessionID, tok.IdentityID)
		}
		if _, _, aal := a.meta(); string(aal) != tok.AAL {
			t.Errorf("meta() aal = %q, want %q", aal, tok.AAL)
		}
		if n := testing.AllocsPerRun(100, func() { a.ids() }); n != 0 {
			t.Errorf("ids() allocates %v times", n)
		}
		if got := a.jwt(); got != tok.JWT {
			t.Errorf("jwt() = %.20q, want %.20q", got, tok.JWT)
		}
	}
	// Truncated or garbage encodings give up without panicking.
	a, _, err := buildAllowed(tests[1])
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.wire {
		allowed{wire: a.wire[:i]}.meta()
		allowed{wire: a.wire[:i]}.jwt()
	}
	allowed{wire: []byte{0xff, 0xff, 0xff}}.ids()
}
