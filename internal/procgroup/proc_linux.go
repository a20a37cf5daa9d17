package procgroup

import "syscall"

// sysProcAttr: a group of its own, and the kernel kills the child if this
// process dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
