package authz

import (
	"errors"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// allowed is the OK answer of a session, encoded once when the JWT is
// fetched: status OK, the header mutations and dynamic_metadata
// {identity_id, session_id, aal}. The cache keeps only these bytes (a third
// of the memory of the message trees), and ext when the route table needs
// the JWT decoded (identity headers, claims for `authorize`). A check
// answers with a CheckResponse whose real fields are dynamic_metadata
// {cached} and, on a route table with identity headers, an ok_response
// with the identity headers, and whose unknown fields are these bytes:
// marshalling copies them as they are, and a protobuf parser (Envoy's)
// merges the two occurrences of dynamic_metadata and of ok_response.
type allowed struct {
	wire []byte
	ext  *extras
}

// response is the answer of a check; hit tells a cache hit from a request
// that waited on Ory, and ok (may be nil) is the identity part of the OK
// answer. One small allocation, whatever the answer holds.
func (a allowed) response(hit bool, ok *authv3.CheckResponse_OkResponse) *authv3.CheckResponse {
	meta := metaFresh
	if hit {
		meta = metaCached
	}
	r := &authv3.CheckResponse{DynamicMetadata: meta}
	if ok != nil {
		r.HttpResponse = ok
	}
	r.ProtoReflect().SetUnknown(protoreflect.RawFields(a.wire))
	return r
}

// ids returns the session_id and identity_id of the answer's
// dynamic_metadata, as strings sharing a's memory (a is never written after
// it was encoded). The cache asks for them only while invalidation records
// are held, instead of keeping copies in every entry. It walks the encoding
// without allocating; the ok_response (the JWT) is skipped in one step.
func (a allowed) ids() (sid, iid []byte) {
	sid, iid, _ = a.meta()
	return sid, iid
}

// meta returns the session_id, identity_id and aal of the answer's
// dynamic_metadata, sharing a's memory, without allocating.
func (a allowed) meta() (sid, iid, aal []byte) {
	md, _ := bytesField(a.wire, fieldDynamicMetadata)
	for rest := md; ; {
		var entry []byte
		if entry, rest = bytesField(rest, fieldStructFields); entry == nil {
			return sid, iid, aal
		}
		key, _ := bytesField(entry, fieldEntryKey)
		val, _ := bytesField(entry, fieldEntryValue)
		str, _ := bytesField(val, fieldValueString)
		switch string(key) {
		case "session_id":
			sid = str
		case "identity_id":
			iid = str
		case "aal":
			aal = str
		}
	}
}

// bytesField finds the first length-delimited field numbered num of the
// encoded message b: its value (non-nil, maybe empty) and what follows it.
// It returns nil at the end of b or at a malformed field.
func bytesField(b []byte, num protowire.Number) (field, rest []byte) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, nil
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return nil, nil
			}
			return v[:len(v):len(v)], b[l:]
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return nil, nil
		}
		b = b[l:]
	}
	return nil, nil
}

// The field numbers ids walks, from the descriptors.
var (
	fieldDynamicMetadata = (&authv3.CheckResponse{}).ProtoReflect().Descriptor().Fields().ByName("dynamic_metadata").Number()
	fieldStructFields    = (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").Number()
	fieldEntryKey        = (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").MapKey().Number()
	fieldEntryValue      = (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").MapValue().Number()
	fieldValueString     = (&structpb.Value{}).ProtoReflect().Descriptor().Fields().ByName("string_value").Number()
)

// The per-answer part of the dynamic metadata; shared, never modified.
var (
	metaCached = &structpb.Struct{Fields: map[string]*structpb.Value{"cached": structpb.NewBoolValue(true)}}
	metaFresh  = &structpb.Struct{Fields: map[string]*structpb.Value{"cached": structpb.NewBoolValue(false)}}
)

// buildAllowed encodes the OK answer of a token; its cost is its size.
func buildAllowed(tok ory.Token) (allowed, int64, error) {
	ok := &authv3.OkHttpResponse{
		// Overwritten, not appended: the client's own Authorization must
		// never reach the upstream next to ours.
		Headers: []*corev3.HeaderValueOption{header("authorization", "Bearer "+tok.JWT)},
	}
	for _, c := range tok.SetCookies {
		ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, appendedHeader("set-cookie", c))
	}
	wire, err := proto.Marshal(&authv3.CheckResponse{
		Status:       statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"identity_id": structpb.NewStringValue(tok.IdentityID),
			"session_id":  structpb.NewStringValue(tok.SessionID),
			"aal":         structpb.NewStringValue(tok.AAL),
		}},
	})
	if err != nil {
		return allowed{}, 0, fmt.Errorf("encode the answer: %w", err)
	}
	return allowed{wire: wire}, int64(cap(wire)), nil
}

// header sets a header, replacing any the request or response has: both
// `append: false` and OVERWRITE_IF_EXISTS_OR_ADD, since Envoy versions differ
// in which of the two they honour (Envoy 1.37 appended with `append` unset).
func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		Append:       wrapFalse,
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// appendedHeader adds a header next to any of the same name (Set-Cookie).
func appendedHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		Append:       wrapTrue,
		AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
	}
}

// decodeAllowed reads an answer another replica encoded (from the shared
// tier, where it was sealed and authenticated): it must parse as the OK
// answer buildAllowed makes, status OK and `authorization: Bearer` set, or
// it is not used. It returns the JWT too.
func decodeAllowed(b []byte) (allowed, string, error) {
	var r authv3.CheckResponse
	if err := proto.Unmarshal(b, &r); err != nil {
		return allowed{}, "", fmt.Errorf("not an encoded answer: %w", err)
	}
	hs := r.GetOkResponse().GetHeaders()
	if r.GetStatus().GetCode() != int32(codes.OK) || len(hs) == 0 || hs[0].GetHeader().GetKey() != "authorization" {
		return allowed{}, "", errors.New("not an OK answer that sets authorization")
	}
	jwt, ok := strings.CutPrefix(hs[0].GetHeader().GetValue(), "Bearer ")
	if !ok {
		return allowed{}, "", errors.New("not an OK answer that sets a Bearer authorization")
	}
	return allowed{wire: b}, jwt, nil
}

// jwt is the JWT of an answer, from its authorization header.
func (a allowed) jwt() string {
	var r authv3.CheckResponse
	if proto.Unmarshal(a.wire, &r) != nil || len(r.GetOkResponse().GetHeaders()) == 0 {
		return ""
	}
	jwt, _ := strings.CutPrefix(r.GetOkResponse().GetHeaders()[0].GetHeader().GetValue(), "Bearer ")
	return jwt
}
