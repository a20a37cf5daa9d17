package credential

import (
	"errors"
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
		{"comma joined (HTTP/1.1 lines)", map[string]string{"cookie": "theme=dark,ory_kratos_session=abc,_ga=1"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		{"mixed separators and spaces", map[string]string{"cookie": " a=1 ;  ory_kratos_session=abc , b=2"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		// Names are trimmed of ASCII space and tab as net/http (Kratos)
		// reads them, and forwarded trimmed.
		{"space before =", map[string]string{"cookie": "a=1; ory_kratos_session =abc"}, Credential{KindCookie, "ory_kratos_session=abc"}, nil},
		{"tab before =", map[string]string{"cookie": "ory_kratos_session\t=abc; ory_session_x  =1"}, Credential{KindCookie, "ory_kratos_session=abc; ory_session_x=1"}, nil},
		{"non-ASCII space is part of the name", map[string]string{"cookie": "ory_kratos_session\u00a0=abc"}, Credential{}, nil},
		{"ory network prefix", map[string]string{"cookie": "ory_session_coolslug=xyz"}, Credential{KindCookie, "ory_session_coolslug=xyz"}, nil},
		{"prefix alone is not a match", map[string]string{"cookie": "ory_session_=xyz"}, Credential{}, nil},
		{"several session cookies kept in order", map[string]string{"cookie": "ory_session_b=2; x=0; ory_kratos_session=1"}, Credential{KindCookie, "ory_session_b=2; ory_kratos_session=1"}, nil},
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

func rawOf(m map[string]string) []*corev3.HeaderValue {
	var raw []*corev3.HeaderValue
	for k, v := range m {
		raw = append(raw, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	return raw
}
