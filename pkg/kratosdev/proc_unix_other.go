//go:build unix && !linux

package kratosdev

import "syscall"

// sysProcAttr puts Kratos in its own process group, so killGroup reaches its
// jsonnet workers.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
