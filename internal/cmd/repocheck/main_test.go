package main

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    file
		want string // substring of the problem; "" means accepted
	}{
		{"go source", file{path: "pkg/a.go", mode: "100644", size: 900, head: []byte("package a\n")}, ""},
		{"CI script", file{path: ".ci/run", mode: "100755", size: 400, head: []byte("#!/usr/bin/env bash\n")}, ""},
		{"test binary", file{path: "integration.test", mode: "100755", size: 34 << 20, head: []byte("\x7fELF\x02\x01\x01")}, "executable binary (ELF)"},
		{"binary without the executable bit", file{path: "bin/kratos", mode: "100644", size: 10, head: []byte("\x7fELF\x02")}, "ELF"},
		{"Windows binary", file{path: "x.exe", mode: "100644", size: 10, head: []byte("MZ\x90\x00")}, "PE"},
		{"executable with binary content", file{path: "tool", mode: "100755", size: 10, head: []byte("ab\x00cd")}, "binary content"},
		{"large file", file{path: "cpu.out", mode: "100644", size: MaxBytes + 1, head: []byte("text")}, "over the limit"},
		{"exactly the limit", file{path: "data.txt", mode: "100644", size: MaxBytes, head: []byte("text")}, ""},
		{"large generated protobuf", file{path: "proto/x/v1/x.pb.go", mode: "100644", size: 2 << 20, head: []byte("// Code generated")}, ""},
		{"symlink", file{path: "link", mode: "120000"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := check(tc.f)
			if tc.want == "" && got != "" {
				t.Fatalf("check = %q, want accepted", got)
			}
			if tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("check = %q, want it to say %q", got, tc.want)
			}
		})
	}
}
