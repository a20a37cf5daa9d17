//go:build unix && !linux

package main

import "syscall"

// sysProcAttr puts the server in its own process group: a Ctrl-C in the
// terminal reaches devenv only, which stops the children in order.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
