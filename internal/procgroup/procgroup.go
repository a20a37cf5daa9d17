// Package procgroup runs a child process in a process group of its own, so
// that stopping it also stops what it started (Kratos' jsonnet workers, the
// binary `go run` compiled) and nothing else, and so that a Ctrl-C in the
// terminal reaches only the parent, which then stops its children in order.
// On Linux the kernel also kills the child when the parent dies without
// stopping it (a `go test` timeout). The dev environment, the real-Kratos
// harness and the benchmark harness all start their children through it.
package procgroup

import (
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// Process is a started child.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid once exited is closed
	// after runs once the child has exited, before exited is closed
	// (closing the log file the child wrote).
	after func()
}

// Start starts cmd in a process group of its own. after, if not nil, runs
// once the child has exited and before Exited is closed.
func Start(cmd *exec.Cmd, after func()) (*Process, error) {
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{}), after: after}
	go func() {
		p.err = cmd.Wait()
		if p.after != nil {
			p.after()
		}
		close(p.exited)
	}()
	return p, nil
}

// Pid is the child's process id, which is also its process group's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the child has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the child exited (as exec.Cmd.Wait says); valid once Exited
// is closed.
func (p *Process) Err() error { return p.err }

// ErrKilled is returned by Stop when the child had to be killed.
var ErrKilled = errors.New("did not stop after SIGTERM and was killed")

// Stop sends SIGTERM to the child's process group and waits up to timeout
// for the child to exit, then kills the group. It returns the child's exit
// error, or ErrKilled if it had to be killed. The group is signalled only
// while the child has not been waited for, so its id is still the child's.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	_ = signalGroup(p.cmd.Process, false)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return p.err
	case <-timer.C:
		_ = signalGroup(p.cmd.Process, true)
		<-p.exited
		return ErrKilled
	}
}
