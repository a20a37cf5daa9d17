package cli_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/cli"
)

// ExampleExit shows what each kind of result prints (to stderr; stdout
// here) and the exit code it becomes.
func ExampleExit() {
	const name = "ory-ext-authz demo"
	for _, err := range []error{
		nil,                       // done
		flag.ErrHelp,              // the help was printed
		cli.Code(cli.ExitOK),      // an allowed decision: nil
		cli.Code(cli.ExitRefused), // a decision the output already shows
		cli.Usagef("--addr: must not be empty"),
		&cli.UsageError{Err: errors.New("missing subcommand"), Synopsis: "Usage: ory-ext-authz demo a|b\n"},
		fmt.Errorf("stats: %w", cli.Refused(errors.New("the server refused: InvalidArgument"))),
		errors.New("cannot reach the admin API"),
	} {
		fmt.Println("exit", cli.Exit(os.Stdout, name, err))
	}
	// Output:
	// exit 0
	// exit 0
	// exit 0
	// exit 1
	// ory-ext-authz demo: --addr: must not be empty
	// Run 'ory-ext-authz demo --help' for usage.
	// exit 2
	// ory-ext-authz demo: missing subcommand
	// Usage: ory-ext-authz demo a|b
	// Run 'ory-ext-authz demo --help' for usage.
	// exit 2
	// ory-ext-authz demo: stats: the server refused: InvalidArgument
	// exit 1
	// ory-ext-authz demo: cannot reach the admin API
	// exit 2
}

func TestParse(t *testing.T) {
	newFS := func() *flag.FlagSet {
		fs := cli.NewFlagSet("ory-ext-authz test")
		fs.String("addr", "127.0.0.1:1", "the `address`")
		return fs
	}
	var stdout bytes.Buffer
	if err := cli.Parse(newFS(), []string{"--help"}, &stdout, "Usage: test\n"); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	if out := stdout.String(); !strings.HasPrefix(out, "Usage: test\n") || !strings.Contains(out, "-addr address") {
		t.Errorf("help = %q, want the head, then the flags", out)
	}
	stdout.Reset()
	err := cli.Parse(newFS(), []string{"--bogus"}, &stdout, "Usage: test\n")
	var ue *cli.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "flag provided but not defined: -bogus") || stdout.Len() != 0 {
		t.Errorf("--bogus: %v (stdout %q), want a usage error and no output", err, stdout.String())
	}
}
