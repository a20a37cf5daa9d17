//go:build !unix

package kratosdev

import (
	"os"
	"syscall"
)

// Kratos' dev tooling needs POSIX signals; elsewhere Stop can only kill.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalTerm(p *os.Process) error { return p.Kill() }

func killGroup(p *os.Process) error { return p.Kill() }
