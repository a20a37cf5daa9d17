//go:build !unix

package main

import (
	"os"
	"syscall"
)

// Without POSIX signals the server can only be killed.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalTerm(p *os.Process) error { return p.Kill() }

func killGroup(p *os.Process) error { return p.Kill() }
