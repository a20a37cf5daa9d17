package config

import (
	"slices"
	"testing"
)

func TestFlags(t *testing.T) {
	flags := Flags()
	var names []string
	kinds := map[string]string{}
	for _, f := range flags {
		names = append(names, f.Name)
		kinds[f.Name] = f.Kind
		if f.Env != EnvName(f.Name) || f.Usage == "" {
			t.Errorf("%s: env %q, usage %q", f.Name, f.Env, f.Usage)
		}
	}
	if !slices.IsSorted(names) || len(names) == 0 {
		t.Errorf("Flags lists %v, want every flag in --help's (sorted) order", names)
	}
	for name, want := range map[string]string{
		"grpc-addr": KindString, "cache-max-bytes": KindInteger, "ory-max-inflight": KindInteger,
		"whoami-timeout": KindDuration, "redis-timeout": KindDuration, "pass-client-authorization": KindBoolean,
		"session-cookies": KindString, "trusted-proxies": KindString, "on-missing": KindString, "redis-url": KindString,
	} {
		if kinds[name] != want {
			t.Errorf("%s: kind %q, want %q", name, kinds[name], want)
		}
	}
	// Each kind's default parses back as that kind: the schema's types are
	// what Parse accepts.
	for _, f := range flags {
		if f.Default == "" {
			continue
		}
		c := Default()
		if err := c.FlagSet("serve", nil).Set(f.Name, f.Default); err != nil {
			t.Errorf("%s: its own default %q does not parse: %v", f.Name, f.Default, err)
		}
	}
}
