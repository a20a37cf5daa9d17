package routes

import "strings"

// This file is Envoy's path normalization, ported: normalize_path (Envoy's
// PathUtil::canonicalPath, which runs Chromium's url::CanonicalizePath on
// the path without its query) followed by merge_slashes
// (PathTransformer::mergeSlashes), and the readings of a path built on it.
// docs/routes.md says why a rule is matched against every reading.

// The character classes of Chromium's kPathCharLookup (url_canon_path.cc),
// as in the googleurl snapshots Envoy built with until Chromium's change of
// December 2023 (crbug.com/1509295): unreserved characters escaped in the
// input are decoded, NUL is invalid. Later snapshots keep those escapes as
// they are; a path on which the two differ is not in normal form here, and
// so has two readings (see readings).
const (
	pass     = 0
	special  = 1 // needs a look: dot, backslash, percent, or escaped below
	escBit   = 2
	escape   = escBit | special // written as %XX
	unescape = 4                // decoded when it arrives escaped
	invBit   = 8
	invalid  = invBit | special // Envoy answers 400
)

var pathChars = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c == 0:
			t[c] = invalid
		case c < 0x20, c >= 0x7f:
			t[c] = escape
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '~':
			t[c] = unescape
		}
	}
	for _, c := range " \"#%<>?\\^`{|}" {
		t[c] = escape
	}
	t['.'] = special
	return t
}()

// NormalizePath returns path as Envoy forwards it with normalize_path and
// merge_slashes on: without the query (everything from the first '?'),
// dot segments removed (also escaped ones, %2e), a backslash read as a
// slash, escaped unreserved characters decoded (%41 is A), characters
// outside the path's set escaped (a space is %20), runs of slashes merged.
// Escaped slashes (%2F, %5C) are kept, as Envoy's default
// path_with_escaped_slashes_action does; so are the case of the path and
// ';' parameters. ok is false for a path Envoy refuses with 400: one with a
// NUL byte, literal or escaped.
func NormalizePath(path string) (normal string, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if isNormal(path) {
		return path, true
	}
	p, ok := canonicalize(path)
	return mergeSlashes(p), ok
}

// isNormal tells, without allocating, that NormalizePath leaves p as it
// is, that p holds no ';' and no escape, so that it has one reading only.
// It says false for some paths that are normal (those with '%', ';' or a
// character Envoy escapes), which then take the slow path.
func isNormal(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '/':
			if p[i-1] == '/' {
				return false
			}
		case c == '.':
			if p[i-1] == '/' && isDotSegmentEnd(p, i+1) {
				return false
			}
		case c == ';', pathChars[c]&special != 0:
			return false
		}
	}
	return true
}

// isDotSegmentEnd tells whether the '.' before p[i] ends a "." or ".."
// segment: p[i] is the end, a slash, or a second dot ending there.
func isDotSegmentEnd(p string, i int) bool {
	if i == len(p) || p[i] == '/' {
		return true
	}
	return p[i] == '.' && (i+1 == len(p) || p[i+1] == '/')
}

// canonicalize is Chromium's DoPath for an 8-bit path (url_canon_path.cc):
// the path is written to out one input character at a time; ok is false
// when an invalid character was seen, the output being complete anyway.
func canonicalize(p string) (string, bool) {
	out := make([]byte, 0, len(p)+1)
	if p == "" {
		return "/", true
	}
	if !isURLSlash(p[0]) {
		out = append(out, '/')
	}
	const begin = 0 // the path starts the output
	ok := true
	lastInvalidPercent := -1 << 31
	for i := 0; i < len(p); i++ {
		c := p[i]
		flags := pathChars[c]
		if flags&special == 0 {
			out = append(out, c)
			continue
		}
		if dot := isDot(p, i); dot > 0 {
			if len(out) > begin && out[len(out)-1] == '/' {
				switch kind, consumed := classifyAfterDot(p, i+dot); kind {
				case notDirectory:
					out = append(out, '.')
					i += dot - 1
				case currentDirectory:
					i += dot + consumed - 1
				case parentDirectory:
					out = backUpToPreviousSlash(out, begin)
					i += dot + consumed - 1
				}
			} else {
				out = append(out, '.')
				i += dot - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			v, valid := decodeEscaped(p, i)
			if !valid {
				// Chromium copies an invalid escape and remembers where,
				// so that a decoded character after it cannot complete a
				// new escape ("%%30" must not become "%0").
				lastInvalidPercent = len(out)
				out = append(out, '%')
				continue
			}
			i += 2
			if vf := pathChars[v]; vf&unescape != 0 {
				out = append(out, v)
				if lastInvalidPercent >= len(out)-3 {
					out = checkForNestedEscapes(p, i+1, lastInvalidPercent, out)
				}
			} else {
				// Kept as written, hex case included.
				out = append(out, '%', p[i-1], p[i])
				if vf&invBit != 0 {
					ok = false
				}
			}
		case flags&invBit != 0:
			out = appendEscaped(out, c)
			ok = false
		case flags&escBit != 0:
			out = appendEscaped(out, c)
		}
	}
	return string(out), ok
}

type dotKind uint8

const (
	notDirectory dotKind = iota
	currentDirectory
	parentDirectory
)

func isURLSlash(c byte) bool { return c == '/' || c == '\\' }

// isDot returns the length of the dot at p[i]: 1 for '.', 3 for "%2e" or
// "%2E", 0 for anything else.
func isDot(p string, i int) int {
	if p[i] == '.' {
		return 1
	}
	if p[i] == '%' && i+3 <= len(p) && p[i+1] == '2' && (p[i+2] == 'e' || p[i+2] == 'E') {
		return 3
	}
	return 0
}

// classifyAfterDot is Chromium's ClassifyAfterDot: what the dot before
// p[after] is, and how many input characters after it that took.
func classifyAfterDot(p string, after int) (dotKind, int) {
	if after == len(p) {
		return currentDirectory, 0
	}
	if isURLSlash(p[after]) {
		return currentDirectory, 1
	}
	if second := isDot(p, after); second > 0 {
		next := after + second
		if next == len(p) {
			return parentDirectory, second
		}
		if isURLSlash(p[next]) {
			return parentDirectory, second + 1
		}
	}
	return notDirectory, 0
}

// backUpToPreviousSlash drops the last segment of out, which ends with a
// slash, never going above the first slash.
func backUpToPreviousSlash(out []byte, begin int) []byte {
	i := len(out) - 1
	if i == begin {
		return out
	}
	i--
	for out[i] != '/' && i > begin {
		i--
	}
	return out[:i+1]
}

// checkForNestedEscapes is Chromium's CheckForNestedEscapes: after a
// decoded character within two bytes of an earlier invalid '%', it makes
// sure the output does not now hold a valid escape (it writes the '%' as
// %25 if it would).
func checkForNestedEscapes(p string, next, lastInvalidPercent int, out []byte) []byte {
	n := len(out)
	lastUnescaped := out[n-1]
	appendNext := lastInvalidPercent == n-2
	if appendNext {
		if next == len(p) || p[next] >= 0x80 {
			return out
		}
		out = append(out, p[next])
	}
	if _, valid := decodeEscaped(string(out), lastInvalidPercent); valid {
		if !appendNext {
			out = append(out, out[lastInvalidPercent+1])
		}
		out[lastInvalidPercent+1] = '2'
		out[lastInvalidPercent+2] = '5'
		out = append(out, lastUnescaped)
	} else if appendNext {
		out = out[:n]
	}
	return out
}

// decodeEscaped reads the escape "%XX" at p[i].
func decodeEscaped(p string, i int) (byte, bool) {
	if i+3 > len(p) {
		return 0, false
	}
	hi, ok1 := unhex(p[i+1])
	lo, ok2 := unhex(p[i+2])
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<4 | lo, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func appendEscaped(out []byte, c byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(out, '%', hex[c>>4], hex[c&15])
}

// mergeSlashes is Envoy's PathTransformer::mergeSlashes on a path without
// a query: the non-empty segments joined by single slashes, a leading and
// a trailing slash kept. (Envoy turns "//" into "//": no segments, both
// slashes kept; so does this.)
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	if strings.HasPrefix(p, "/") {
		b.WriteByte('/')
	}
	first := true
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			continue
		}
		if !first {
			b.WriteByte('/')
		}
		b.WriteString(seg)
		first = false
	}
	if strings.HasSuffix(p, "/") {
		b.WriteByte('/')
	}
	return b.String()
}

// maxReadings bounds the readings of one path; a path with more is
// refused (readings says not ok), never matched on some of them only.
const maxReadings = 32

// readings lists the ways an upstream may read path (query stripped): the
// first is Envoy's normal form, what a correctly configured Envoy forwards;
// the others are what an upstream that reads the path differently sees:
//
//   - the path as it came, when it is not in normal form (normalize_path
//     or merge_slashes off, or a proxy that does not normalize), for an
//     upstream that does not normalize either;
//   - the part before a '#', for an upstream that cuts a fragment;
//   - escaped slashes (%2F, %5C) decoded, as Envoy's
//     UNESCAPE_AND_FORWARD and many application servers do;
//   - every escape decoded once, as frameworks that route on the decoded
//     path do;
//   - ';' parameters dropped from every segment, as Tomcat, Jetty and
//     Spring do ("/..;/" is "/../" to them).
//
// Each derived reading is normalized twice over: as Envoy does (dot
// segments, then merge_slashes: "/a//../b" is "/a/b") and as an upstream
// that merges slashes first does (Go's path.Clean, nginx: "/b"). ok is
// false when a reading is invalid (a NUL byte: Envoy refuses such a path)
// or there are more than maxReadings.
func readings(path string, buf *[maxReadings]string) ([]string, bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	rs := buf[:0]
	if isNormal(path) {
		return append(rs, path), true
	}
	ok := true
	put := func(r string) {
		for _, have := range rs {
			if have == r {
				return
			}
		}
		if len(rs) == maxReadings {
			ok = false
			return
		}
		rs = append(rs, r)
	}
	add := func(r string) {
		n, valid := canonicalize(r)
		put(mergeSlashes(n))
		if strings.Contains(r, "//") || strings.IndexByte(r, '\\') >= 0 {
			m, _ := canonicalize(mergeSlashes(strings.ReplaceAll(r, "\\", "/")))
			put(mergeSlashes(m))
		}
		ok = ok && valid
	}
	add(path)
	put(path)
	if i := strings.IndexByte(path, '#'); i >= 0 {
		add(path[:i])
	}
	for _, r := range rs {
		if strings.IndexByte(r, '%') >= 0 {
			add(unescapeSlashes(r))
			add(unescapeAll(r))
		}
	}
	for _, r := range rs {
		if strings.IndexByte(r, ';') >= 0 {
			add(stripParams(r))
		}
	}
	return rs, ok
}

// unescapeSlashes decodes %2F and %5C (either case), nothing else.
func unescapeSlashes(p string) string {
	return unescapeWhere(p, func(c byte) bool { return c == '/' || c == '\\' })
}

// unescapeAll decodes every valid escape once; an invalid one stays.
func unescapeAll(p string) string {
	return unescapeWhere(p, func(byte) bool { return true })
}

// unescapeWhere decodes, once, each valid escape whose byte decode wants;
// every other escape stays as it is.
func unescapeWhere(p string, decode func(byte) bool) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			if v, ok := decodeEscaped(p, i); ok && decode(v) {
				b.WriteByte(v)
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// stripParams drops from every segment what follows its first ';'.
func stripParams(p string) string {
	var b strings.Builder
	skip := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '/':
			skip = false
			b.WriteByte(c)
		case c == ';':
			skip = true
		case !skip:
			b.WriteByte(c)
		}
	}
	return b.String()
}
