package routes

import (
	"fmt"
	"strings"
	"testing"
)

// table200 is a table of 200 rules of every kind; the last catches all.
func table200(tb testing.TB) *Table {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 199 {
		fmt.Fprintf(&b, "  - name: r%d\n    match:\n", i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "      host: svc%d.example.com\n      path: {prefix: /api/v%d/}\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      host: \"*.tenant%d.example.com\"\n      path: {exact: /login%d}\n      methods: [GET, POST]\n", i, i)
		case 2:
			fmt.Fprintf(&b, "      path: {regex: '/items%d/[0-9]+'}\n      methods: [PUT]\n", i)
		case 3:
			fmt.Fprintf(&b, "      path: {prefix: /static%d/}\n", i)
		}
		fmt.Fprintf(&b, "    headers: {x-rule-%d: sub}\n", i%10)
	}
	b.WriteString("  - name: rest\n    on_missing: deny\n")
	return mustParse(tb, b.String())
}

// BenchmarkMatch: a request against a 200-rule table. "last" walks every
// rule to the catch-all (the worst case); nothing allocates on a path in
// normal form. "not normal" is a path with several readings.
func BenchmarkMatch(b *testing.B) {
	tab := table200(b)
	for _, bc := range []struct{ name, method, host, path, want string }{
		{"first", "GET", "svc0.example.com", "/api/v0/users?page=2", "r0"},
		{"middle", "GET", "a.tenant101.example.com:443", "/login101", "r101"},
		{"last", "DELETE", "other.test", "/orders/12345", "rest"},
		{"not normal", "GET", "other.test", "/static3/..%2F../api;x=1/v0/", "ambiguous"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if got := matched(tab, bc.method, bc.host, bc.path); got != bc.want {
				b.Fatalf("matched %s, want %s", got, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				tab.Match(bc.method, bc.host, bc.path)
			}
		})
	}
}

// BenchmarkAuthorize evaluates a rule's CEL expression.
func BenchmarkAuthorize(b *testing.B) {
	tab := mustParse(b, `rules:
  - name: simple
    match: {path: {prefix: /s/}}
    authorize: 'session.aal == "aal2" && claims.sub == session.identity_id'
  - name: typical
    match: {path: {prefix: /t/}}
    authorize: '"admin" in claims.roles && claims.email.endsWith("@example.com") && request.headers["x-tenant"] == claims.tenant'
  - name: loop
    authorize: 'claims.groups.exists(g, g.startsWith("team-") && g.endsWith("-admins"))'
`)
	v := Vars{
		Claims: map[string]any{"sub": "id-1", "email": "a@example.com", "tenant": "t1", "roles": []any{"user", "admin"},
			"groups": []any{"team-a-users", "team-b-users", "team-c-users", "team-d-users", "team-e-users", "team-c-admins"}},
		Session: Session{IdentityID: "id-1", SessionID: "s-1", AAL: "aal2"},
		Request: Request{Method: "GET", Host: "a.test", Path: "/t/x", Headers: map[string]string{"x-tenant": "t1", "accept": "*/*"}},
	}
	// tracked: the input's size unknown, under the runtime cost limit;
	// bounded: an input the load-time estimate bounds (InputBytes), as
	// the Check path passes it.
	for _, mode := range []struct {
		name  string
		bytes int
	}{{"tracked", 0}, {"bounded", 2048}} {
		v.InputBytes = mode.bytes
		for _, path := range []string{"/s/", "/t/", "/l/"} {
			r, _ := tab.Match("GET", "", path)
			b.Run(r.Name()+"/"+mode.name, func(b *testing.B) {
				if ok, err := r.Authorize(v); !ok || err != nil {
					b.Fatalf("Authorize = %v, %v", ok, err)
				}
				b.ReportAllocs()
				for b.Loop() {
					_, _ = r.Authorize(v)
				}
			})
		}
	}
}

// BenchmarkParse compiles the 200-rule table (a reload).
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		table200(b)
	}
}
