// Package cli is the one convention of the check, admin and jwks subcommands
// of cmd/ory-ext-authz, so that an operator, or a script, meets the same exit
// codes, help and messages in each:
//
//   - each is Run(ctx, args, stdin, stdout, stderr) int, args being the
//     arguments after the subcommand's name;
//   - exit 0 when done (check: allowed), 1 when refused (check: denied;
//     admin: the server refused), 2 on a usage error, no connection or any
//     other failure;
//   - -h, -help, --help (or the word help where a subcommand is expected)
//     prints the usage to stdout and exits 0;
//   - a usage error prints "ory-ext-authz <cmd>: <problem>" and a hint to
//     run --help to stderr, and exits 2;
//   - any other error prints "ory-ext-authz <cmd>: <problem>" to stderr.
//
// A command's code returns errors (Usagef, Refused, Code); Exit alone
// prints them and picks the exit code.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// The exit codes of every subcommand.
const (
	// ExitOK: done; check: the server allowed the request.
	ExitOK = 0
	// ExitRefused: the server refused; check: it denied the request.
	ExitRefused = 1
	// ExitFailed: a usage error, no connection, a timeout or any other failure.
	ExitFailed = 2
)

// IsHelp tells whether arg, where a subcommand is expected, asks for help.
func IsHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// NewFlagSet returns a flag set for the command name ("ory-ext-authz check")
// that prints nothing itself: Parse reports its errors as usage errors, for
// Exit to print, and prints the help.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// Parse parses args with fs (from NewFlagSet). For -h it prints the help,
// head and then the flags, to stdout and returns flag.ErrHelp; a bad flag
// is a usage error.
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer, head string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return Help(stdout, head, fs)
	default:
		return Usage(err)
	}
}

// Help prints head and the flags of fs (none when fs is nil) to w and
// returns flag.ErrHelp, which Exit turns into exit 0.
func Help(w io.Writer, head string, fs *flag.FlagSet) error {
	_, _ = io.WriteString(w, head)
	if fs != nil {
		out := fs.Output()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
	return flag.ErrHelp
}

// UsageError is a command line the command cannot run.
type UsageError struct {
	Err error
	// Synopsis, when set, follows the problem: the command lines the
	// command takes, for a missing or unknown subcommand.
	Synopsis string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as a usage error.
func Usage(err error) error { return &UsageError{Err: err} }

// Usagef is a usage error with a formatted message.
func Usagef(format string, a ...any) error { return Usage(fmt.Errorf(format, a...)) }

// refusedError is an answer of the server that refuses what was asked.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// Refused marks err as the server's refusal: exit 1.
func Refused(err error) error { return &refusedError{err: err} }

// codeError is an outcome the command's output already shows.
type codeError int

func (c codeError) Error() string { return fmt.Sprintf("exit %d", int(c)) }

// Code is an outcome the command's output already shows (check's
// "decision: DENIED (exit 1)"): Exit prints nothing more and returns code.
// Code(ExitOK) is nil.
func Code(code int) error {
	if code == ExitOK {
		return nil
	}
	return codeError(code)
}

// Exit reports err, the result of the command name ("ory-ext-authz admin
// stats"), on stderr and returns the exit code. It is the one place where
// the subcommands print errors.
func Exit(stderr io.Writer, name string, err error) int {
	var (
		code    codeError
		usage   *UsageError
		refused *refusedError
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &usage):
		_, _ = fmt.Fprintf(stderr, "%s: %v\n%sRun '%s --help' for usage.\n", name, err, usage.Synopsis, name)
		return ExitFailed
	case errors.As(err, &refused):
		_, _ = fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitRefused
	default:
		_, _ = fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitFailed
	}
}

// Subcommands are the subcommands of a command ("ory-ext-authz jwks"): each
// runs on the arguments after its name and returns what Exit reports.
type Subcommands struct {
	// Command is the command's full name, "ory-ext-authz jwks".
	Command string
	// Noun names what the first argument is in messages: "subcommand".
	Noun string
	// Synopsis follows a missing or unknown one.
	Synopsis string
	// Help prints the command's help to stdout (-h, --help, help).
	Help func(stdout io.Writer) error
	Run  map[string]func(args []string) error
}

// Dispatch runs the subcommand args[0] and returns the exit code: the help
// for -h, a usage error for a missing or unknown one. Errors are reported
// under "<command> <subcommand>".
func (s Subcommands) Dispatch(args []string, stdout, stderr io.Writer) int {
	var sub string
	if len(args) > 0 {
		sub = args[0]
	}
	if run, ok := s.Run[sub]; ok {
		return Exit(stderr, s.Command+" "+sub, run(args[1:]))
	}
	switch {
	case IsHelp(sub):
		return Exit(stderr, s.Command, s.Help(stdout))
	case sub == "":
		return Exit(stderr, s.Command, &UsageError{Err: fmt.Errorf("missing %s", s.Noun), Synopsis: s.Synopsis})
	default:
		return Exit(stderr, s.Command, &UsageError{Err: fmt.Errorf("unknown %s %q", s.Noun, sub), Synopsis: s.Synopsis})
	}
}
