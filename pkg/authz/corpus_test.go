package authz_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestFuzzCorpus keeps the committed seed corpus of FuzzCheck
// (testdata/fuzz/FuzzCheck) in step with fuzzSeeds: it fails when a seed is
// missing, and writes them with ORY_EXT_AUTHZ_WRITE_FUZZ_CORPUS=1.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzCheck")
	write := os.Getenv("ORY_EXT_AUTHZ_WRITE_FUZZ_CORPUS") == "1"
	for i, r := range fuzzSeeds() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("seed-%02d-%x", i, sha256.Sum256(b))[:24]
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		path := filepath.Join(dir, name)
		if write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Errorf("seed %s missing or stale: run ORY_EXT_AUTHZ_WRITE_FUZZ_CORPUS=1 go test -run TestFuzzCorpus ./pkg/authz", path)
		}
	}
}
