package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
)

const (
	dockerfilePath   = "../Dockerfile"
	dockerignorePath = "../.dockerignore"
	runtimeImage     = "gcr.io/distroless/static-debian12:nonroot"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
}

func dockerInstructions(t *testing.T, path string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// execForm parses a JSON-array instruction argument.
func execForm(t *testing.T, ins instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(ins.args), &v); err != nil {
		t.Fatalf("%s %s: want exec form (a JSON array): %v", ins.cmd, ins.args, err)
	}
	return v
}

func TestDockerfile(t *testing.T) {
	all := dockerInstructions(t, dockerfilePath)
	// Split into stages.
	var stages [][]instruction
	for _, ins := range all {
		if ins.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if ins.cmd != "ARG" {
				t.Fatalf("%s before the first FROM", ins.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], ins)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(stages))
	}
	build, runtime := stages[0], stages[len(stages)-1]

	t.Run("builder", func(t *testing.T) {
		goVersion := goDirective(t)
		from := strings.Fields(build[0].args)
		if !slices.Contains(from, "golang:"+goVersion) {
			t.Errorf("build stage FROM %s, want golang:%s (go.mod's go directive)", build[0].args, goVersion)
		}
		var run string
		for _, ins := range build {
			if ins.cmd == "RUN" && strings.Contains(ins.args, "go build") {
				run = ins.args
			}
		}
		if run == "" {
			t.Fatal("no RUN go build in the build stage")
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version="} {
			if !strings.Contains(run, want) {
				t.Errorf("go build lacks %q: %s", want, run)
			}
		}
		pkg := regexp.MustCompile(`\./cmd/[a-z0-9-]+`).FindString(run)
		if pkg == "" {
			t.Fatalf("go build builds no ./cmd/... package: %s", run)
		}
		main := readFile(t, filepath.Join("..", pkg, "main.go"))
		if !bytes.Contains(main, []byte("package main")) || !bytes.Contains(main, []byte("var version")) {
			t.Errorf("%s is not a main package with a version variable for -X main.version", pkg)
		}
	})

	t.Run("runtime", func(t *testing.T) {
		if got := runtime[0].args; got != runtimeImage {
			t.Errorf("runtime FROM %s, want %s", got, runtimeImage)
		}
		var copied, user string
		var entry, cmd []string
		var expose []string
		for _, ins := range runtime {
			switch ins.cmd {
			case "COPY":
				f := strings.Fields(ins.args)
				copied = f[len(f)-1]
			case "USER":
				user = ins.args
			case "ENTRYPOINT":
				entry = execForm(t, ins)
			case "CMD":
				cmd = execForm(t, ins)
			case "EXPOSE":
				expose = append(expose, strings.Fields(ins.args)...)
			case "RUN":
				t.Errorf("RUN in the runtime stage: distroless has no shell")
			}
		}
		if user != "nonroot" {
			t.Errorf("USER %q, want nonroot", user)
		}
		if len(entry) != 1 || entry[0] != copied {
			t.Errorf("ENTRYPOINT %q, want [%q] (the copied binary)", entry, copied)
		}
		if !slices.Equal(cmd, []string{"serve"}) {
			t.Errorf("CMD %q, want [serve]", cmd)
		}
		for _, addr := range []string{config.DefaultGRPCAddr, config.DefaultHTTPAddr} {
			if p := strconv.Itoa(int(addrPort(t, addr))); !slices.Contains(expose, p) {
				t.Errorf("EXPOSE %v lacks %s (default listen address %s)", expose, p, addr)
			}
		}
	})

	t.Run(".dockerignore keeps the build inputs", func(t *testing.T) {
		var patterns []string
		for _, l := range strings.Split(string(readFile(t, dockerignorePath)), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				patterns = append(patterns, l)
			}
		}
		for _, need := range []string{"go.mod", "go.sum", "cmd", "pkg", "cmd/ory-ext-authz/main.go"} {
			for _, p := range patterns {
				if ok, _ := filepath.Match(strings.TrimPrefix(p, "**/"), need); ok || strings.HasPrefix(need, strings.TrimSuffix(p, "/")+"/") {
					t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, need)
				}
			}
		}
		for _, secret := range []string{".git", ".dev", "bin"} {
			if !slices.Contains(patterns, secret) {
				t.Errorf(".dockerignore does not exclude %s", secret)
			}
		}
	})
}

// goDirective returns go.mod's "go 1.N" as "1.N".
func goDirective(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go ([0-9]+\.[0-9]+)`).FindSubmatch(readFile(t, "../go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}
