package admin_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ory-ext-authz/ory-ext-authz/internal/admincli"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// cli runs `ory-ext-authz admin args...` in-process.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = admincli.Run(t.Context(), args, nil, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCLIUsage: every bad command line is exit 2 with a message naming the
// problem, before anything is sent.
func TestCLIUsage(t *testing.T) {
	// Nothing listens here: a usage error must be found before dialing.
	addr := "127.0.0.1:1"
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  string
		stderr  string
		noStdio bool
	}{
		{"no subcommand", nil, 2, "", "Usage:", false},
		{"help", []string{"--help"}, 0, "admin invalidate --session ID", "", false},
		{"subcommand help", []string{"stats", "-h"}, 0, "-admin-addr", "", false},
		{"unknown subcommand", []string{"flush"}, 2, "", `unknown subcommand "flush"`, false},
		{"invalidate nothing", []string{"invalidate", "--admin-addr", addr}, 2, "", "exactly one of --session ID, --identity ID or --all", false},
		{"invalidate two things", []string{"invalidate", "--session", "a", "--all", "--admin-addr", addr}, 2, "", "exactly one", false},
		{"empty session", []string{"invalidate", "--session", "", "--admin-addr", addr}, 2, "", "--session: the id must not be empty", false},
		{"empty identity", []string{"invalidate", "--identity=", "--admin-addr", addr}, 2, "", "--identity: the id must not be empty", false},
		{"all=false", []string{"invalidate", "--all=false", "--admin-addr", addr}, 2, "", "nothing to do", false},
		{"json on invalidate", []string{"invalidate", "--all", "--json", "--admin-addr", addr}, 2, "", "--json: only for admin stats", false},
		{"session on stats", []string{"stats", "--session", "a", "--admin-addr", addr}, 2, "", "--session: only for admin invalidate", false},
		{"positional", []string{"invalidate", "--all", "extra", "--admin-addr", addr}, 2, "", `unexpected argument "extra"`, false},
		{"unknown flag", []string{"stats", "--bogus"}, 2, "", "flag provided but not defined: -bogus", false},
		{"empty addr", []string{"stats", "--admin-addr", ""}, 2, "", "--admin-addr: must not be empty", false},
		{"zero timeout", []string{"stats", "--timeout", "0s", "--admin-addr", addr}, 2, "", "--timeout 0s: must be positive", false},
		{"cert without key", []string{"stats", "--tls-cert", "c.pem", "--admin-addr", addr}, 2, "", "--tls-cert and --tls-key", false},
		{"missing CA file", []string{"stats", "--tls-ca", "/nonexistent/ca.pem", "--admin-addr", addr}, 2, "", "--tls-ca: open /nonexistent/ca.pem", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := cli(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("admin %q = %d\nstdout: %s\nstderr: %s", tt.args, code, out, errOut)
			}
		})
	}
}

// TestCLI: the commands against a running admin API, their output, their
// effect, and the exit codes of a refusal and of no connection.
func TestCLI(t *testing.T) {
	e := newEnv(t, envOptions{})
	s, other := e.ory.NewSession(), e.ory.NewSession()
	c, oc := creds(s)[0], creds(other)[0]
	e.expect(t, fetched, c, oc)

	t.Run("invalidate session", func(t *testing.T) {
		code, out, errOut := cli(t, "invalidate", "--session", s.ID, "--admin-addr", e.adminAddr)
		e.step()
		if code != 0 || !strings.Contains(out, "invalidated session "+s.ID) || !strings.Contains(out, "(replicas reached: 1)") || errOut != "" {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		e.expect(t, fetched, c)
		e.expect(t, cached, oc)
	})
	t.Run("invalidate identity", func(t *testing.T) {
		code, out, _ := cli(t, "invalidate", "--identity", s.IdentityID, "--admin-addr", e.adminAddr, "--timeout", "5s")
		e.step()
		if code != 0 || !strings.Contains(out, "invalidated identity "+s.IdentityID) {
			t.Fatalf("exit %d, stdout: %s", code, out)
		}
		e.expect(t, fetched, c)
		e.expect(t, cached, oc)
	})
	t.Run("invalidate all", func(t *testing.T) {
		code, out, _ := cli(t, "invalidate", "--all", "--admin-addr", e.adminAddr)
		e.step()
		if code != 0 || !strings.Contains(out, "purged the cache") {
			t.Fatalf("exit %d, stdout: %s", code, out)
		}
		e.expect(t, fetched, c, oc)
	})
	t.Run("a non-UUID id is sent, with a note", func(t *testing.T) {
		code, _, errOut := cli(t, "invalidate", "--session", "custom-id", "--admin-addr", e.adminAddr)
		if code != 0 || !strings.Contains(errOut, "note: the id is not a UUID") {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
	})

	t.Run("stats table", func(t *testing.T) {
		want := e.stats(t)
		code, out, _ := cli(t, "stats", "--admin-addr", e.adminAddr)
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		// The Stats call above is not a lookup: the numbers agree.
		for _, row := range []struct {
			name string
			n    uint64
		}{
			{"cache entries", want.GetCacheEntries()}, {"cache bytes", want.GetCacheBytes()},
			{"hits", want.GetHits()}, {"misses", want.GetMisses()}, {"negative hits", want.GetNegativeHits()},
			{"refreshes", want.GetRefreshes()}, {"ory calls", want.GetOryCalls()}, {"ory errors", want.GetOryErrors()},
		} {
			if !hasRow(out, row.name, row.n) {
				t.Errorf("no row %q with %d in:\n%s", row.name, row.n, out)
			}
		}
		if !strings.Contains(out, "KiB") || !strings.Contains(out, "% of lookups") {
			t.Errorf("no human-readable bytes or ratio in:\n%s", out)
		}
	})
	t.Run("stats json", func(t *testing.T) {
		want := e.stats(t)
		code, out, _ := cli(t, "stats", "--json", "--admin-addr", e.adminAddr)
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		var got map[string]uint64 // numbers, not protojson's strings
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for k, v := range map[string]uint64{
			"cache_entries": want.GetCacheEntries(), "cache_bytes": want.GetCacheBytes(), "hits": want.GetHits(),
			"misses": want.GetMisses(), "negative_hits": want.GetNegativeHits(), "refreshes": want.GetRefreshes(),
			"ory_calls": want.GetOryCalls(), "ory_errors": want.GetOryErrors(), "shared_hits": want.GetSharedHits(),
		} {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s = %d (present %v), want %d", k, g, ok, v)
			}
		}
		if len(got) != 9 {
			t.Errorf("%d fields, want 9: %s", len(got), out)
		}
	})

	t.Run("refused: invalid id is exit 1", func(t *testing.T) {
		code, out, errOut := cli(t, "invalidate", "--session", strings.Repeat("x", admin.MaxIDLen+1), "--admin-addr", e.adminAddr)
		if code != 1 || out != "" || !strings.Contains(errOut, "the server refused: InvalidArgument") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		e.expect(t, cached, c)
	})
	t.Run("refused: the ext_authz listener is exit 1 with a hint", func(t *testing.T) {
		code, _, errOut := cli(t, "stats", "--admin-addr", e.grpcAddr)
		if code != 1 || !strings.Contains(errOut, "does not serve the admin API") || !strings.Contains(errOut, "--admin-addr") {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
	})
	t.Run("no connection is exit 2", func(t *testing.T) {
		l := servertest.Listen(t)
		addr := l.Addr().String()
		_ = l.Close()
		code, _, errOut := cli(t, "invalidate", "--all", "--admin-addr", addr, "--timeout", "5s")
		if code != 2 || !strings.Contains(errOut, "cannot reach the admin API at "+addr) {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
	})
}

// hasRow tells whether the table has a row name with value n.
func hasRow(table, name string, n uint64) bool {
	for _, line := range strings.Split(table, "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		return len(f) > 0 && f[0] == uitoa(n)
	}
	return false
}

func uitoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestCLIMTLS: an admin listener with a client CA refuses a client without a
// certificate, or with one of another CA (exit 2: no connection), and nothing
// is invalidated; a client with a certificate of the CA gets in, and the log
// names it.
func TestCLIMTLS(t *testing.T) {
	cs := newCerts(t)
	tc, err := server.NewTLSConfig(server.TLSFiles{Cert: cs.serverCert, Key: cs.serverKey, ClientCA: cs.clientCA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{adminOpts: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, noAdminClient: true})
	s := e.ory.NewSession()
	c := creds(s)[0]
	e.expect(t, fetched, c)

	base := []string{"invalidate", "--session", s.ID, "--admin-addr", e.adminAddr, "--timeout", "5s"}
	refused := []struct {
		name  string
		flags []string
	}{
		{"plaintext", nil},
		{"TLS without a client certificate", []string{"--tls-ca", cs.serverCA}},
		{"a certificate of another CA", []string{"--tls-ca", cs.serverCA, "--tls-cert", cs.otherCert, "--tls-key", cs.otherKey}},
		{"not trusting the server", []string{"--tls-cert", cs.clientCert, "--tls-key", cs.clientKey}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := cli(t, append(base, tt.flags...)...)
			if code != 2 || out != "" || !strings.Contains(errOut, "cannot reach the admin API") {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
		})
	}
	e.expect(t, cached, c) // none of them invalidated anything

	code, out, errOut := cli(t, append(base, "--tls-ca", cs.serverCA, "--tls-cert", cs.clientCert, "--tls-key", cs.clientKey, "--tls-server-name", "localhost")...)
	e.step()
	if code != 0 || !strings.Contains(out, "invalidated session") {
		t.Fatalf("with the client certificate: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	e.expect(t, fetched, c)
	rec := findLog(t, e.logs.String(), "admin: session invalidated")
	if rec == nil || rec["client_cn"] != "operator" {
		t.Errorf("invalidation log = %v, want client_cn operator", rec)
	}
}

// TestCLINonCanonicalUUID: the CLI sends a UUID given in another spelling in
// its canonical form, says so, and the session or identity is ended.
func TestCLINonCanonicalUUID(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, kind := range []string{"session", "identity"} {
		t.Run(kind, func(t *testing.T) {
			s := newSessionOf(e.ory, newUUID())
			c := creds(s)[0]
			e.expect(t, fetched, c)
			id := s.ID
			if kind == "identity" {
				id = s.IdentityID
			}
			code, out, errOut := cli(t, "invalidate", "--"+kind, strings.ToUpper(id), "--admin-addr", e.adminAddr)
			e.step()
			if code != 0 || !strings.Contains(out, "invalidated "+kind+" "+id) || !strings.Contains(errOut, "sending it as "+id) {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			e.expect(t, fetched, c)
		})
	}
}

// TestCLINotShared: an invalidation the server applied on its own replica
// but could not pass on (the shared tier is unreachable) is a refusal,
// exit 1, saying so: never "done", and never "cannot reach the admin API".
func TestCLINotShared(t *testing.T) {
	api, err := admin.New(admin.Options{Cache: &notSharedCache{}, Ory: fakeOry{}})
	if err != nil {
		t.Fatal(err)
	}
	addrs := servertest.Start(t, server.Options{
		Authz:         authv3.UnimplementedAuthorizationServer{},
		RegisterAdmin: func(gs *grpc.Server) { api.Register(gs) },
	})
	code, out, errOut := cli(t, "invalidate", "--session", "8f14e45f-ceea-467f-a8f3-5e2b2e4c5d6a", "--admin-addr", addrs.Admin)
	if code != 1 || out != "" || !strings.Contains(errOut, "applied on this replica only") || strings.Contains(errOut, "cannot reach") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s\nwant exit 1 saying it holds on this replica only", code, out, errOut)
	}
}
