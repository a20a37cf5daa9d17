package routes

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
)

type reloads struct{ ok, failed atomic.Int64 }

func (r *reloads) ObserveReload(ok bool) {
	if ok {
		r.ok.Add(1)
	} else {
		r.failed.Add(1)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Through a temporary file and a rename, as an editor or a
	// ConfigMap update does: a reader never sees half a file.
	testpki.ReplaceFile(t, path, []byte(content))
}

func ruleNames(tab *Table) string {
	var names []string
	for _, r := range tab.Rules() {
		names = append(names, r.Name())
	}
	return strings.Join(names, ",")
}

func TestWatcherReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	writeFile(t, path, "rules: [{name: a}]\n")
	log, buf := logcapture.Logger(t, func() []string { return nil })
	var obs reloads
	w, err := NewWatcher(path, WatcherOptions{Logger: log, Observer: &obs})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step, names string, ok, failed int64) {
		t.Helper()
		if got := ruleNames(w.Table()); got != names {
			t.Errorf("%s: rules %q, want %q", step, got, names)
		}
		if obs.ok.Load() != ok || obs.failed.Load() != failed {
			t.Errorf("%s: reloads ok=%d failed=%d, want %d, %d", step, obs.ok.Load(), obs.failed.Load(), ok, failed)
		}
	}
	check("loaded", "a", 0, 0)

	if err := w.Reload(); err != nil {
		t.Fatalf("unchanged: %v", err)
	}
	check("unchanged", "a", 0, 0)

	// Same size, so that modification time and size could not tell.
	writeFile(t, path, "rules: [{name: b}]\n")
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	check("changed", "b", 1, 0)

	writeFile(t, path, "rules: [{name: c, on_missing: open}]\n")
	err = w.Reload()
	if err == nil || !strings.Contains(err.Error(), path+`:1:31: rules[0].on_missing: unknown mode "open"`) {
		t.Errorf("bad file: %v", err)
	}
	check("bad file", "b", 1, 1)
	if !strings.Contains(buf.String(), "routes file changed but does not load; keeping the previous table") {
		t.Errorf("no log line for the bad file:\n%s", buf)
	}
	if err := w.Reload(); err == nil {
		t.Error("the bad file again: no error")
	}
	check("bad file again: counted once", "b", 1, 1)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err == nil {
		t.Error("a missing file: no error")
	}
	_ = w.Reload()
	check("missing file: counted once", "b", 1, 2)

	writeFile(t, path, "rules: [{name: d}, {name: e}]\n")
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	check("fixed", "d,e", 2, 2)
	if !strings.Contains(buf.String(), `"msg":"routes file reloaded"`) {
		t.Errorf("no log line for the reload:\n%s", buf)
	}
}

func TestNewWatcherRefusesABadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	writeFile(t, path, "rules: [{nme: a}]\n")
	if _, err := NewWatcher(path, WatcherOptions{}); err == nil || !strings.Contains(err.Error(), path+":1:10:") {
		t.Errorf("NewWatcher = %v, want the file's error", err)
	}
	if _, err := NewWatcher(path+".missing", WatcherOptions{}); err == nil {
		t.Error("NewWatcher of a missing file: no error")
	}
}

// TestWatcherConfigMap: a Kubernetes ConfigMap volume updates by swapping
// the ..data symlink the file's own symlink goes through.
func TestWatcherConfigMap(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(dir, v), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, v, "routes.yaml"), "rules: [{name: "+v+"}]\n")
	}
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "routes.yaml")
	if err := os.Symlink("..data/routes.yaml", path); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(path, WatcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := ruleNames(w.Table()); got != "v2" {
		t.Errorf("after the swap: %q, want v2", got)
	}
}

// TestWatcherRun: Run polls, and readers never block or see a torn table
// while it swaps (run with -race).
func TestWatcherRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	writeFile(t, path, "rules: [{name: a, match: {path: {prefix: /a/}}}]\n")
	w, err := NewWatcher(path, WatcherOptions{Interval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if r, ok := w.Table().Match("GET", "", "/a/x"); ok && r.Name() != "a" && r.Name() != "b" {
					t.Errorf("matched %s", r)
				}
			}
		})
	}
	writeFile(t, path, "rules: [{name: b, match: {path: {prefix: /a/}}}]\n")
	testwait.For(t, "the watcher to load the new file", func() bool { return ruleNames(w.Table()) == "b" })
	cancel()
	wg.Wait()
}

// TestWatcherAccept: a table Accept refuses is refused as a file that does
// not load, at start and on a reload (the previous table stays).
func TestWatcherAccept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	noAAL := func(tab *Table) error {
		for _, r := range tab.Rules() {
			if slices.Contains(r.SettingsSet(), "require_aal") {
				return errors.New("require_aal refused")
			}
		}
		return nil
	}
	writeFile(t, path, "rules: [{name: a, require_aal: aal2}]\n")
	if _, err := NewWatcher(path, WatcherOptions{Accept: noAAL}); err == nil || !strings.Contains(err.Error(), "require_aal refused") {
		t.Fatalf("NewWatcher = %v, want Accept's error", err)
	}
	writeFile(t, path, "rules: [{name: a}]\n")
	var obs reloads
	w, err := NewWatcher(path, WatcherOptions{Accept: noAAL, Observer: &obs})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "rules: [{name: b, require_aal: aal1}]\n")
	if err := w.Reload(); err == nil || !strings.Contains(err.Error(), "require_aal refused") {
		t.Errorf("Reload = %v, want Accept's error", err)
	}
	if got := ruleNames(w.Table()); got != "a" || obs.failed.Load() != 1 || obs.ok.Load() != 0 {
		t.Errorf("after a refused reload: rules %q, reloads ok=%d failed=%d; want a, 0, 1", got, obs.ok.Load(), obs.failed.Load())
	}
}

func TestSettingsSet(t *testing.T) {
	tab, err := Parse([]byte(`rules:
  - {name: none}
  - name: all
    tokenize_as: t
    on_missing: allow
    require_aal: aal2
    authorize: 'claims.sub == "x"'
    headers: {x-user: sub}
    pass_client_authorization: false
`))
	if err != nil {
		t.Fatal(err)
	}
	rs := tab.Rules()
	if got := rs[0].SettingsSet(); got != nil {
		t.Errorf("none: %q", got)
	}
	want := []string{"tokenize_as", "on_missing", "require_aal", "authorize", "headers", "pass_client_authorization"}
	if got := rs[1].SettingsSet(); !slices.Equal(got, want) {
		t.Errorf("all: %q, want %q", got, want)
	}
}
