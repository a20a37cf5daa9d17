package jwks

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ory-ext-authz/ory-ext-authz/internal/cli"
)

const command = "ory-ext-authz jwks"

// synopsis is what a missing or unknown command shows.
const synopsis = `Usage: ory-ext-authz jwks <command> [flags]
`

const usage = synopsis + `
Create signing keys for Kratos' session tokenizer (session.whoami.tokenizer.templates.*.jwks_url).

Commands:
  generate [--alg ES256|RS256|EdDSA] [--kid KID]
        print a new private JWKS with one signing key
  public [FILE]
        print the public JWKS of the private JWKS in FILE (stdin when FILE is absent or -)

Example:
  ory-ext-authz jwks generate > .dev/jwks.json
  ory-ext-authz jwks public .dev/jwks.json > .dev/jwks.public.json
`

// Run implements `ory-ext-authz jwks`; args are the arguments after "jwks".
// It follows internal/cli's convention: results go to stdout, help (-h) too,
// and it returns the exit code, 0 done, 2 a usage error or a failure.
func Run(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Subcommands{
		Command: command, Noun: "command", Synopsis: synopsis,
		Help: func(w io.Writer) error { return cli.Help(w, usage, nil) },
		Run: map[string]func([]string) error{
			"generate": func(args []string) error { return runGenerate(args, stdout) },
			"public":   func(args []string) error { return runPublic(args, stdin, stdout) },
		},
	}.Dispatch(args, stdout, stderr)
}

func runGenerate(args []string, stdout io.Writer) error {
	fs := cli.NewFlagSet(command + " generate")
	alg := fs.String("alg", DefaultAlg, "signing algorithm: "+strings.Join(Algs(), ", "))
	kid := fs.String("kid", "", "key id (default: the key's RFC 7638 thumbprint)")
	help := "Usage: " + fs.Name() + " [--alg ALG] [--kid KID]\n\nPrint a new private JWKS with one signing key.\n\n"
	if err := cli.Parse(fs, args, stdout, help); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("unexpected arguments %q", fs.Args())
	}
	if _, err := canonicalAlg(*alg); err != nil {
		return cli.Usagef("--alg: %w", err)
	}
	out, err := Generate(*alg, *kid)
	if err != nil {
		return err
	}
	return writeLine(stdout, out)
}

func runPublic(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := cli.NewFlagSet(command + " public")
	help := "Usage: " + fs.Name() + " [FILE]\n\nPrint the public JWKS of the private JWKS in FILE (stdin when FILE is absent or -).\n"
	if err := cli.Parse(fs, args, stdout, help); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return cli.Usagef("want at most one FILE, got %d arguments", fs.NArg())
	}
	var (
		in  []byte
		err error
	)
	if name := fs.Arg(0); name == "" || name == "-" {
		in, err = io.ReadAll(stdin)
	} else {
		in, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	out, err := Public(in)
	if err != nil {
		return err
	}
	return writeLine(stdout, out)
}

func writeLine(w io.Writer, b []byte) error {
	_, err := fmt.Fprintf(w, "%s\n", b)
	return err
}
