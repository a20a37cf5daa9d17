package jwks

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `Usage: ory-ext-authz jwks <command> [flags]

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
// It writes results to stdout and help to stderr, and returns flag.ErrHelp
// when help was asked for, so main can exit 0 without printing an error.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("jwks: missing command (generate or public)")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "generate":
		return runGenerate(rest, stdout, stderr)
	case "public":
		return runPublic(rest, stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("jwks: unknown command %q", cmd)
	}
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ory-ext-authz jwks generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	alg := fs.String("alg", DefaultAlg, "signing algorithm: "+strings.Join(Algs(), ", "))
	kid := fs.String("kid", "", "key id (default: the key's RFC 7638 thumbprint)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [--alg ALG] [--kid KID]\n\nPrint a new private JWKS with one signing key.\n\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("jwks generate: unexpected arguments %q", fs.Args())
	}
	out, err := Generate(*alg, *kid)
	if err != nil {
		return fmt.Errorf("jwks generate: %w", err)
	}
	return writeLine(stdout, out)
}

func runPublic(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ory-ext-authz jwks public", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [FILE]\n\nPrint the public JWKS of the private JWKS in FILE (stdin when FILE is absent or -).\n", fs.Name())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return fmt.Errorf("jwks public: want at most one FILE, got %d arguments", fs.NArg())
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
		return fmt.Errorf("jwks public: %w", err)
	}
	out, err := Public(in)
	if err != nil {
		return fmt.Errorf("jwks public: %w", err)
	}
	return writeLine(stdout, out)
}

func writeLine(w io.Writer, b []byte) error {
	_, err := fmt.Fprintf(w, "%s\n", b)
	return err
}
