package kratostest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder stands in for a testing.TB to observe Skip and Fatal, which both
// end the calling goroutine.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped, r.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func findBinary(t *testing.T, root string) (*recorder, string) {
	r := &recorder{TB: t}
	var got string
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = binary(r, root)
	}()
	<-done
	return r, got
}

func TestBinary(t *testing.T) {
	empty := t.TempDir()
	withBin := t.TempDir()
	bin := filepath.Join(withBin, "bin", "kratos")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, root, env, require string
		want                     string // path found; "" when skipped or failed
		skip, fail               bool
	}{
		{name: "default path", root: withBin, want: bin},
		{name: "env absolute", root: empty, env: bin, want: bin},
		{name: "env relative to root", root: withBin, env: "bin/kratos", want: bin},
		{name: "none skips", root: empty, skip: true},
		{name: "none fails when required", root: empty, require: "1", fail: true},
		{name: "wrong env fails", root: withBin, env: filepath.Join(empty, "kratos"), fail: true},
		{name: "wrong env fails even with default", root: withBin, env: "nope/kratos", fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvBinary, tt.env)
			t.Setenv(EnvRequire, tt.require)
			r, got := findBinary(t, tt.root)
			if r.skipped != tt.skip || r.failed != tt.fail || got != tt.want {
				t.Fatalf("binary() = %q, skipped %v, failed %v (%s); want %q, %v, %v", got, r.skipped, r.failed, r.msg, tt.want, tt.skip, tt.fail)
			}
			if tt.skip && !strings.Contains(r.msg, "make kratos") {
				t.Errorf("skip message %q does not say how to get a binary", r.msg)
			}
		})
	}
}
