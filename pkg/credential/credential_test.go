package credential

import (
	"errors"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http/httpguts"
)

func TestExtract(t *testing.T) {
	e := NewExtractor([]string{"ory_kratos_session", "ory_session_*"}, "X-Session-Token", 64)
	tests := []struct {
		name    string
		headers map[string]string
		want    Credential
		wantErr error
	}{
		{"none", map[string]string{"accept": "*/*"}, Credential{}, nil},
		{"kratos cookie alone", map[string]string{"cookie": "ory_kratos_session=abc"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		{"semicolon joined", map[string]string{"cookie": "theme=dark; ory_kratos_session=abc; _ga=1"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		// Names are trimmed of ASCII space and tab as net/http (Kratos)
		// reads them, and forwarded trimmed.
		{"space before =", map[string]string{"cookie": "a=1; ory_kratos_session =abc"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		{"tab before =", map[string]string{"cookie": "ory_kratos_session\t=abc; ory_session_x  =1"}, Credential{KindCookie, "ory_kratos_session=abc; ory_session_x=1"}, nil},
		{"non-ASCII space is part of the name", map[string]string{"cookie": "ory_kratos_session\u00a0=abc"}, Credential{}, nil},
		{"ory network prefix", map[string]string{"cookie": "ory_session_coolslug=xyz"}, Credential{KindCookie, "ory_session_coolslug=xyz"}, nil},
		{"prefix alone is not a match", map[string]string{"cookie": "ory_session_=xyz"}, Credential{}, nil},
		{"several session cookies kept in order", map[string]string{"cookie": "ory_session_b=2; x=0; ory_kratos_session=1"}, Credential{KindCookie, "ory_session_b=2; ory_kratos_session=1"}, nil},
		// net/http reads a name without "=" as that cookie with an empty
		// value, and Kratos takes the first: forwarded, it shadows the
		// later pair at Ory as it would at Kratos.
		{"name without = kept", map[string]string{"cookie": "ory_kratos_session; ory_kratos_session=abc"}, Credential{KindCookie, "ory_kratos_session; ory_kratos_session=abc"}, nil},
		{"lookalike names", map[string]string{"cookie": "ory_kratos_session_x=1; xory_kratos_session=2"}, Credential{}, nil},
		{"no session cookie", map[string]string{"cookie": "theme=dark; _ga=1"}, Credential{}, nil},
		{"token header", map[string]string{"x-session-token": "ory_st_t"}, Credential{KindSessionToken, "ory_st_t"}, nil},
		{"token header over cookie", map[string]string{"x-session-token": "ory_st_t", "cookie": "ory_kratos_session=abc"}, Credential{KindSessionToken, "ory_st_t"}, nil},
		{"cookie over bearer", map[string]string{"cookie": "ory_kratos_session=abc", "authorization": "Bearer ory_st_b"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		{"bearer session token", map[string]string{"authorization": "Bearer ory_st_b"}, Credential{KindSessionToken, "ory_st_b"}, nil},
		{"bearer case-insensitive", map[string]string{"authorization": "bEaReR ory_st_b"}, Credential{KindSessionToken, "ory_st_b"}, nil},
		{"bearer non-ory token ignored", map[string]string{"authorization": "Bearer eyJhbGciOi.x.y"}, Credential{}, nil},
		{"basic auth ignored", map[string]string{"authorization": "Basic b3J5X3N0Xw=="}, Credential{}, nil},
		{"cookie without session falls to bearer", map[string]string{"cookie": "a=1", "authorization": "Bearer ory_st_b"}, Credential{KindSessionToken, "ory_st_b"}, nil},
		{"empty token header ignored", map[string]string{"x-session-token": "", "cookie": "ory_kratos_session=abc"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		{"oversize token", map[string]string{"x-session-token": strings.Repeat("t", 65)}, Credential{}, ErrTooLarge},
		{"oversize cookie", map[string]string{"cookie": "ory_kratos_session=" + strings.Repeat("c", 60)}, Credential{}, ErrTooLarge},
		{"token at the limit", map[string]string{"x-session-token": strings.Repeat("t", 64)}, Credential{KindSessionToken, strings.Repeat("t", 64)}, nil},
		// A credential Go's HTTP client would refuse to send (a control
		// byte other than tab) is an invalid session, not an Ory outage.
		{"DEL in token header", map[string]string{"x-session-token": "ory_st_a\x7fb"}, Credential{}, ErrInvalid},
		{"SOH in token header", map[string]string{"x-session-token": "\x01"}, Credential{}, ErrInvalid},
		{"newline in token header", map[string]string{"x-session-token": "ory_st_a\nX-Evil: 1"}, Credential{}, ErrInvalid},
		{"US in session cookie value", map[string]string{"cookie": "a=1; ory_kratos_session=ab\x1fc"}, Credential{}, ErrInvalid},
		{"SOH in second session cookie", map[string]string{"cookie": "ory_kratos_session=abc; ory_session_x=\x01"}, Credential{}, ErrInvalid},
		{"DEL after Bearer ory_st_", map[string]string{"authorization": "Bearer ory_st_\x7f"}, Credential{}, ErrInvalid},
		{"SOH in bearer token", map[string]string{"authorization": "Bearer ory_st_a\x01b"}, Credential{}, ErrInvalid},
		// Only what is forwarded is checked, and only the bytes the client refuses.
		{"control byte in another cookie", map[string]string{"cookie": "a=\x01; ory_kratos_session=abc"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		{"control byte in a non-Ory bearer", map[string]string{"authorization": "Bearer x\x01", "x-session-token": "ory_st_t"}, Credential{KindSessionToken, "ory_st_t"}, nil},
		{"tab in token is a valid header byte", map[string]string{"x-session-token": "ory_st_a\tb"}, Credential{KindSessionToken, "ory_st_a\tb"}, nil},
		{"non-ASCII in token is a valid header byte", map[string]string{"x-session-token": "ory_st_\u00e9"}, Credential{KindSessionToken, "ory_st_\u00e9"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.headers["cookie"], ",") {
				t.Fatal("a cookie with a comma reads differently in header_map: put it in TestCookieLines")
			}
			got, err := e.Extract(Headers{Map: tt.headers})
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("map: got %v %q, %v; want %v %q, %v", got.Kind, got.Value, err, tt.want.Kind, tt.want.Value, tt.wantErr)
			}
			// The same headers in Envoy's raw encoding give the same answer.
			var raw []*corev3.HeaderValue
			for k, v := range tt.headers {
				raw = append(raw, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
			}
			got, err = e.Extract(Headers{Raw: raw})
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("header_map: got %v %q, %v; want %v %q, %v", got.Kind, got.Value, err, tt.want.Kind, tt.want.Value, tt.wantErr)
			}
		})
	}
}

// TestCookieLines: cookies with a "," in both of Envoy's encodings. In
// header_map every Cookie line is an entry of its own, read on ";" only, as
// net/http (so Kratos) reads each line: "," is a byte of a value. The headers
// map joins the lines with ",", so there a "," may be a line boundary or a
// byte of a value: a session cookie found as a ";"-pair is the one Kratos
// reads (its value ends at the first ",": Ory's never hold one), and only
// without such a pair are ","-fragments read (Envoy's join of lines).
func TestCookieLines(t *testing.T) {
	e := NewExtractor([]string{"ory_kratos_session", "ory_session_*"}, "x-session-token", 256)
	tests := []struct {
		name string
		// joined is the headers map's cookie value, lines the header_map
		// entries of the same request.
		joined string
		lines  []string
		// want and wantLines are the Cookie sent to Ory ("" for none).
		want, wantLines string
	}{
		{"two lines joined, session in the middle one", "theme=dark,ory_kratos_session=abc,_ga=1",
			[]string{"theme=dark", "ory_kratos_session=abc", "_ga=1"}, "ory_kratos_session=abc", "ory_kratos_session=abc"},
		{"mixed separators and spaces", " a=1 ;  ory_kratos_session=abc , b=2",
			[]string{" a=1 ;  ory_kratos_session=abc ", " b=2"}, "ory_kratos_session=abc", "ory_kratos_session=abc"},
		{"session line first: its value ends at the comma", "ory_kratos_session=abc,theme=dark",
			[]string{"ory_kratos_session=abc", "theme=dark"}, "ory_kratos_session=abc", "ory_kratos_session=abc"},
		{"trimmed name and a value cut at the comma", "ory_kratos_session =abc\t,theme=dark",
			[]string{"ory_kratos_session =abc\t", "theme=dark"}, "ory_kratos_session=abc", "ory_kratos_session=abc"},
		{"session in a later line after pairs", "a=1; b=2,x=1; ory_kratos_session=abc",
			[]string{"a=1; b=2", "x=1; ory_kratos_session=abc"}, "ory_kratos_session=abc", "ory_kratos_session=abc"},
		// Issue 11: a browser's one Cookie line where another cookie's value
		// holds ",ory_kratos_session=...". net/http reads the victim's
		// session; so must we, never the one inside the value.
		{"smuggled in another cookie's value", "pref=x,ory_kratos_session=ATTACKER,y; ory_kratos_session=VICTIM",
			[]string{"pref=x,ory_kratos_session=ATTACKER,y; ory_kratos_session=VICTIM"}, "ory_kratos_session=VICTIM", "ory_kratos_session=VICTIM"},
		{"smuggled after the session cookie", "ory_kratos_session=VICTIM; pref=x,ory_kratos_session=ATTACKER",
			[]string{"ory_kratos_session=VICTIM; pref=x,ory_kratos_session=ATTACKER"}, "ory_kratos_session=VICTIM", "ory_kratos_session=VICTIM"},
		{"smuggled under an Ory Network name", "pref=x,ory_session_evil=ATTACKER; ory_session_slug=VICTIM",
			[]string{"pref=x,ory_session_evil=ATTACKER; ory_session_slug=VICTIM"}, "ory_session_slug=VICTIM", "ory_session_slug=VICTIM"},
		{"smuggled in a session cookie's own value", "ory_kratos_session=VICTIM,ory_kratos_session=ATTACKER",
			[]string{"ory_kratos_session=VICTIM,ory_kratos_session=ATTACKER"}, "ory_kratos_session=VICTIM", "ory_kratos_session=VICTIM,ory_kratos_session=ATTACKER"},
		// Where the map cannot tell a value's "," from Envoy's join, it
		// reads the join; header_map knows the lines.
		{"comma is a value byte within a line", "ory_kratos_session=a,b",
			[]string{"ory_kratos_session=a,b"}, "ory_kratos_session=a", "ory_kratos_session=a,b"},
		{"no fragments within a line", "theme=dark,ory_kratos_session=abc",
			[]string{"theme=dark,ory_kratos_session=abc"}, "ory_kratos_session=abc", ""},
		{"smuggled into a second line: only header_map can tell", "pref=x,ory_kratos_session=ATTACKER,ory_kratos_session=VICTIM",
			[]string{"pref=x,ory_kratos_session=ATTACKER", "ory_kratos_session=VICTIM"}, "ory_kratos_session=ATTACKER; ory_kratos_session=VICTIM", "ory_kratos_session=VICTIM"},
		{"several lines, several session cookies in order", "ory_session_b=2,x=0; ory_kratos_session=1",
			[]string{"ory_session_b=2", "x=0; ory_kratos_session=1"}, "ory_session_b=2; ory_kratos_session=1", "ory_session_b=2; ory_kratos_session=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Extract(Headers{Map: map[string]string{"cookie": tt.joined}})
			if err != nil || got.Value != tt.want || (got.Kind == KindCookie) != (tt.want != "") {
				t.Errorf("headers: got %v %q, %v; want %q", got.Kind, got.Value, err, tt.want)
			}
			var raw []*corev3.HeaderValue
			for _, l := range tt.lines {
				raw = append(raw, &corev3.HeaderValue{Key: "cookie", RawValue: []byte(l)})
			}
			got, err = e.Extract(Headers{Raw: raw})
			if err != nil || got.Value != tt.wantLines || (got.Kind == KindCookie) != (tt.wantLines != "") {
				t.Errorf("header_map: got %v %q, %v; want %q", got.Kind, got.Value, err, tt.wantLines)
			}
		})
	}
}

func TestRawDuplicateCookieLines(t *testing.T) {
	e := NewExtractor([]string{"ory_kratos_session"}, "x-session-token", 1024)
	raw := []*corev3.HeaderValue{
		{Key: "cookie", RawValue: []byte("theme=dark")},
		{Key: "Cookie", Value: "ory_kratos_session=abc"},
	}
	got, err := e.Extract(Headers{Raw: raw})
	if err != nil || got != (Credential{KindCookie, "ory_kratos_session=abc"}) {
		t.Fatalf("got %+v %v", got, err)
	}
}

// TestValidHeaderValue: the fast path answers as httpguts for every byte at
// every position of its eight-byte words and of the tail.
func TestValidHeaderValue(t *testing.T) {
	for n := 1; n <= 17; n++ {
		for pos := range n {
			for b := range 256 {
				v := []byte(strings.Repeat("a", n))
				v[pos] = byte(b)
				if got, want := validHeaderValue(string(v)), httpguts.ValidHeaderFieldValue(string(v)); got != want {
					t.Fatalf("%q: %v, httpguts says %v", v, got, want)
				}
			}
		}
	}
	for _, v := range []string{"", "\t\t\t\t\t\t\t\t\t", "\xff\xff\xff\xff\xff\xff\xff\x7f", "\x80\x80\x80\x80\x80\x80\x80\x1f"} {
		if got, want := validHeaderValue(v), httpguts.ValidHeaderFieldValue(v); got != want {
			t.Errorf("%q: %v, httpguts says %v", v, got, want)
		}
	}
}

func TestHeadersRead(t *testing.T) {
	e := NewExtractor([]string{"ory_kratos_session"}, "X-My-Token", 1024)
	got := strings.Join(e.HeadersRead(), ",")
	if got != "x-my-token,cookie,authorization" {
		t.Fatalf("HeadersRead = %s", got)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add("theme=dark; ory_kratos_session=abc", "ory_st_x", "Bearer ory_st_y")
	f.Add(",;=,;", "", "bearer")
	e := NewExtractor([]string{"ory_kratos_session", "ory_session_*"}, "x-session-token", 256)
	f.Fuzz(func(t *testing.T, cookie, token, authz string) {
		checkCookieAsNetHTTP(t, e, cookie)
		c, err := e.Extract(Headers{Map: map[string]string{"cookie": cookie, "x-session-token": token, "authorization": authz}})
		if err != nil {
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrInvalid) || c != (Credential{}) {
				t.Fatalf("error %v with credential %+v", err, c)
			}
			return
		}
		if len(c.Value) > 256 {
			t.Fatalf("credential of %d bytes passed the limit", len(c.Value))
		}
		// What the Ory client would refuse to send never leaves Extract.
		if !httpguts.ValidHeaderFieldValue(c.Value) {
			t.Fatalf("credential %q is not a valid header value", c.Value)
		}
		for _, v := range []string{cookie, token, authz} {
			if validHeaderValue(v) != httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("validHeaderValue(%q) differs from httpguts", v)
			}
		}
		switch c.Kind {
		case KindNone:
			if c.Value != "" {
				t.Fatal("value without kind")
			}
		case KindCookie:
			for _, pair := range strings.Split(c.Value, "; ") {
				name, _, _ := strings.Cut(pair, "=")
				if name != "ory_kratos_session" && !strings.HasPrefix(name, "ory_session_") {
					t.Fatalf("forwarded a foreign cookie %q", name)
				}
			}
		case KindSessionToken:
			if c.Value != token && !strings.HasPrefix(c.Value, "ory_st_") {
				t.Fatalf("token %q from neither the header nor a bearer ory_st_", c.Value)
			}
		}
	})
}

// checkCookieAsNetHTTP asserts that the session cookies forwarded to Ory for
// this Cookie header are the ones net/http, so Kratos, reads: first value of
// each session cookie name, in order, both sides read by net/http (quoting
// and all). "\n" in cookie separates header_map lines (no header value can
// hold one); the headers map gets the value as it is.
func checkCookieAsNetHTTP(t *testing.T, e *Extractor, cookie string) {
	t.Helper()
	lines := strings.Split(cookie, "\n")
	if strings.Count(cookie, ";")+len(lines) > netHTTPMaxCookies {
		return // net/http reads no cookie at all
	}
	// header_map: each line read on ";" only, exactly as net/http does.
	var raw []*corev3.HeaderValue
	for _, l := range lines {
		raw = append(raw, &corev3.HeaderValue{Key: "cookie", RawValue: []byte(l)})
	}
	if got, ok := forwarded(t, e, Headers{Raw: raw}); ok {
		if want := netHTTPSessionCookies(lines...); !slices.Equal(got, want) {
			t.Fatalf("header_map %q: forwarded %v, net/http reads %v", lines, got, want)
		}
	}
	// The headers map: one value in which "," may be Envoy's join of lines.
	got, ok := forwarded(t, e, Headers{Map: map[string]string{"cookie": cookie}})
	if !ok {
		return
	}
	want := netHTTPSessionCookies(cookie)
	if !strings.Contains(cookie, ",") {
		if !slices.Equal(got, want) {
			t.Fatalf("headers %q: forwarded %v, net/http reads %v", cookie, got, want)
		}
		return
	}
	if len(want) == 0 || !unambiguous(cookie) {
		return
	}
	// A session cookie net/http reads wins over ","-fragments; its value
	// ends at the first "," (the rest is another line Envoy joined).
	for i, c := range want {
		if j := strings.IndexByte(c.value, ','); j >= 0 {
			want[i].value = strings.TrimRight(c.value[:j], " \t")
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("headers %q: forwarded %v, want net/http's %v cut at the first comma", cookie, got, want)
	}
}

// netHTTPMaxCookies is net/http's default limit on the cookies of a request
// (httpcookiemaxnum): over it, it reads none.
const netHTTPMaxCookies = 3000

type cookie struct{ name, value string }

// netHTTPSessionCookies is net/http's reading of these Cookie lines: the
// first value of each session cookie name, in order.
func netHTTPSessionCookies(lines ...string) []cookie {
	r := &http.Request{Header: http.Header{"Cookie": lines}}
	var out []cookie
	for _, c := range r.Cookies() {
		if isSessionName(c.Name) && !slices.ContainsFunc(out, func(o cookie) bool { return o.name == c.Name }) {
			out = append(out, cookie{c.Name, c.Value})
		}
	}
	return out
}

// forwarded extracts from h and returns net/http's reading of the Cookie
// sent to Ory; false when no cookie is sent (an error, or another kind).
func forwarded(t *testing.T, e *Extractor, h Headers) ([]cookie, bool) {
	t.Helper()
	c, err := e.Extract(h)
	if err != nil || c.Kind == KindSessionToken {
		return nil, false
	}
	if c.Kind == KindNone {
		return nil, true
	}
	return netHTTPSessionCookies(c.Value), true
}

// unambiguous tells that every ";"-pair naming a session cookie is one
// net/http reads, not quoted around a ",". Otherwise net/http's reading of
// the whole value and the reading of Envoy's joined lines differ in ways only
// a session cookie's own value can cause (e.g. `ory_kratos_session="a,b"`,
// or `ory_kratos_session=a,{"json"}` from two lines), which needs an attacker
// able to set that cookie, who could set the session itself.
func unambiguous(v string) bool {
	named := 0
	for part := range strings.SplitSeq(v, ";") {
		name, _, _ := strings.Cut(textproto.TrimString(part), "=")
		if isSessionName(textproto.TrimString(name)) {
			named++
		}
	}
	read := 0
	for _, c := range (&http.Request{Header: http.Header{"Cookie": {v}}}).Cookies() {
		if isSessionName(c.Name) {
			if c.Quoted && strings.Contains(c.Value, ",") {
				return false
			}
			read++
		}
	}
	return named == read
}

// isSessionName is the Extractor's rule for the names FuzzExtract uses,
// written out again so that the fuzz target does not test it with itself.
func isSessionName(n string) bool {
	return n == "ory_kratos_session" || (len(n) > len("ory_session_") && strings.HasPrefix(n, "ory_session_"))
}

func rawOf(m map[string]string) []*corev3.HeaderValue {
	var raw []*corev3.HeaderValue
	for k, v := range m {
		raw = append(raw, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	return raw
}
