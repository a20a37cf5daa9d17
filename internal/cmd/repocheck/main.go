// Command repocheck fails when the repository tracks a file that does not
// belong in it: an executable binary (a test binary left by `go test -c` or
// a profiling run, a built server) or any file over 1 MiB, generated protobuf
// code aside. `make lint` runs it from the repository root.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "repocheck:", err)
		os.Exit(1)
	}
}

// MaxBytes is the largest file the repository may track.
const MaxBytes = 1 << 20

// headBytes is how much of a file is read to tell a binary.
const headBytes = 8 << 10

// file is one tracked file as git lists it.
type file struct {
	path string
	mode string // git's mode: 100644, 100755, 120000 (link), 160000 (submodule)
	size int64
	head []byte
}

func run(out io.Writer) error {
	listing, err := exec.Command("git", "ls-files", "-s", "-z").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	var problems []string
	for _, rec := range bytes.Split(listing, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		// "<mode> <object> <stage>\t<path>"
		meta, path, ok := strings.Cut(string(rec), "\t")
		fields := strings.Fields(meta)
		if !ok || len(fields) != 3 {
			return fmt.Errorf("unexpected git ls-files line %q", rec)
		}
		f := file{path: path, mode: fields[0]}
		if f.mode == "100644" || f.mode == "100755" {
			if f.size, f.head, err = readHead(path); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // deleted in the work tree, not yet committed
				}
				return err
			}
		}
		if p := check(f); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d tracked file(s) do not belong in the repository:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	_, err = fmt.Fprintln(out, "repocheck: no binaries, no file over 1 MiB")
	return err
}

func readHead(path string) (int64, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	head := make([]byte, headBytes)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return st.Size(), head[:n], nil
}

// check returns what is wrong with f, or "".
func check(f file) string {
	if kind := executableFormat(f.head); kind != "" {
		return fmt.Sprintf("%s: an executable binary (%s); build it, do not commit it", f.path, kind)
	}
	if f.mode == "100755" && bytes.IndexByte(f.head, 0) >= 0 {
		return fmt.Sprintf("%s: executable mode and binary content", f.path)
	}
	if f.size > MaxBytes && !strings.HasSuffix(f.path, ".pb.go") {
		return fmt.Sprintf("%s: %d bytes, over the limit of %d", f.path, f.size, MaxBytes)
	}
	return ""
}

// executableFormat names the executable format whose magic number starts
// head: ELF (Linux, what go test -c writes here), Mach-O, PE or wasm.
func executableFormat(head []byte) string {
	magics := []struct {
		name  string
		magic string
	}{
		{"ELF", "\x7fELF"},
		{"Mach-O", "\xcf\xfa\xed\xfe"},
		{"Mach-O", "\xce\xfa\xed\xfe"},
		{"Mach-O", "\xfe\xed\xfa\xcf"},
		{"Mach-O universal", "\xca\xfe\xba\xbe"},
		{"PE", "MZ"},
		{"wasm", "\x00asm"},
	}
	for _, m := range magics {
		if bytes.HasPrefix(head, []byte(m.magic)) {
			return m.name
		}
	}
	return ""
}
