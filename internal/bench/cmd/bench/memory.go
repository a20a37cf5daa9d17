package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/bench"
)

func (h *harness) memProbe(ctx context.Context, maxBytes int64, extra ...string) (bench.MemoryResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	args := append([]string{"--sessions", strconv.Itoa(h.opt.memSessions), "--cache-max-bytes", strconv.FormatInt(maxBytes, 10)}, extra...)
	cmd := exec.CommandContext(ctx, h.bins.memory, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return bench.MemoryResult{}, fmt.Errorf("memory probe: %w", err)
	}
	var r bench.MemoryResult
	if err := json.Unmarshal(out, &r); err != nil {
		return bench.MemoryResult{}, fmt.Errorf("memory probe output %q: %w", out, err)
	}
	return r, nil
}

func (h *harness) memory(ctx context.Context) error {
	o := h.opt
	// Room for every session: the server accounts about 1.2 KiB plus the JWT
	// per entry, so 100k sessions need about 170 MiB of --cache-max-bytes.
	large := int64(512 << 20)
	logf("memory: %d sessions, --cache-max-bytes %s", o.memSessions, bytesStr(float64(large)))
	all, err := h.memProbe(ctx, large)
	if err != nil {
		return err
	}
	logf("memory: %d sessions, --cache-max-bytes %s", o.memSessions, bytesStr(float64(o.memBound)))
	small, err := h.memProbe(ctx, o.memBound)
	if err != nil {
		return err
	}
	scen := "memory"
	h.table.add(scen, "setup", fmt.Sprintf("pkg/authz in process, %d sessions of real ES256 JWTs (avg %.0f bytes), heap (runtime.MemStats.HeapAlloc) and VmRSS after GC + FreeOSMemory, before and after the fill", o.memSessions, all.JWTAvgBytes), "", "", "")
	beyond := all.HeapPerEntry - all.JWTAvgBytes
	h.table.add(scen, fmt.Sprintf("--cache-max-bytes %s: sessions cached", bytesStr(float64(large))), fmt.Sprintf("%d of %d", all.Cached, all.Sessions), "", "all", yes(all.Cached == all.Sessions))
	h.table.add(scen, "Go heap: growth / per cached session", fmt.Sprintf("%s / %.0f B", bytesStr(float64(all.HeapAfter)-float64(all.HeapBefore)), all.HeapPerEntry), "", "", "")
	h.table.add(scen, "Go heap per cached session beyond the JWT", fmt.Sprintf("%.0f B", beyond), "", "<= 512 B", yes(beyond <= 512))
	h.table.add(scen, "RSS: after / per cached session / beyond the JWT", fmt.Sprintf("%s / %.0f B / %.0f B", bytesStr(float64(all.RSSAfter)), all.RSSPerEntry, all.RSSPerEntry-all.JWTAvgBytes), "", "", "")
	h.table.add(scen, fmt.Sprintf("one more session (the second %d): Go heap / RSS per session beyond the JWT", o.memSessions-o.memSessions/2),
		fmt.Sprintf("%.0f B / %.0f B", all.HeapMarginalPerEntry-all.JWTAvgBytes, all.RSSMarginalPerEntry-all.JWTAvgBytes), "", "heap <= 512 B", yes(all.HeapMarginalPerEntry-all.JWTAvgBytes <= 512))
	bare, err := h.memProbe(ctx, large, "--bare")
	if err != nil {
		return err
	}
	h.table.add(scen, "of which the cache's own bookkeeping (pkg/tokencache entry + ristretto), measured with an 8-byte value", fmt.Sprintf("%.0f B", bare.HeapPerEntry), "", "", "")
	h.table.add(scen, fmt.Sprintf("--cache-max-bytes %s: sessions cached", bytesStr(float64(o.memBound))), fmt.Sprintf("%d of %d", small.Cached, small.Sessions), "", "bounded", yes(small.Cached < small.Sessions))
	grown := float64(small.HeapAfter) - float64(small.HeapBefore)
	h.table.add(scen, fmt.Sprintf("--cache-max-bytes %s: real heap growth (bytes accounted per entry = bound / cached, vs real heap per entry)", bytesStr(float64(o.memBound))),
		fmt.Sprintf("%s (%.0f B accounted vs %.0f B real)", bytesStr(grown), float64(o.memBound)/float64(max(small.Cached, 1)), small.HeapPerEntry),
		ratio(grown, float64(o.memBound)), fmt.Sprintf("<= %s", bytesStr(float64(o.memBound))), yes(grown <= float64(o.memBound)))
	return nil
}

// goBench runs the Go benchmarks of the hit path and reports ns/op and
// allocs/op.
func (h *harness) goBench(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "BenchmarkCheckCacheHit|BenchmarkCheckCoalescedMiss|BenchmarkExtract|BenchmarkGRPCCheck",
		"-benchtime", "1s", "./pkg/authz", "./pkg/credential", "./internal/bench")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	re := regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)
	var grpcHit, grpcNoop float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name, rest := m[1], m[3]
		fields := strings.Fields(rest)
		var nsop, allocs string
		extra := []string{}
		for i := 1; i < len(fields); i += 2 {
			switch fields[i] {
			case "ns/op":
				nsop = fields[i-1]
			case "allocs/op":
				allocs = fields[i-1]
			case "B/op":
			default:
				extra = append(extra, fields[i-1]+" "+fields[i])
			}
		}
		value := fmt.Sprintf("%s ns/op, %s allocs/op", nsop, allocs)
		if len(extra) > 0 {
			value += ", " + strings.Join(extra, ", ")
		}
		target, met := "", ""
		// The allocation target is the cache hit's, with or without a
		// route table; a hit on a route with a policy also runs its CEL
		// expression, whose evaluation allocates (reported, no target).
		if strings.HasPrefix(name, "BenchmarkCheckCacheHit") && !strings.HasPrefix(name, "BenchmarkCheckCacheHitPolicy") {
			a, _ := strconv.ParseFloat(allocs, 64)
			target, met = "<= 4 allocs/op", yes(a <= 4)
		}
		v, _ := strconv.ParseFloat(nsop, 64)
		switch name {
		case "BenchmarkGRPCCheck/hit":
			grpcHit = v
		case "BenchmarkGRPCCheck/noop":
			grpcNoop = v
		}
		h.table.add("go bench", name, value, "", target, met)
	}
	if grpcHit > 0 && grpcNoop > 0 {
		h.table.add("go bench", "BenchmarkGRPCCheck: hit ns/op vs noop ns/op (in process, loopback gRPC, parallel)", fmt.Sprintf("%.0f vs %.0f ns/op", grpcHit, grpcNoop), ratio(grpcHit, grpcNoop), "", "")
	}
	return sc.Err()
}
