package admin_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

func newUUID() string {
	h := randHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) invalidateSession(t *testing.T, id string) {
	t.Helper()
	if _, err := e.admin.InvalidateSession(callCtx(t), &adminv1.InvalidateSessionRequest{SessionId: id}); err != nil {
		t.Fatalf("InvalidateSession: %v", err)
	}
	e.step()
}

func (e *env) invalidateIdentity(t *testing.T, id string) {
	t.Helper()
	if _, err := e.admin.InvalidateIdentity(callCtx(t), &adminv1.InvalidateIdentityRequest{IdentityId: id}); err != nil {
		t.Fatalf("InvalidateIdentity: %v", err)
	}
	e.step()
}

func (e *env) stats(t *testing.T) *adminv1.StatsResponse {
	t.Helper()
	s, err := e.admin.Stats(callCtx(t), &adminv1.StatsRequest{})
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

// TestInvalidateSession: InvalidateSession ends the cached JWTs of one
// session, for the cookie and the session token under both templates, before
// the call returns; the next Check asks Ory, and is denied once Ory says 401.
// Another session of the same identity and other identities stay cached.
func TestInvalidateSession(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.ory.AddTemplate("other")
	s := newSessionOf(e.ory, newUUID())
	sibling := newSessionOf(e.ory, s.IdentityID)
	stranger := e.ory.NewSession()
	target := creds(s)
	bystanders := append(creds(sibling), creds(stranger)...)

	e.expect(t, fetched, append(target, bystanders...)...)
	e.expect(t, cached, append(target, bystanders...)...)

	e.invalidateSession(t, s.ID)
	// No waiting, no polling: the call has returned, so it has taken effect.
	e.expect(t, fetched, target...)
	e.expect(t, cached, target...) // and the new JWTs are cached again
	e.expect(t, cached, bystanders...)

	// Revoked at Ory: the cache keeps serving the session (the reason the
	// admin API exists) until it is invalidated; then it is denied.
	e.ory.Revoke(s)
	e.expect(t, cached, target...)
	e.invalidateSession(t, s.ID)
	e.expect(t, denied, target...)
	e.expect(t, cached, bystanders...)

	if _, err := e.admin.InvalidateSession(callCtx(t), &adminv1.InvalidateSessionRequest{SessionId: newUUID()}); err != nil {
		t.Errorf("an id that matches no session: %v, want OK", err)
	}
}

// TestInvalidateIdentity: InvalidateIdentity ends every session of the
// identity, each credential kind and template, and no other identity's.
func TestInvalidateIdentity(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.ory.AddTemplate("other")
	iid := newUUID()
	s1, s2 := newSessionOf(e.ory, iid), newSessionOf(e.ory, iid)
	stranger := e.ory.NewSession()
	target := append(creds(s1), creds(s2)...)
	bystanders := creds(stranger)

	e.expect(t, fetched, append(target, bystanders...)...)
	e.expect(t, cached, append(target, bystanders...)...)
	e.invalidateIdentity(t, iid)
	e.expect(t, fetched, target...)
	e.expect(t, cached, bystanders...)

	e.ory.Revoke(s1)
	e.ory.Revoke(s2)
	e.expect(t, cached, target...)
	e.invalidateIdentity(t, iid)
	e.expect(t, denied, target...)
	e.expect(t, cached, bystanders...)

	// The session id of a session is not its identity id, nor the other way round.
	s3 := e.ory.NewSession()
	c3 := creds(s3)[0]
	e.expect(t, fetched, c3)
	e.invalidateIdentity(t, s3.ID)
	e.invalidateSession(t, s3.IdentityID)
	e.expect(t, cached, c3)
}

// TestPurge: Purge ends every cached JWT and every remembered 401.
func TestPurge(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := e.ory.NewSession(), e.ory.NewSession()
	live := []cred{creds(a)[0], creds(b)[2]}
	bad := cred{"bad cookie", map[string]string{"cookie": "ory_kratos_session=MTcnot-a-session"}, ""}

	e.expect(t, fetched, live...)
	e.expect(t, denied, bad) // asks Ory: 401
	if got, calls := e.check(t, bad); got != denied || calls != 0 {
		t.Fatalf("bad cookie again: %s with %d calls, want a remembered 401", got, calls)
	}
	if st := e.stats(t); st.GetCacheEntries() != 3 || st.GetCacheBytes() == 0 {
		t.Fatalf("before the purge: %d entries, %d bytes; want 3 entries", st.GetCacheEntries(), st.GetCacheBytes())
	}

	if _, err := e.admin.Purge(callCtx(t), &adminv1.PurgeRequest{}); err != nil {
		t.Fatal(err)
	}
	e.step()
	if st := e.stats(t); st.GetCacheEntries() != 0 || st.GetCacheBytes() != 0 {
		t.Errorf("after the purge: %d entries, %d bytes; want none", st.GetCacheEntries(), st.GetCacheBytes())
	}
	e.expect(t, fetched, live...)
	e.expect(t, denied, bad) // the 401 was forgotten: Ory is asked again
}

// TestStats: after a known sequence of Checks, Stats reports exactly what
// happened, and the ext_authz listener does not serve it.
func TestStats(t *testing.T) {
	e := newEnv(t, envOptions{})
	if st := e.stats(t); st.String() != (&adminv1.StatsResponse{}).String() {
		t.Fatalf("a fresh server: %v, want all zero", st)
	}
	s := e.ory.NewSession()
	cookie, token := creds(s)[0], creds(s)[2]
	bad := cred{"bad cookie", map[string]string{"cookie": "ory_kratos_session=MTcnot-a-session"}, ""}

	e.expect(t, fetched, cookie) // miss, Ory call 1
	e.expect(t, cached, cookie)  // hit 1
	e.expect(t, fetched, token)  // miss 2, Ory call 2
	// Past the refresh-ahead point (three quarters of the 1m JWT), before
	// the hard expiry (exp - 5s): a hit that starts a background refresh.
	e.clock.Advance(50 * time.Second)
	// hit 2, refresh 1, Ory call 3 (in the background: not counted per Check)
	before := e.ory.Calls()
	if got, _ := e.check(t, cookie); got != cached {
		t.Fatalf("past the refresh-ahead point: %s, want cached", got)
	}
	e.az.WaitRefreshes()
	if n := e.ory.Calls() - before; n != 1 {
		t.Fatalf("%d whoami calls for the refresh, want 1", n)
	}
	e.expect(t, denied, bad) // miss 3, Ory call 4, an error
	if got, _ := e.check(t, bad); got != denied {
		t.Fatalf("bad cookie again: %s", got) // negative hit 1
	}
	e.expect(t, cached, cookie) // hit 3 (the refreshed JWT)

	st := e.stats(t)
	want := &adminv1.StatsResponse{
		CacheEntries: 3, CacheBytes: st.GetCacheBytes(),
		Hits: 3, Misses: 3, NegativeHits: 1, Refreshes: 1,
		OryCalls: 4, OryErrors: 1,
	}
	if st.String() != want.String() {
		t.Errorf("Stats = %v\nwant    %v", st, want)
	}
	// Bytes are the entries' costs: two JWT entries of over 1 KiB each.
	if st.GetCacheBytes() < 2*1024 || st.GetCacheBytes() > 64*1024 {
		t.Errorf("cache_bytes = %d, want a few KiB", st.GetCacheBytes())
	}
	// An invalidation voids entries without removing them: they are counted
	// until evicted or refilled.
	e.invalidateSession(t, s.ID)
	if n := e.stats(t).GetCacheEntries(); n != 3 {
		t.Errorf("entries after InvalidateSession = %d, want 3 (voided, not removed)", n)
	}
	e.expect(t, fetched, cookie)
	if n := e.stats(t).GetCacheEntries(); n != 3 {
		t.Errorf("entries after the refill = %d, want 3 (the refill replaces the voided entry)", n)
	}

	_, err := adminv1.NewAdminClient(servertest.Dial(t, e.grpcAddr)).Stats(callCtx(t), &adminv1.StatsRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Stats on the ext_authz listener: %v, want Unimplemented", err)
	}
}

// TestBadInput: every id that cannot be one is InvalidArgument, ends
// nothing, and is neither echoed in the error nor logged.
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.ory.NewSession()
	c := creds(s)[0]
	e.expect(t, fetched, c)

	token := "ory_st_" + randHex(16)
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"empty", "", false},
		{"one byte over the bound", strings.Repeat("a", admin.MaxIDLen+1), false},
		{"huge", strings.Repeat("a", 1<<20), false},
		{"at the bound", strings.Repeat("a", admin.MaxIDLen), true},
		{"space", s.ID[:8] + " " + s.ID[9:], false},
		{"newline", s.ID + "\n", false},
		{"NUL", s.ID + "\x00", false},
		{"not ASCII", "sessión", false},
		{"a session token", token, false},
		{"a UUID", newUUID(), true},
		{"another format", "custom-id-1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{"session", "identity"} {
				var err error
				if method == "session" {
					_, err = e.admin.InvalidateSession(callCtx(t), &adminv1.InvalidateSessionRequest{SessionId: tt.id})
				} else {
					_, err = e.admin.InvalidateIdentity(callCtx(t), &adminv1.InvalidateIdentityRequest{IdentityId: tt.id})
				}
				e.step()
				if tt.ok {
					if err != nil {
						t.Errorf("%s: %v, want OK", method, err)
					}
					continue
				}
				if status.Code(err) != codes.InvalidArgument {
					t.Errorf("%s: %v, want InvalidArgument", method, err)
				}
				if len(tt.id) > 3 && strings.Contains(status.Convert(err).Message(), tt.id) {
					t.Errorf("%s: the error repeats the id: %v", method, err)
				}
			}
		})
	}
	e.expect(t, cached, c) // nothing above was about s
	logs := e.logs.String()
	for _, never := range []string{token, "custom-id-1", strings.Repeat("a", admin.MaxIDLen)} {
		if strings.Contains(logs, never) {
			t.Errorf("the log holds %.20q...", never)
		}
	}
	if !strings.Contains(logs, `"session_id_sha256"`) {
		t.Error("a non-UUID id is not logged as its hash")
	}
}

// TestLog: each invalidation and purge is one info line with the id and the
// caller's address.
func TestLog(t *testing.T) {
	e := newEnv(t, envOptions{})
	sid, iid := newUUID(), newUUID()
	e.invalidateSession(t, sid)
	e.invalidateIdentity(t, iid)
	if _, err := e.admin.Purge(callCtx(t), &adminv1.PurgeRequest{}); err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"msg": "admin: session invalidated", "session_id": sid},
		{"msg": "admin: identity invalidated", "identity_id": iid},
		{"msg": "admin: cache purged"},
	}
	for _, w := range want {
		rec := findLog(t, e.logs.String(), w["msg"])
		if rec == nil {
			t.Errorf("no log line %q in:\n%s", w["msg"], e.logs.String())
			continue
		}
		if rec["level"] != "INFO" {
			t.Errorf("%q at %v, want INFO", w["msg"], rec["level"])
		}
		for k, v := range w {
			if rec[k] != v {
				t.Errorf("%q: %s = %v, want %v", w["msg"], k, rec[k], v)
			}
		}
		if p, _ := rec["peer"].(string); !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("%q: peer = %v, want the caller's address", w["msg"], rec["peer"])
		}
	}
}

// findLog returns the first JSON log record with message msg.
func findLog(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	for _, rec := range logcapture.Records(t, logs) {
		if rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

// fakeCache records calls, for the tests that need no server.
type fakeCache struct{ calls []string }

func (f *fakeCache) Invalidate(_ context.Context, kind, id string) (int64, error) {
	if kind == "purge" {
		f.calls = append(f.calls, "purge")
	} else {
		f.calls = append(f.calls, kind+" "+id)
	}
	return 1, nil
}
func (f *fakeCache) CacheStats() tokencache.Stats {
	return tokencache.Stats{Entries: 1, Bytes: 2, Hits: 3, Misses: 4, NegativeHits: 5, Refreshes: 6, SharedHits: 9}
}

type fakeOry struct{}

func (fakeOry) Stats() (calls, errors uint64) { return 7, 8 }

// TestNew: New needs both sources; Stats maps every field; a rejected id
// never reaches the cache.
func TestNew(t *testing.T) {
	if _, err := admin.New(admin.Options{Ory: fakeOry{}}); err == nil {
		t.Error("New without a cache: no error")
	}
	if _, err := admin.New(admin.Options{Cache: &fakeCache{}}); err == nil {
		t.Error("New without Ory stats: no error")
	}
	fc := &fakeCache{}
	s, err := admin.New(admin.Options{Cache: fc, Ory: fakeOry{}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(t.Context(), &adminv1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(st.GetCacheEntries(), st.GetCacheBytes(), st.GetHits(), st.GetMisses(), st.GetNegativeHits(), st.GetRefreshes(), st.GetOryCalls(), st.GetOryErrors(), st.GetSharedHits()); got != "1 2 3 4 5 6 7 8 9" {
		t.Errorf("Stats fields = %s, want 1 2 3 4 5 6 7 8 9", got)
	}
	if _, err := s.InvalidateSession(t.Context(), &adminv1.InvalidateSessionRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty id: %v", err)
	}
	if _, err := s.InvalidateSession(t.Context(), &adminv1.InvalidateSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(fc.calls, ","); got != "session s" {
		t.Errorf("cache calls = %q, want only the valid one", got)
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"8f14e45f-ceea-467f-a0e6-3b3f1e0a9c55": true,
		"8F14E45F-CEEA-467F-A0E6-3B3F1E0A9C55": true,
		"8f14e45fceea467fa0e63b3f1e0a9c55":     false,
		"8f14e45f-ceea-467f-a0e6-3b3f1e0a9c5":  false,
		"8f14e45f-ceea-467f-a0e6-3b3f1e0a9c5g": false,
		"8f14e45f+ceea-467f-a0e6-3b3f1e0a9c55": false,
		"":                                     false,
	} {
		if got := admin.IsUUID(s); got != want {
			t.Errorf("IsUUID(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestNonCanonicalUUID: Kratos writes its ids as lower-case hyphenated
// UUIDs, and the cache holds them so. An id given in another spelling of the
// same UUID (upper case, as some tools print them, braces, urn:uuid:, no
// hyphens) ends that session or identity, and is logged in the canonical
// form; before, it matched nothing while the call succeeded.
func TestNonCanonicalUUID(t *testing.T) {
	spellings := []struct {
		name  string
		spell func(string) string
	}{
		{"upper case", strings.ToUpper},
		{"mixed case", func(id string) string { return strings.ToUpper(id[:18]) + id[18:] }},
		{"braces", func(id string) string { return "{" + id + "}" }},
		{"urn", func(id string) string { return "urn:uuid:" + strings.ToUpper(id) }},
		{"no hyphens", func(id string) string { return strings.ReplaceAll(strings.ToUpper(id), "-", "") }},
	}
	e := newEnv(t, envOptions{})
	for _, sp := range spellings {
		for _, kind := range []string{"session", "identity"} {
			t.Run(sp.name+"/"+kind, func(t *testing.T) {
				s := newSessionOf(e.ory, newUUID())
				c := creds(s)[0]
				e.expect(t, fetched, c)
				e.expect(t, cached, c)
				id, msg := s.ID, "admin: session invalidated"
				if kind == "identity" {
					id, msg = s.IdentityID, "admin: identity invalidated"
				}
				given := sp.spell(id)
				if given == id {
					t.Fatalf("the spelling %q is already canonical", given)
				}
				if kind == "session" {
					e.invalidateSession(t, given)
				} else {
					e.invalidateIdentity(t, given)
				}
				e.expect(t, fetched, c)
				if rec := lastLog(t, e.logs.String(), msg); rec == nil || rec[kind+"_id"] != id {
					t.Errorf("log %q = %v, want %s_id %s", msg, rec, kind, id)
				}
			})
		}
	}
}

// lastLog returns the last JSON log record with message msg.
func lastLog(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	var last map[string]any
	for _, rec := range logcapture.Records(t, logs) {
		if rec["msg"] == msg {
			last = rec
		}
	}
	return last
}

// TestCanonicalID: what reaches the cache. A UUID in any spelling becomes
// its canonical form; anything else that passes validation is kept byte for
// byte (other Ory setups and the tests use other ids).
func TestCanonicalID(t *testing.T) {
	const canon = "8f14e45f-ceea-467f-a0e6-3b3f1e0a9c55"
	tests := []struct{ in, want string }{
		{canon, canon},
		{"8F14E45F-CEEA-467F-A0E6-3B3F1E0A9C55", canon},
		{"{8f14e45f-ceea-467f-a0e6-3b3f1e0a9c55}", canon},
		{"urn:uuid:8F14E45F-ceea-467f-a0e6-3b3f1e0a9c55", canon},
		{"8f14e45fceea467fa0e63b3f1e0a9c55", canon},
		{"custom-ID-1", "custom-ID-1"},
		{"8f14e45f-ceea-467f-a0e6-3b3f1e0a9c5", "8f14e45f-ceea-467f-a0e6-3b3f1e0a9c5"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			fc := &fakeCache{}
			s, err := admin.New(admin.Options{Cache: fc, Ory: fakeOry{}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.InvalidateSession(t.Context(), &adminv1.InvalidateSessionRequest{SessionId: tt.in}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.InvalidateIdentity(t.Context(), &adminv1.InvalidateIdentityRequest{IdentityId: tt.in}); err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(fc.calls, ","), "session "+tt.want+",identity "+tt.want; got != want {
				t.Errorf("cache calls = %q, want %q", got, want)
			}
		})
	}
}

// notSharedCache invalidates locally but cannot reach the shared tier.
type notSharedCache struct{ fakeCache }

func (f *notSharedCache) Invalidate(ctx context.Context, kind, id string) (int64, error) {
	_, _ = f.fakeCache.Invalidate(ctx, kind, id)
	return 1, fmt.Errorf("%w: dial tcp 127.0.0.1:6379: connection refused", authz.ErrNotShared)
}

// TestInvalidateNotShared: an invalidation that holds on this replica but
// could not reach the others fails with UNAVAILABLE saying so, never a
// silent success; it was still applied here.
func TestInvalidateNotShared(t *testing.T) {
	fc := &notSharedCache{}
	s, err := admin.New(admin.Options{Cache: fc, Ory: fakeOry{}})
	if err != nil {
		t.Fatal(err)
	}
	sid := "8f14e45f-ceea-467f-a8f3-5e2b2e4c5d6a"
	_, err = s.InvalidateSession(t.Context(), &adminv1.InvalidateSessionRequest{SessionId: sid})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "this replica only") {
		t.Fatalf("err = %v, want UNAVAILABLE saying it holds on this replica only", err)
	}
	if _, err := s.Purge(t.Context(), &adminv1.PurgeRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("purge: err = %v, want UNAVAILABLE", err)
	}
	if got := strings.Join(fc.calls, ","); got != "session "+sid+",purge" {
		t.Fatalf("applied locally: %q", got)
	}
}
