//go:build unix

package procgroup

import (
	"os"
	"syscall"
)

// signalGroup sends SIGTERM, or SIGKILL when kill, to p's process group.
func signalGroup(p *os.Process, kill bool) error {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	return syscall.Kill(-p.Pid, sig)
}
