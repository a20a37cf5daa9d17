package config

import (
	"flag"
	"io"
	"time"
)

// Kinds of a flag's value, as Flags reports them.
const (
	KindString   = "string"
	KindInteger  = "integer"
	KindBoolean  = "boolean"
	KindDuration = "duration" // time.ParseDuration's syntax, e.g. 1s or 1m30s
)

// Flag describes one flag of `serve`: what docs and generated files (the
// Helm chart's values schema) derive from, so that they cannot drift from
// the flags.
type Flag struct {
	Name    string // grpc-addr
	Env     string // ORY_EXT_AUTHZ_GRPC_ADDR
	Kind    string // KindString, KindInteger, KindBoolean or KindDuration
	Default string // as --help prints it; "" for none
	Usage   string
}

// Flags lists every flag of `serve` in the order of --help (sorted by name).
func Flags() []Flag {
	c := Default()
	var out []Flag
	c.FlagSet("serve", io.Discard).VisitAll(func(f *flag.Flag) {
		out = append(out, Flag{Name: f.Name, Env: EnvName(f.Name), Kind: kindOf(f.Value), Default: f.DefValue, Usage: f.Usage})
	})
	return out
}

// kindOf tells a flag's kind from its value: a bool flag, a flag.Getter
// holding an integer or a duration, else a string (the list and CIDR flags
// take comma-separated strings).
func kindOf(v flag.Value) string {
	if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return KindBoolean
	}
	if g, ok := v.(flag.Getter); ok {
		switch g.Get().(type) {
		case int, int64, uint, uint64:
			return KindInteger
		case time.Duration:
			return KindDuration
		}
	}
	return KindString
}
