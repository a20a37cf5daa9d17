package kratosdev

import "syscall"

// sysProcAttr puts Kratos in its own process group (so killGroup reaches its
// jsonnet workers) and has the kernel kill it if this process dies without
// calling Stop, e.g. when `go test` times out.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
