package routes

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// fuzzTables are fixed tables with a protected area and an open rest, in
// both orders: whatever path a request has, one that an upstream may read
// as protected must never get the open rule.
var fuzzTables = []struct {
	name      string
	file      string
	protected func(string) bool
}{
	{"deny first", `rules:
  - name: admin
    match: {path: {exact: /admin}}
    on_missing: deny
  - name: admin-area
    match: {path: {prefix: /admin/}}
    on_missing: deny
  - name: open
    on_missing: allow
`, func(p string) bool { return p == "/admin" || strings.HasPrefix(p, "/admin/") }},
	{"allow first", bypassTable, func(p string) bool { return !strings.HasPrefix(p, "/public/") }},
}

// FuzzRoutes feeds arbitrary files and requests: nothing panics; and for
// the fixed tables, no path that Envoy's normalization, an upstream that
// decodes and cleans it, or the path as it came puts in the protected
// area matches the open rule.
func FuzzRoutes(f *testing.F) {
	f.Add([]byte(bypassTable), "GET", "app.example.com", "/public/../admin")
	f.Add([]byte("rules: [{match: {host: '*.a.test', path: {regex: '/x/[0-9]+'}, methods: [GET]}, authorize: 'claims.sub == \"a\"'}]"), "GET", "b.a.test:80", "/x/1?y")
	f.Add([]byte("rules:\n  - headers: {x-a: sub}\n    tokenize_as: t\n"), "PUT", "[::1]", "//public/%2e%2e/admin")
	f.Add([]byte("rules: [{authorize: 'request.headers.exists(k, k == request.path)'}]"), "get", "a.", "/public/..;/admin")
	f.Add([]byte("rules: [&a {name: x}, *a]"), "", "", "/public\\..\\admin")
	f.Add([]byte("{"), "GET", "", "/public%2F..%2Fadmin")
	tables := make([]*Table, len(fuzzTables))
	for i, ft := range fuzzTables {
		tables[i] = mustParse(f, ft.file)
	}
	f.Fuzz(func(t *testing.T, file []byte, method, host, p string) {
		if tab, err := Parse(file); err == nil {
			r, ok := tab.Match(method, host, p)
			if ok != (r != nil) {
				t.Fatalf("Match = %v, %v", r, ok)
			}
			_ = r.Settings(Settings{})
			_, _ = r.Authorize(Vars{Claims: map[string]any{"sub": p, "roles": []any{method}}, Request: Request{Method: method, Host: host, Path: p, Headers: map[string]string{host: p}}})
			_ = tab.HeaderNames()
			tab.Explain(method, host, p)
		} else if errs := (Errors)(nil); !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("Parse failed without its Errors: %v", err)
		}
		if n, ok := NormalizePath(p); ok {
			if again, _ := NormalizePath(n); again != n && !strings.Contains(n, "%") {
				// Envoy's normal form is stable, except where a decoded
				// escape makes a new dot segment ("%2e" is a dot once more).
				t.Fatalf("NormalizePath(%q) = %q, then %q", p, n, again)
			}
		}
		for i, ft := range fuzzTables {
			r, _ := tables[i].Match(method, "app.example.com", p)
			if r == nil || r.Name() != "open" {
				continue
			}
			for _, u := range upstreamReadings(p) {
				if ft.protected(u) {
					t.Fatalf("%s: %q matched the open rule, but an upstream may read it as %q", ft.name, p, u)
				}
			}
		}
	})
}

// upstreamReadings is an upstream's view of a path, written apart from
// readings: the path as it came, Envoy's normal form, and decoded once,
// backslashes as slashes, cleaned by Go's path.Clean, with and without
// ';' parameters (dropped before or after the decoding).
func upstreamReadings(p string) []string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	out := []string{p}
	if n, ok := NormalizePath(p); ok {
		out = append(out, n)
	}
	clean := func(s string) string {
		s = strings.ReplaceAll(s, "\\", "/")
		c := path.Clean("/" + s)
		// A last segment "." or ".." leaves a directory, as RFC 3986's
		// remove_dot_segments says (path.Clean drops the slash).
		if (strings.HasSuffix(s, "/") || strings.HasSuffix(s, "/.") || strings.HasSuffix(s, "/..")) && c != "/" {
			c += "/"
		}
		return c
	}
	noParams := func(s string) string {
		segs := strings.Split(s, "/")
		for i, seg := range segs {
			segs[i], _, _ = strings.Cut(seg, ";")
		}
		return strings.Join(segs, "/")
	}
	d := decodeOnce(p)
	out = append(out, clean(d), clean(noParams(d)), clean(decodeOnce(noParams(p))))
	return out
}

// decodeOnce decodes every valid %XX once, leaving an invalid one.
func decodeOnce(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && strings.IndexByte(hexDigits, s[i+1]) >= 0 && strings.IndexByte(hexDigits, s[i+2]) >= 0 {
			hi := strings.IndexByte(hexDigits, s[i+1]) % 16
			lo := strings.IndexByte(hexDigits, s[i+2]) % 16
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

const hexDigits = "0123456789abcdef0123456789ABCDEF"
