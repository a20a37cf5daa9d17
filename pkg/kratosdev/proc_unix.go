//go:build unix

package kratosdev

import (
	"os"
	"syscall"
)

func signalTerm(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// killGroup kills Kratos and its jsonnet workers. Only called while Kratos
// itself has not exited, so the group id is still ours.
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }
