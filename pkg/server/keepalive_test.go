package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// bound is the longest any test here waits for the server to act. The
// durations under test are a few hundred milliseconds; bound only keeps a
// failing test from hanging.
const bound = 10 * time.Second

// startTimeouts runs server.Run with t's timeouts and an (empty) admin API,
// and returns the listeners' addresses.
func startTimeouts(t *testing.T, to server.Timeouts) servertest.Addrs {
	t.Helper()
	return servertest.Start(t, server.Options{Authz: noopAuthz{}, Timeouts: to, RegisterAdmin: func(*grpc.Server) {}})
}

// closedByServer reads from c until the server closes it (nil) or bound
// passes (an error saying the connection stayed open).
func closedByServer(c net.Conn, r io.Reader) error {
	_ = c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open after %s", bound)
	}
	return nil // EOF (io.Copy's nil) or a reset: closed by the server
}

// TestHTTPConnectionTimeouts: the HTTP listener (probes, metrics) closes a
// keep-alive connection left idle after a response, and one whose request
// headers never end.
func TestHTTPConnectionTimeouts(t *testing.T) {
	tests := []struct {
		name     string
		timeouts server.Timeouts
		// request is written; a complete one is answered first.
		request  string
		complete bool
	}{
		{"idle keep-alive after a response", server.Timeouts{HTTPIdle: 200 * time.Millisecond}, "GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n", true},
		{"request headers never finished", server.Timeouts{HTTPReadHeader: 200 * time.Millisecond}, "GET /healthz HTTP/1.1\r\nHost: probe\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addrs := startTimeouts(t, tt.timeouts)
			c, err := net.Dial("tcp", addrs.HTTP)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			if tt.complete {
				_ = c.SetReadDeadline(time.Now().Add(bound))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Close {
					t.Fatalf("response %d (close %v), want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
				}
			}
			if err := closedByServer(c, br); err != nil {
				t.Fatalf("HTTP connection: %v", err)
			}
		})
	}
}

// h2 is a raw HTTP/2 client connection, for what a gRPC client library
// would hide: pings without streams, and the server's GOAWAY.
type h2 struct {
	c  net.Conn
	fr *http2.Framer
}

// dialH2 opens a connection to addr, sends the client preface and SETTINGS,
// as Envoy does before its first stream, and opens no stream.
func dialH2(t *testing.T, addr string) *h2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	h := &h2{c: c, fr: http2.NewFramer(c, c)}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// goAway is what the server said when it sent GOAWAY.
type goAway struct {
	code  http2.ErrCode
	debug string
}

// read reads frames until until returns true for one (nil) or the server
// sends GOAWAY (that GOAWAY) or the connection ends or bound passes (err).
// It acknowledges the server's SETTINGS and PINGs as a client must.
func (h *h2) read(until func(http2.Frame) bool) (*goAway, error) {
	_ = h.c.SetReadDeadline(time.Now().Add(bound))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return &goAway{code: f.ErrCode, debug: string(f.DebugData())}, nil
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := h.fr.WriteSettingsAck(); err != nil {
					return nil, err
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				if err := h.fr.WritePing(true, f.Data); err != nil {
					return nil, err
				}
			}
		}
		if until != nil && until(f) {
			return nil, nil
		}
	}
}

// ping sends PING n and waits for its ack; it returns the GOAWAY that came
// instead, if any.
func (h *h2) ping(n byte) (*goAway, error) {
	data := [8]byte{7: n}
	if err := h.fr.WritePing(false, data); err != nil {
		return nil, err
	}
	return h.read(func(f http2.Frame) bool {
		p, ok := f.(*http2.PingFrame)
		return ok && p.IsAck() && p.Data == data
	})
}

// listeners are the two gRPC listeners, ext_authz and admin: both get the
// same keepalive rules.
func listeners(a servertest.Addrs) map[string]string {
	return map[string]string{"ext_authz": a.GRPC, "admin": a.Admin}
}

// TestGRPCIdleConnectionClosed: a gRPC connection without a call for
// GRPCMaxConnectionIdle gets a GOAWAY (NO_ERROR: reconnect when needed) and
// is closed, on the ext_authz and on the admin listener.
func TestGRPCIdleConnectionClosed(t *testing.T) {
	addrs := startTimeouts(t, server.Timeouts{GRPCMaxConnectionIdle: 200 * time.Millisecond})
	for name, addr := range listeners(addrs) {
		t.Run(name, func(t *testing.T) {
			h := dialH2(t, addr)
			ga, err := h.read(nil)
			if ga == nil {
				t.Fatalf("idle connection: no GOAWAY (%v)", err)
			}
			if ga.code != http2.ErrCodeNo {
				t.Errorf("GOAWAY %v %q, want NO_ERROR", ga.code, ga.debug)
			}
			// The graceful GOAWAY comes in two (the second after our ping
			// ack); then the server closes the connection.
			for ga != nil {
				ga, err = h.read(nil)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open %s after the GOAWAY", bound)
			}
		})
	}
}

// TestGRPCPingPolicy: pings without any stream, as Envoy's
// http2_protocol_options.connection_keepalive sends them on a quiet
// connection, are answered as long as they come no more often than
// GRPCKeepaliveMinTime; pings far faster get GOAWAY ENHANCE_YOUR_CALM
// ("too_many_pings"), on both gRPC listeners.
func TestGRPCPingPolicy(t *testing.T) {
	const minTime = 100 * time.Millisecond
	addrs := startTimeouts(t, server.Timeouts{GRPCKeepaliveMinTime: minTime})
	tests := []struct {
		name string
		// every is the pause between pings (0: back to back).
		every   time.Duration
		pings   int
		goAways bool
	}{
		// grpc-go sends GOAWAY on the third ping that breaks the policy:
		// five pings are enough to see it.
		{"at three times the allowed rate, no streams", 3 * minTime, 5, false},
		{"back to back", 0, 10, true},
	}
	for name, addr := range listeners(addrs) {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				h := dialH2(t, addr)
				for i := range tt.pings {
					if i > 0 {
						// The pacing is what is tested: the server sees the
						// pings this far apart.
						time.Sleep(tt.every)
					}
					ga, err := h.ping(byte(i))
					if ga != nil {
						if !tt.goAways {
							t.Fatalf("ping %d: GOAWAY %v %q, want an ack", i, ga.code, ga.debug)
						}
						if ga.code != http2.ErrCodeEnhanceYourCalm || !strings.Contains(ga.debug, "too_many_pings") {
							t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", ga.code, ga.debug)
						}
						return
					}
					if err != nil {
						t.Fatalf("ping %d: %v", i, err)
					}
				}
				if tt.goAways {
					t.Fatalf("%d pings back to back: every one acked, no GOAWAY", tt.pings)
				}
			})
		}
	}
}
