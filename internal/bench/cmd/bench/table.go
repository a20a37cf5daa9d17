package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// row is one figure of the table.
type row struct {
	scenario, figure, value, ratio, target, met string
}

type table struct{ rows []row }

func (t *table) add(scenario, figure, value, ratio, target, met string) {
	t.rows = append(t.rows, row{scenario, figure, value, ratio, target, met})
}

func (t *table) print(w io.Writer) {
	fmt.Fprintln(w, "| scenario | figure | value | vs baseline | target | met |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.scenario, esc(r.figure), esc(r.value), esc(r.ratio), esc(r.target), r.met)
	}
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// machine adds the machine's rows: cores, memory, CPU model, Go and kernel.
func (h *harness) machine() {
	h.table.add("machine", "CPU", cpuModel(), "", "", "")
	h.table.add("machine", "cores (nproc)", strconv.Itoa(runtime.NumCPU()), "", "", "")
	h.table.add("machine", "memory", memTotal(), "", "", "")
	h.table.add("machine", "Go, OS", runtime.Version()+", "+runtime.GOOS+"/"+runtime.GOARCH+", "+kernel(), "", "", "")
	h.table.add("machine", "date", time.Now().UTC().Format("2006-01-02 15:04 UTC"), "", "", "")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			f := strings.Fields(rest)
			if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func bytesStr(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
