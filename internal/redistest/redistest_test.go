package redistest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartRestartPause(t *testing.T) {
	s := Start(t, Options{Password: "pw-of-the-test"})
	s.Do("SET", "k", "v")
	if v, _ := s.Do("GET", "k").ToString(); v != "v" {
		t.Fatalf("GET = %q", v)
	}
	if got := s.Dump(); len(got) != 1 || string(got["k"]) != "v" {
		t.Fatalf("Dump = %q", got)
	}
	s.Restart()
	// Persistence is off: a restarted server is empty.
	if got := s.Dump(); len(got) != 0 {
		t.Fatalf("Dump after restart = %q", got)
	}
	s.Pause()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	c := s.Client()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PING on a paused server: %v, want a timeout", err)
	}
	s.Resume()
	if v, _ := s.Do("PING").ToString(); v != "PONG" {
		t.Fatalf("PING after resume = %q", v)
	}
}

func TestTLSWithClientCertsAndACL(t *testing.T) {
	s := Start(t, Options{TLS: true, ClientCerts: true, User: "app", UserPassword: "pw-of-app"})
	if v, _ := s.Do("PING").ToString(); v != "PONG" {
		t.Fatalf("PING = %q", v)
	}
	// The default user is off.
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, TLSConfig: s.TLSConfig(), DisableCache: true, ForceSingleClient: true})
	if err == nil {
		err = c.Do(t.Context(), c.B().Ping().Build()).Error()
		c.Close()
	}
	if err == nil {
		t.Fatal("the default user got in")
	}
}
