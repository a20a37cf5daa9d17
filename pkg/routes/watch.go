package routes

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Observer sees every reload of a Watcher that changed something: ok true
// when a changed file was loaded, false when a changed file (or one that
// could not be read) was refused and the previous table kept. Metrics
// count these.
type Observer interface {
	ObserveReload(ok bool)
}

// DefaultWatchInterval is how often a Watcher reads the file.
const DefaultWatchInterval = 2 * time.Second

// WatcherOptions configure a Watcher; every field may be zero.
type WatcherOptions struct {
	// Interval is how often Run reads the file; 0 is DefaultWatchInterval.
	Interval time.Duration
	Logger   *slog.Logger
	Observer Observer
	// Accept, when set, vets every table that loads, the first one
	// included: an error refuses it as a file that does not load is
	// refused (NewWatcher fails; a reload keeps the previous table). The
	// server uses it to refuse settings it does not enforce.
	Accept func(*Table) error
}

// Watcher keeps the table of a routes file current: Run reads the file
// every interval and, when its content changed, compiles it and swaps the
// table in. A file that does not load (a half-written file, a typo) keeps
// the last good table, is logged with its errors and counted once, and is
// not compiled again until it changes. Table is safe for any number of
// concurrent readers and never blocks.
//
// Like pkg/server's certificate reload it keeps the previous state on a
// bad file and does not retry until the file changes; unlike it, the file
// is polled rather than checked on use (a Check is far more frequent than
// a handshake), and compared by content (a SHA-256 of the bytes) rather
// than by modification time and size, which miss a rewrite within the
// file system's timestamp granularity. Reading a file of some kilobytes
// every few seconds costs nothing; it also follows a Kubernetes ConfigMap,
// whose update swaps a symlink.
type Watcher struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	observer Observer
	accept   func(*Table) error

	table atomic.Pointer[Table]

	mu sync.Mutex
	// loaded is the digest of the file the table was compiled from;
	// refused that of the last file that failed (zero: none), readErr
	// the last read failure reported (cleared once the file reads).
	loaded, refused [sha256.Size]byte
	readErr         string
}

// NewWatcher loads the routes file at path, which must load: a server
// does not start on a broken routes file.
func NewWatcher(path string, o WatcherOptions) (*Watcher, error) {
	w := &Watcher{path: path, interval: o.Interval, log: o.Logger, observer: o.Observer, accept: o.Accept}
	if w.interval <= 0 {
		w.interval = DefaultWatchInterval
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	t, err := w.load(data)
	if err != nil {
		return nil, err
	}
	w.table.Store(t)
	w.loaded = sha256.Sum256(data)
	return w, nil
}

// Table is the current table.
func (w *Watcher) Table() *Table { return w.table.Load() }

// Run reads the file every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = w.Reload()
		}
	}
}

// Reload reads the file now and swaps in its table if its content changed
// and it loads. It returns nil when the file is unchanged or was loaded,
// and the problem when it does not read or load (the previous table stays).
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := readFile(w.path)
	if err != nil {
		if msg := err.Error(); msg != w.readErr {
			w.readErr = msg
			w.log.Error("routes file does not read; keeping the previous table", "file", w.path, "error", msg)
			w.observe(false)
		}
		return err
	}
	w.readErr = ""
	sum := sha256.Sum256(data)
	switch sum {
	case w.loaded:
		w.refused = [sha256.Size]byte{}
		return nil
	case w.refused:
		return errUnchangedBad(w.path)
	}
	t, err := w.load(data)
	if err != nil {
		w.refused = sum
		w.log.Error("routes file changed but does not load; keeping the previous table", "file", w.path, "error", err.Error())
		w.observe(false)
		return err
	}
	w.table.Store(t)
	w.loaded, w.refused = sum, [sha256.Size]byte{}
	w.log.Info("routes file reloaded", "file", w.path, "rules", len(t.rules))
	w.observe(true)
	return nil
}

// load compiles data and vets the table with accept.
func (w *Watcher) load(data []byte) (*Table, error) {
	t, err := parse(w.path, data)
	if err != nil {
		return nil, err
	}
	if w.accept != nil {
		if err := w.accept(t); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// errUnchangedBad is Reload's answer for a refused file seen again: it is
// still bad, but was reported already.
func errUnchangedBad(path string) error {
	return &Error{File: path, Msg: "does not load (reported when it changed); the previous table stays"}
}

func (w *Watcher) observe(ok bool) {
	if w.observer != nil {
		w.observer.ObserveReload(ok)
	}
}
