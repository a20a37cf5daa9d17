package cli_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/cli"
)

func TestExit(t *testing.T) {
	const name = "ory-ext-authz test"
	tests := []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"done", nil, cli.ExitOK, ""},
		{"help", flag.ErrHelp, cli.ExitOK, ""},
		{"decision shown", cli.Code(cli.ExitRefused), cli.ExitRefused, ""},
		{"decision ok", cli.Code(cli.ExitOK), cli.ExitOK, ""},
		{"usage", cli.Usagef("--x: bad"), cli.ExitFailed, "ory-ext-authz test: --x: bad\nRun 'ory-ext-authz test --help' for usage.\n"},
		{"usage with synopsis", &cli.UsageError{Err: errors.New("missing subcommand"), Synopsis: "Usage: a | b\n"}, cli.ExitFailed,
			"ory-ext-authz test: missing subcommand\nUsage: a | b\nRun 'ory-ext-authz test --help' for usage.\n"},
		{"refused", cli.Refused(errors.New("no")), cli.ExitRefused, "ory-ext-authz test: no\n"},
		{"wrapped refusal", fmt.Errorf("call: %w", cli.Refused(errors.New("no"))), cli.ExitRefused, "ory-ext-authz test: call: no\n"},
		{"failure", errors.New("cannot reach"), cli.ExitFailed, "ory-ext-authz test: cannot reach\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := cli.Exit(&stderr, name, tt.err); code != tt.code || stderr.String() != tt.stderr {
				t.Errorf("Exit = %d, stderr %q; want %d, %q", code, stderr.String(), tt.code, tt.stderr)
			}
		})
	}
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
