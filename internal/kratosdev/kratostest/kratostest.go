// Package kratostest starts a real Kratos (internal/kratosdev) for a test and ties
// its lifetime to the test.
//
// Tests against the real Kratos are skipped when no binary is around, so
// `go test ./...` works on a fresh checkout. CI sets
// ORY_EXT_AUTHZ_REQUIRE_KRATOS=1, which turns that skip into a failure: the
// real-Kratos tests can never be skipped there without anyone noticing.
package kratostest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
)

// Environment variables read by Start.
const (
	// EnvBinary names the Kratos binary; a relative path is relative to the
	// repository root. Default: <repository root>/bin/kratos (`make kratos`).
	EnvBinary = "KRATOS_BIN"
	// EnvRequire set to "1" makes a missing binary fail the test instead of
	// skipping it.
	EnvRequire = "ORY_EXT_AUTHZ_REQUIRE_KRATOS"
)

// Start starts Kratos for t with opts and stops it when t ends; when t
// failed, the tail of the Kratos log goes to t.Log first. opts.Binary, RootDir
// and WorkDir default to the binary above, the repository root and
// t.TempDir(). Without a binary, t is skipped (or fails, see EnvRequire).
func Start(t testing.TB, opts kratosdev.Options) *kratosdev.Kratos {
	t.Helper()
	if opts.RootDir == "" {
		opts.RootDir = Root(t)
	}
	if opts.Binary == "" {
		opts.Binary = binary(t, opts.RootDir)
	}
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	k, err := kratosdev.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start Kratos: %v", err)
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Kratos log (%s), last lines:\n%s", k.LogFile(), k.LogTail(40))
		}
		if err := k.Stop(); err != nil {
			t.Errorf("stop Kratos: %v", err)
		}
	})
	return k
}

// Binary returns the Kratos binary for programs that start Kratos
// themselves (see Start for where it is looked for), or skips (or fails) t.
func Binary(t testing.TB) string {
	t.Helper()
	return binary(t, Root(t))
}

// Root is the repository root above the test's working directory
// (kratosdev.FindRoot).
func Root(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := kratosdev.FindRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// binary finds the Kratos binary or skips (or fails) t.
func binary(t testing.TB, root string) string {
	t.Helper()
	if bin := os.Getenv(EnvBinary); bin != "" {
		if !filepath.IsAbs(bin) {
			bin = filepath.Join(root, bin)
		}
		if _, err := os.Stat(bin); err != nil {
			// An explicit setting that is wrong is a mistake, never a reason to skip.
			t.Fatalf("%s=%s: %v", EnvBinary, bin, err)
		}
		return bin
	}
	bin := filepath.Join(root, "bin", "kratos")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("no Kratos binary at %s and %s is unset, but %s=1", bin, EnvBinary, EnvRequire)
	}
	t.Skip("no Kratos binary: run `make kratos` or set KRATOS_BIN")
	return ""
}
