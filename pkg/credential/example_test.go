package credential_test

import (
	"fmt"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
)

// The session cookie of a browser request, as Envoy sends the headers of a
// CheckRequest: only the Ory cookie is kept, to be forwarded to Ory.
func ExampleExtractor_Extract() {
	e := credential.NewExtractor([]string{"ory_kratos_session", "ory_session_*"}, "x-session-token", 16<<10)
	cred, err := e.Extract(credential.Headers{Map: map[string]string{
		"cookie": "theme=dark; ory_kratos_session=MTY5; _ga=GA1.1",
	}})
	if err != nil {
		panic(err)
	}
	fmt.Println(cred.Kind, cred.Value)
	// Output: cookie ory_kratos_session=MTY5
}
