package authz

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzForwarded feeds arbitrary forwarded headers (each possibly twice) to
// readForwarded. Invariants: no panic; a header sent twice is refused; an
// accepted original request has a URI that starts with "/", a token for
// a method, http, https or nothing for a scheme, and agrees with every
// header that named it.
func FuzzForwarded(f *testing.F) {
	f.Add("GET", "https", "app.example.org", "/admin?x=1", "", "", "", false)
	f.Add("", "", "", "", "GET", "/a", "https://app.example.org/a", false)
	f.Add("POST", "http,https", "a:8080", "/x", "GET", "/x", "", true)
	f.Add("G ET", "gopher", "a/b", "x", "", "", "http://[::1]:80/%zz", false)
	f.Fuzz(func(t *testing.T, fm, fp, fh, fu, om, ou, ourl string, twice bool) {
		h := http.Header{}
		set := func(k, v string) {
			if v != "" {
				h.Add(k, v)
			}
		}
		set(hForwardedMethod, fm)
		set(hForwardedProto, fp)
		set(hForwardedHost, fh)
		set(hForwardedURI, fu)
		set(hOriginalMethod, om)
		set(hOriginalURI, ou)
		set(hOriginalURL, ourl)
		if twice && fu != "" {
			h.Add(hForwardedURI, fu)
		}
		o, err := readForwarded(h)
		if twice && fu != "" && err == nil {
			t.Fatalf("X-Forwarded-Uri twice accepted")
		}
		if err != nil || !o.known {
			return
		}
		if !strings.HasPrefix(o.uri, "/") || checkToken(o.method) != nil || (o.proto != "" && o.proto != "http" && o.proto != "https") {
			t.Fatalf("accepted %+v", o)
		}
		for _, named := range []struct{ got, v string }{{o.method, fm}, {o.method, om}, {o.uri, fu}, {o.uri, ou}, {o.host, fh}} {
			if named.v != "" && named.got != named.v {
				t.Fatalf("accepted %+v, but a header said %q", o, named.v)
			}
		}
	})
}
