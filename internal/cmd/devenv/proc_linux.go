package main

import "syscall"

// sysProcAttr puts the server in its own process group (a Ctrl-C in the
// terminal reaches devenv only, which stops the children in order) and has
// the kernel kill it if devenv dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
