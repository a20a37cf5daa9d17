package server

import (
	"testing"
	"time"
)

// TestTimeoutsDefaults: a zero duration means its named default, any other
// is kept.
func TestTimeoutsDefaults(t *testing.T) {
	got := Timeouts{}.withDefaults()
	want := Timeouts{
		HTTPReadHeader: DefaultHTTPReadHeaderTimeout, HTTPRead: DefaultHTTPReadTimeout,
		HTTPWrite: DefaultHTTPWriteTimeout, HTTPIdle: DefaultHTTPIdleTimeout,
		GRPCMaxConnectionIdle: DefaultGRPCMaxConnectionIdle, GRPCKeepaliveMinTime: DefaultGRPCKeepaliveMinTime,
	}
	if got != want {
		t.Errorf("zero Timeouts = %+v, want %+v", got, want)
	}
	set := Timeouts{
		HTTPReadHeader: 1, HTTPRead: 2, HTTPWrite: 3, HTTPIdle: 4,
		GRPCMaxConnectionIdle: 5, GRPCKeepaliveMinTime: 6 * time.Nanosecond,
	}
	if got := set.withDefaults(); got != set {
		t.Errorf("set Timeouts = %+v, want them kept: %+v", got, set)
	}
}
