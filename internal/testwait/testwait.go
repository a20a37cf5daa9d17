// Package testwait polls a condition in tests instead of sleeping for a
// guessed time: a server is ready when it answers, a call is in flight when
// the fake counted it.
package testwait

import (
	"testing"
	"time"
)

// Timeout is how long For waits: generous for -race on a busy machine,
// short enough that a hang fails the test instead of timing out the binary.
const Timeout = 10 * time.Second

// interval is the pause between two polls.
const interval = 5 * time.Millisecond

// For polls cond until it holds and fails t, naming what it waited for,
// when it still does not after Timeout.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, Timeout, what, cond)
}

// Within is For with another bound than Timeout: for a wait known to take
// longer (a Redis failover, a child process starting) or one that should
// be over sooner.
func Within(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}
