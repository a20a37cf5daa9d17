package load

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(101-i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := Percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if Percentile(nil, 99) != 0 {
		t.Error("p99 of nothing")
	}
	if s := Summarize(ds); s.N != 100 || s.Max != 100*time.Millisecond || s.P50 != 50*time.Millisecond {
		t.Errorf("Summarize = %+v", s)
	}
	if Median([]float64{3, 1, 2, 10}) != 2.5 {
		t.Error("median")
	}
}

func TestJWTExp(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		// {"alg":"none"}.{"sub":"x","exp":1800000000}.sig
		{"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjoxODAwMDAwMDAwfQ.c2ln", 1800000000},
		{"Bearer not-a-jwt", 0},
		{"", 0},
	} {
		if got := jwtExp(tt.in); got != tt.want {
			t.Errorf("jwtExp(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestGhzData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.json")
	pairs := []string{"ory_kratos_session=a", "ory_kratos_session=b"}
	if err := WriteGhzData(path, pairs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// ghz detects an array by its first byte and sends element k mod len.
	if b[0] != '[' {
		t.Fatalf("data file starts with %q", b[0])
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(b, &elems); err != nil || len(elems) != 2 {
		t.Fatalf("elements: %d, %v", len(elems), err)
	}
	for i, e := range elems {
		var r authv3.CheckRequest
		if err := protojson.Unmarshal(e, &r); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&r, CheckRequest(pairs[i])) {
			t.Errorf("element %d = %v", i, &r)
		}
	}
}

func TestProtoset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.protoset")
	if err := WriteProtoset(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range set.GetFile() {
		for _, dep := range f.GetDependency() {
			if !seen[dep] {
				t.Errorf("%s imports %s before it is in the set", f.GetName(), dep)
			}
		}
		seen[f.GetName()] = true
	}
	if !seen["envoy/service/auth/v3/external_auth.proto"] {
		t.Error("external_auth.proto missing")
	}
}

// TestDialAll: Client(i) goes to the replicas in turn, and a non-loopback
// replica is refused before anything is dialled.
func TestDialAll(t *testing.T) {
	replicas := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	p, err := DialAll(replicas, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.conns) != 6 {
		t.Fatalf("%d connections, want 6", len(p.conns))
	}
	for i, cc := range p.conns {
		if want := "passthrough:///" + replicas[i%3]; cc.Target() != want {
			t.Errorf("connection %d goes to %s, want %s", i, cc.Target(), want)
		}
	}
	if _, err := DialAll([]string{"127.0.0.1:1", "10.0.0.1:2"}, 1); err == nil {
		t.Error("DialAll dialled a non-loopback replica")
	}
}
