package routes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxFileBytes bounds a routes file.
const MaxFileBytes = 4 << 20

// ParseFile reads and compiles the routes file at path; the errors name
// the file.
func ParseFile(path string) (*Table, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parse(path, data)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("routes file: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("routes file: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("routes file %s: larger than %d bytes", path, MaxFileBytes)
	}
	return data, nil
}

// Parse compiles a routes file. Its error is an Errors listing every
// problem with its line and column: an unknown field, a value of the
// wrong type, a bad value, an expression that does not compile.
func Parse(data []byte) (*Table, error) { return parse("", data) }

func parse(file string, data []byte) (*Table, error) {
	p := &parser{file: file}
	t := p.document(data)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return t, nil
}

type parser struct {
	file string
	errs Errors
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	e := &Error{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func (p *parser) document(data []byte) *Table {
	if !utf8.Valid(data) {
		p.errs = append(p.errs, &Error{File: p.file, Msg: "not UTF-8"})
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errs = append(p.errs, &Error{File: p.file, Msg: "empty file: want a mapping with rules"})
			return nil
		}
		// yaml.v3 reports a syntax error with its line only.
		e := &Error{File: p.file, Msg: err.Error()}
		if m := yamlLine.FindStringSubmatch(e.Msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = strings.TrimPrefix(e.Msg, m[0])
		}
		p.errs = append(p.errs, e)
		return nil
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		p.errorf(&more, "", "a second YAML document: want one")
		return nil
	}
	root := doc.Content[0]
	if !p.plain(root, "") {
		return nil
	}
	var t *Table
	p.mapping(root, "", map[string]func(k, v *yaml.Node){
		"rules": func(_, v *yaml.Node) { t = p.rules(v, "rules") },
	}, "rules")
	if t == nil && len(p.errs) == 0 {
		p.errorf(root, "", "missing field rules")
	}
	return t
}

// plain refuses what the JSON Schema cannot see and the file has no need
// of: anchors, aliases and merge keys, anywhere under n.
func (p *parser) plain(n *yaml.Node, field string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		p.errorf(n, field, "YAML aliases are not supported: write the value out")
		return false
	case n.Anchor != "":
		p.errorf(n, field, "YAML anchors are not supported")
		return false
	}
	ok := true
	for _, c := range n.Content {
		ok = p.plain(c, field) && ok
	}
	return ok
}

// mapping walks the mapping n: each key must be one of fields and appear
// once; required lists the keys that must be there.
func (p *parser) mapping(n *yaml.Node, field string, fields map[string]func(k, v *yaml.Node), required ...string) bool {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "want a mapping, not %s", describe(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			p.errorf(k, field, "want a string key, not %s", describe(k))
			continue
		}
		sub := join(field, k.Value)
		if seen[k.Value] {
			p.errorf(k, sub, "duplicate field")
			continue
		}
		seen[k.Value] = true
		f, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			slices.Sort(names)
			p.errorf(k, field, "unknown field %q (want %s)", k.Value, strings.Join(names, ", "))
			continue
		}
		f(k, v)
	}
	ok := true
	for _, r := range required {
		if !seen[r] {
			p.errorf(n, field, "missing field %s", r)
			ok = false
		}
	}
	return ok
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!str":
			return "a string"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return "a " + strings.TrimPrefix(n.Tag, "!!")
	}
	return "this"
}

func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.errorf(n, field, "want a string, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.errorf(n, field, "want true or false, not %s", describe(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		p.errorf(n, field, "want true or false: %v", err)
		return false, false
	}
	return b, true
}

func (p *parser) rules(n *yaml.Node, field string) *Table {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "want a list of rules, not %s", describe(n))
		return nil
	}
	t := &Table{rules: make([]*Rule, 0, len(n.Content))}
	names := map[string]int{}
	headers := map[string]bool{}
	for i, rn := range n.Content {
		r := p.rule(rn, fmt.Sprintf("%s[%d]", field, i), i)
		if r == nil {
			continue
		}
		if r.name != "" {
			if first, dup := names[r.name]; dup {
				p.errorf(rn, fmt.Sprintf("%s[%d].name", field, i), "name %q is also the name of rule %d", r.name, first)
			}
			names[r.name] = i
		}
		for _, h := range r.headers {
			headers[h.Header] = true
		}
		t.rules = append(t.rules, r)
	}
	for h := range headers {
		t.headerNames = append(t.headerNames, h)
	}
	slices.Sort(t.headerNames)
	t.indexHosts()
	return t
}

// namePattern is what a rule's name may be: it names the rule in logs and
// metric labels.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (p *parser) rule(n *yaml.Node, field string, index int) *Rule {
	r := &Rule{index: index, line: n.Line, column: n.Column}
	before := len(p.errs)
	p.mapping(n, field, map[string]func(k, v *yaml.Node){
		"name": func(_, v *yaml.Node) {
			if s, ok := p.str(v, join(field, "name")); ok {
				if !namePattern.MatchString(s) {
					p.errorf(v, join(field, "name"), "name %q: want 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit", s)
				}
				r.name = s
			}
		},
		"match":       func(_, v *yaml.Node) { p.match(v, join(field, "match"), r) },
		"tokenize_as": func(_, v *yaml.Node) { p.tokenizeAs(v, join(field, "tokenize_as"), r) },
		"on_missing": func(_, v *yaml.Node) {
			parsed(p, v, join(field, "on_missing"), ParseOnMissing, func(m OnMissing) { r.onMissing = m })
		},
		"require_aal": func(_, v *yaml.Node) {
			parsed(p, v, join(field, "require_aal"), ParseAAL, func(a AAL) { r.requireAAL = a })
		},
		"authorize": func(_, v *yaml.Node) { p.authorize(v, join(field, "authorize"), r) },
		"headers":   func(_, v *yaml.Node) { p.headers(v, join(field, "headers"), r) },
		"pass_client_authorization": func(_, v *yaml.Node) {
			if b, ok := p.boolean(v, join(field, "pass_client_authorization")); ok {
				r.passClient = &b
			}
		},
	})
	if len(p.errs) > before {
		return nil
	}
	return r
}

// parsed reads the string at v with parse and hands set the value; a
// parse error is reported at v and sets nothing (the rule is then dropped).
func parsed[T any](p *parser, v *yaml.Node, field string, parse func(string) (T, error), set func(T)) {
	s, ok := p.str(v, field)
	if !ok {
		return
	}
	x, err := parse(s)
	if err != nil {
		p.errorf(v, field, "%v", err)
		return
	}
	set(x)
}

func (p *parser) tokenizeAs(v *yaml.Node, field string, r *Rule) {
	s, ok := p.str(v, field)
	if !ok {
		return
	}
	switch {
	case s == "" || len(s) > maxTemplateLen:
		p.errorf(v, field, "want a template name of 1 to %d bytes", maxTemplateLen)
	case strings.TrimSpace(s) != s || strings.ContainsFunc(s, isControl):
		p.errorf(v, field, "template %q: no surrounding spaces or control characters", s)
	}
	r.tokenizeAs = s
}

func isControl(c rune) bool { return c < 0x20 || c == 0x7f }

func (p *parser) match(n *yaml.Node, field string, r *Rule) {
	p.mapping(n, field, map[string]func(k, v *yaml.Node){
		"host": func(_, v *yaml.Node) {
			parsed(p, v, join(field, "host"), parseHost, func(h hostMatcher) { r.host = &h })
		},
		"path":    func(_, v *yaml.Node) { p.path(v, join(field, "path"), r) },
		"methods": func(_, v *yaml.Node) { p.methods(v, join(field, "methods"), r) },
	})
}

func (p *parser) path(n *yaml.Node, field string, r *Rule) {
	var kinds []string
	set := func(kind pathKind, name string) func(k, v *yaml.Node) {
		return func(_, v *yaml.Node) {
			kinds = append(kinds, name)
			s, ok := p.str(v, join(field, name))
			if !ok {
				return
			}
			r.path = pathMatcher{kind: kind, value: s}
			if kind == regexPath {
				p.regex(v, join(field, name), s, r)
				return
			}
			if err := checkRulePath(s); err != nil {
				p.errorf(v, join(field, name), "%v", err)
			}
		}
	}
	if !p.mapping(n, field, map[string]func(k, v *yaml.Node){
		"exact":  set(exactPath, "exact"),
		"prefix": set(prefixPath, "prefix"),
		"regex":  set(regexPath, "regex"),
	}) {
		return
	}
	if len(kinds) != 1 {
		p.errorf(n, field, "want exactly one of exact, prefix, regex (have %d)", len(kinds))
	}
}

// checkRulePath validates an exact or prefix path: in the normal form the
// requests are matched in, or it could never match.
func checkRulePath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("path %q: want a path starting with /", s)
	}
	if strings.ContainsAny(s, "?#") {
		return fmt.Errorf("path %q: the query is not matched (no ? or #)", s)
	}
	if n, ok := NormalizePath(s); !ok || n != s {
		return fmt.Errorf("path %q is not in the normal form requests are matched in (%q): write that", s, n)
	}
	return nil
}

// maxRegexLen bounds a path regex.
const maxRegexLen = 1024

func (p *parser) regex(v *yaml.Node, field, s string, r *Rule) {
	if s == "" || len(s) > maxRegexLen {
		p.errorf(v, field, "want a regular expression of 1 to %d bytes", maxRegexLen)
		return
	}
	// Parsed alone first, so that the error names the user's text and not
	// the anchors around it.
	if _, err := syntax.Parse(s, syntax.Perl); err != nil {
		p.errorf(v, field, "regex %q: %v", s, err)
		return
	}
	re, err := regexp.Compile(`^(?:` + s + `)$`)
	if err != nil {
		p.errorf(v, field, "regex %q: %v", s, err)
		return
	}
	r.path.re = re
}

// nonEmpty reports whether n is a node of kind with at least one item; if
// not, it reports at n that it wants kindWant or, for an empty one, nonEmptyWant.
func (p *parser) nonEmpty(n *yaml.Node, field string, kind yaml.Kind, kindWant, nonEmptyWant string) bool {
	if n.Kind != kind {
		p.errorf(n, field, "want %s, not %s", kindWant, describe(n))
		return false
	}
	if len(n.Content) == 0 {
		p.errorf(n, field, "want %s", nonEmptyWant)
		return false
	}
	return true
}

func (p *parser) methods(n *yaml.Node, field string, r *Rule) {
	if !p.nonEmpty(n, field, yaml.SequenceNode, "a list of methods", "at least one method (leave methods out to match every method)") {
		return
	}
	for i, mn := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, ok := p.str(mn, f)
		if !ok {
			continue
		}
		if err := checkMethod(s); err != nil {
			p.errorf(mn, f, "%v", err)
			continue
		}
		m := strings.ToUpper(s)
		if slices.Contains(r.methods, m) {
			p.errorf(mn, f, "method %s listed twice", m)
			continue
		}
		r.methods = append(r.methods, m)
	}
	// A server answers HEAD with its GET handler (RFC 9110 9.3.2; Go's
	// ServeMux, Express, Rails do), so a rule for GET is one for HEAD.
	if slices.Contains(r.methods, "GET") && !slices.Contains(r.methods, "HEAD") {
		r.methods = append(r.methods, "HEAD")
	}
}

func (p *parser) headers(n *yaml.Node, field string, r *Rule) {
	if !p.nonEmpty(n, field, yaml.MappingNode, "a mapping of header name to claim name", "at least one header (leave headers out to set none)") {
		return
	}
	r.headers = []HeaderClaim{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		h, ok := p.str(k, field)
		if !ok {
			continue
		}
		f := join(field, h)
		if err := checkHeaderName(h); err != nil {
			p.errorf(k, f, "%v", err)
			continue
		}
		if slices.ContainsFunc(r.headers, func(hc HeaderClaim) bool { return hc.Header == h }) {
			p.errorf(k, f, "duplicate header")
			continue
		}
		c, ok := p.str(v, f)
		if !ok {
			continue
		}
		if c == "" || len(c) > 256 || strings.ContainsFunc(c, isControl) {
			p.errorf(v, f, "want a claim name of 1 to 256 bytes")
			continue
		}
		r.headers = append(r.headers, HeaderClaim{Header: h, Claim: c})
	}
	slices.SortFunc(r.headers, func(a, b HeaderClaim) int { return strings.Compare(a.Header, b.Header) })
}

func (p *parser) authorize(v *yaml.Node, field string, r *Rule) {
	s, ok := p.str(v, field)
	if !ok {
		return
	}
	if n := utf8.RuneCountInString(s); n > MaxExpressionLen {
		p.errorf(v, field, "expression of %d characters: the limit is %d", n, MaxExpressionLen)
		return
	}
	prg, errs := compileAuthorize(s)
	for _, e := range errs {
		line, col := exprPosition(v, e)
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Column: col, Field: field, Msg: e.msg})
	}
	r.authorize = prg
}

// exprPosition is the file position of a problem in the expression of v:
// exact for an expression on one line written plain or quoted; otherwise
// the position of v itself.
func exprPosition(v *yaml.Node, e exprError) (line, col int) {
	line, col = v.Line, v.Column
	if e.line != 1 || strings.ContainsRune(v.Value, '\n') {
		return line, col
	}
	switch v.Style {
	case 0:
		return line, col + e.column
	case yaml.SingleQuotedStyle:
		if !strings.ContainsRune(v.Value, '\'') {
			return line, col + 1 + e.column
		}
	case yaml.DoubleQuotedStyle:
		if !strings.ContainsAny(v.Value, `"\`) {
			return line, col + 1 + e.column
		}
	}
	return line, col
}
