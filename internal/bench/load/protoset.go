package load

import (
	"fmt"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// WriteProtoset writes the FileDescriptorSet of envoy.service.auth.v3 and
// every file it imports, for ghz --protoset. Both servers are driven from the
// same file, so neither needs server reflection and both are called alike.
func WriteProtoset(path string) error {
	root := authv3.File_envoy_service_auth_v3_external_auth_proto
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	// Dependencies first: protoset readers resolve imports in order.
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := range imps.Len() {
			add(imps.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(root)
	b, err := proto.Marshal(&set)
	if err != nil {
		return fmt.Errorf("protoset: %w", err)
	}
	return os.WriteFile(path, b, 0o600)
}

// CheckMethod is the fully qualified method ghz calls.
const CheckMethod = "envoy.service.auth.v3.Authorization.Check"
