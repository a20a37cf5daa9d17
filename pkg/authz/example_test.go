package authz_test

import (
	"context"
	"fmt"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// sessionJWTs stands in for *ory.Client, which asks Ory's whoami.
type sessionJWTs struct{ calls int }

func (s *sessionJWTs) Tokenize(_ context.Context, cred credential.Credential, template string) (ory.Token, error) {
	s.calls++
	if cred.Value != "ory_kratos_session=MTY5" {
		return ory.Token{}, ory.ErrUnauthenticated
	}
	return ory.Token{JWT: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", Expiry: time.Now().Add(time.Minute),
		SessionID: "5b8e0c1e-7a32-4d1e-9a51-0f3c2b6d8e11", IdentityID: "2f0b5d4e-8d0a-4c57-9c1e-3a7f6b1d9e20", AAL: "aal1"}, nil
}

// A Check of a browser request: the session cookie becomes the
// Authorization header of the upstream request. The second Check of the
// same session is a cache hit and does not ask Ory.
func ExampleServer_Check() {
	ory := &sessionJWTs{}
	s, err := authz.New(authz.Options{
		Tokenizer:       ory,
		Extractor:       credential.NewExtractor([]string{"ory_kratos_session"}, "x-session-token", 16<<10),
		DefaultTemplate: "mesh",
		ExpiryLeeway:    5 * time.Second,
		FetchTimeout:    time.Second,
		CacheMaxBytes:   1 << 20,
	})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: map[string]string{"cookie": "ory_kratos_session=MTY5"}},
	}}}
	for range 2 {
		resp, err := s.Check(context.Background(), req)
		if err != nil {
			panic(err)
		}
		// The answer is encoded once per JWT and served as encoded bytes;
		// read it as Envoy does, from the wire.
		wire, err := proto.Marshal(resp)
		if err != nil {
			panic(err)
		}
		var got authv3.CheckResponse
		if err := proto.Unmarshal(wire, &got); err != nil {
			panic(err)
		}
		h := got.GetOkResponse().GetHeaders()[0].GetHeader()
		fmt.Println(got.GetStatus().GetCode(), h.GetKey(), h.GetValue())
	}
	fmt.Println("whoami calls:", ory.calls)
	// Output:
	// 0 authorization Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln
	// 0 authorization Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln
	// whoami calls: 1
}
