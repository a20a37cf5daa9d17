package main

import (
	"context"
	"io"

	"github.com/ory-ext-authz/ory-ext-authz/internal/admincli"
	"github.com/ory-ext-authz/ory-ext-authz/internal/checkcli"
	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return checkcli.Run(ctx, args, stdout, stderr)
}

func runJWKS(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return jwks.Run(args, stdin, stdout, stderr)
}

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return admincli.RunCLI(ctx, args, stdout, stderr)
}
