//go:build unix

package main

import (
	"os"
	"syscall"
)

func signalTerm(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// killGroup kills the server's process group. Only called while the server
// has not been waited for, so the group id is still its own.
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }
