package integration_test

import (
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// BenchmarkWhoamiRealKratos is what a miss or a refresh costs this side of
// the wire: one whoami?tokenize_as call to a real Kratos (its session JSON,
// about 1.4 KB, decoded by ory/client-go; the JWT's claims read by go-jose).
// Compare its CPU profile with BenchmarkCheckCacheHit's.
func BenchmarkWhoamiRealKratos(b *testing.B) {
	k := kratostest.Start(b, kratosdev.Options{})
	tok, _, err := k.APILogin(b.Context(), newUser(b, k, "bench").email, password)
	if err != nil {
		b.Fatal(err)
	}
	oc, err := ory.New(ory.Options{BaseURL: k.PublicURL(), Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(oc.Close)
	cred := credential.Credential{Kind: credential.KindSessionToken, Value: tok}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := oc.Tokenize(b.Context(), cred, kratosdev.MeshTemplate); err != nil {
			b.Fatal(err)
		}
	}
}
