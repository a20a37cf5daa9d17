// Command dashboard writes the Grafana dashboard built by
// internal/dashboard: `make dashboard` runs it as
// `go run ./internal/cmd/dashboard -o deploy/grafana/ory-ext-authz.json`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ory-ext-authz/ory-ext-authz/internal/dashboard"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	out := fs.String("o", "", "file to write (default: stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := dashboard.JSON()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}
