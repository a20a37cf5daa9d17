// Package browsertest drives a real headless Chromium with chromedp for a
// test: the binary (proxytest.ChromiumBinary: CHROMIUM_BIN or Debian's
// /usr/bin/chromium; with ORY_EXT_AUTHZ_REQUIRE_CHROMIUM=1 a missing one
// fails the test instead of skipping it), a profile of its own in the
// test's temporary directory, the console collected, and every process it
// started gone when the test ends.
//
// Chromium is started headless with the sandbox off when the test runs as
// root (CI does: Chromium refuses to start its sandbox as root), without
// the GPU, QUIC, first-run, sync, component updates or background
// networking, and with a host resolver that resolves nothing but
// 127.0.0.1: a page can reach loopback only, and the browser cannot try
// to reach Google's hosts as it otherwise does at start.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/ory-ext-authz/ory-ext-authz/internal/proxytest"
)

// Browser is one Chromium with one tab.
type Browser struct {
	// Ctx is the tab's chromedp context: chromedp.Run(b.Ctx, ...).
	Ctx context.Context

	profile string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// New starts Chromium for t, or skips (or fails) t without one. It is
// stopped, and checked to have left no process behind, when t ends.
func New(t testing.TB) *Browser {
	t.Helper()
	bin := proxytest.ChromiumBinary(t)
	profile := filepath.Join(t.TempDir(), "chromium-profile")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1100, 900),
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	b := &Browser{Ctx: ctx, profile: profile}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		b.checkGone(t)
	})
	// Start the browser now, so that a missing library fails here, clearly.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium %s: %v", bin, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// Console returns the console messages so far: console API calls, uncaught
// exceptions and the browser log's entries.
func (b *Browser) Console() []chromedp.ConsoleMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), b.console...)
}

// Do runs steps in the tab, bounded by timeout.
func (b *Browser) Do(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Get runs one action in b's tab, bounded by timeout, and returns its value.
func Get[T any](b *Browser, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// Call sends one protocol command to b's tab, bounded by timeout.
func Call[P, R any](b *Browser, timeout time.Duration, cmd cdp.Command[P, R], params P) (R, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Call(ctx, cmd, params)
}

// checkGone fails t when a process of this browser (its profile directory
// on the command line: the browser and its zygote, GPU and renderer
// helpers) is still running 10s after the browser was closed, and kills it.
func (b *Browser) checkGone(t testing.TB) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := processesWith(b.profile)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				if proc, err := os.FindProcess(p.pid); err == nil {
					_ = proc.Kill()
				}
			}
			t.Errorf("Chromium left %d processes running after it was closed (killed now): %v", len(left), left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type process struct {
	pid  int
	name string
}

func (p process) String() string { return fmt.Sprintf("%d %s", p.pid, p.name) }

// processesWith lists the processes whose command line contains s.
func processesWith(s string) []process {
	entries, _ := os.ReadDir("/proc")
	var out []process
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), s) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && isZombie(string(stat)) {
			continue // exited; its parent has yet to reap it
		}
		name, _, _ := strings.Cut(string(cmdline), "\x00")
		out = append(out, process{pid: pid, name: filepath.Base(name)})
	}
	return out
}

// isZombie reads the state field of /proc/<pid>/stat ("pid (comm) S ...").
func isZombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
