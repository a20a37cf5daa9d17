package main

import (
	"context"
	"io"

	"github.com/ory-ext-authz/ory-ext-authz/internal/admincli"
	"github.com/ory-ext-authz/ory-ext-authz/internal/checkcli"
	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
	"github.com/ory-ext-authz/ory-ext-authz/internal/routescli"
)

// tool is a subcommand beside serve. Each follows internal/cli's convention
// (exit codes, help on stdout, errors on stderr) and prints its own errors.
type tool func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int

var tools = map[string]tool{
	"check":  checkcli.Run,
	"admin":  admincli.Run,
	"jwks":   jwks.Run,
	"routes": routescli.Run,
}
