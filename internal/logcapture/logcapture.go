// Package logcapture captures what a test logs and checks it: every test's
// log is scanned for the credentials it used (cookies, tokens, JWTs), and
// its JSON records can be read back.
package logcapture

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Buffer collects log output for assertions; safe for concurrent use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a debug-level JSON logger writing to a new Buffer. When
// the test ends it fails the test if the log holds any of the secrets that
// secrets() returns then (cookie values, tokens, JWTs).
func Logger(t testing.TB, secrets func() []string) (*slog.Logger, *Buffer) {
	t.Helper()
	return LoggerLevel(t, secrets, slog.LevelDebug)
}

// LoggerLevel is Logger at another level, for long runs whose debug log
// would be too big to keep and scan.
func LoggerLevel(t testing.TB, secrets func() []string, level slog.Level) (*slog.Logger, *Buffer) {
	t.Helper()
	b := &Buffer{}
	t.Cleanup(func() {
		AssertNoSecrets(t, b.String(), secrets())
	})
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: level})), b
}

// Records decodes a JSON log, one record a line as Logger writes it, and
// fails t on a line that is not JSON.
func Records(t testing.TB, logs string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		recs = append(recs, rec)
	}
	return recs
}

// AssertNoSecrets fails t if text contains any secret (or a long part of one).
func AssertNoSecrets(t testing.TB, text string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		probe := s
		// A JWT's payload or signature alone is a leak too; probe its parts.
		parts := strings.Split(s, ".")
		for _, p := range append(parts, probe) {
			if len(p) >= 16 && strings.Contains(text, p) {
				t.Errorf("log contains a secret (%d bytes starting %.6q)", len(s), s)
				break
			}
		}
	}
}
