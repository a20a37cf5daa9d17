package bench

import (
	"fmt"
	"os"
)

// Main is the main function of the harness's programs (cmd/noop,
// cmd/fakeory, cmd/memory): it runs run and, on an error, prints it after
// the program's name to stderr and exits 1.
func Main(name string, run func() error) {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
