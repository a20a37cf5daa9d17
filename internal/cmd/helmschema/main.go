// Command helmschema writes the Helm chart's values schema
// (internal/helmschema) from the flag table: `make helm-schema`.
//
//	go run ./internal/cmd/helmschema [-o deploy/helm/ory-ext-authz/values.schema.json]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ory-ext-authz/ory-ext-authz/internal/helmschema"
)

func main() {
	out := flag.String("o", helmschema.Path, "file to write")
	flag.Parse()
	b, err := helmschema.Generate()
	if err == nil {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "helmschema: %v\n", err)
		os.Exit(1)
	}
}
