//go:build unix

package procgroup

import (
	"bufio"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startShell runs script under sh and returns the process and the pid of
// the grandchild it prints on its first line.
func startShell(t *testing.T, script string) (*Process, int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the grandchild's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return p, pid
}

// gone waits (bounded) until pid no longer exists or is a zombie nobody
// waits for, which kill(pid, 0) cannot tell from a live one: read its state.
func gone(pid int) bool {
	for range 100 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if state, err := exec.Command("ps", "-o", "stat=", "-p", strconv.Itoa(pid)).Output(); err != nil || strings.HasPrefix(strings.TrimSpace(string(state)), "Z") {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestStopReachesTheGroup(t *testing.T) {
	// The shell's child sleeps; SIGTERM to the shell alone would leave it.
	p, child := startShell(t, `sleep 30 & echo $!; wait`)
	if err := p.Stop(10 * time.Second); errors.Is(err, ErrKilled) {
		t.Fatalf("Stop: %v, want the group to end on SIGTERM", err)
	}
	if !gone(child) {
		t.Fatalf("the child %d of the stopped process is still running", child)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	p, child := startShell(t, `trap '' TERM; sleep 30 & echo $!; wait; wait`)
	if err := p.Stop(200 * time.Millisecond); !errors.Is(err, ErrKilled) {
		t.Fatalf("Stop = %v, want ErrKilled", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Stop returned")
	}
	if !gone(child) {
		t.Fatalf("the child %d of the killed process is still running", child)
	}
}

func TestStopAfterExit(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", "exit 3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	var exit *exec.ExitError
	if err := p.Stop(time.Second); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("Stop after exit = %v, want exit status 3", err)
	}
}
