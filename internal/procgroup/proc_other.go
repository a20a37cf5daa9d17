//go:build !unix

package procgroup

import (
	"os"
	"syscall"
)

// Without POSIX process groups and signals a child can only be killed.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(p *os.Process, _ bool) error { return p.Kill() }
