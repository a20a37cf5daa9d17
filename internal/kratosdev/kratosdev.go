// Package kratosdev runs a real Ory Kratos on loopback for development and
// integration tests, and drives it the way users and operators do: admin API
// identities, JSON browser and native login flows, second factors (TOTP,
// lookup secrets) and aal2 logins, session revocation.
//
// The product talks to Kratos only through whoami; this package exists so the
// tests (and a dev-environment program) can get real cookies, real session
// tokens and real tokenizer JWTs instead of fakes. It starts the same config
// `make run` uses, deploy/kratos/kratos.yml, and layers a second config file on
// top with free ports (or, for `make run`, the config's own fixed ports), fresh
// signing keys and any extra tokenizer templates.
// It uses only the standard library HTTP client; it is tooling, not the
// product's request path.
package kratosdev

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/procgroup"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
)

// Paths below Options.RootDir.
const (
	// BaseConfig is the Kratos config every instance starts from.
	BaseConfig = "deploy/kratos/kratos.yml"
	// ClaimsMapper is the jsonnet mapper given to templates of Options.Templates
	// that name none.
	ClaimsMapper = "deploy/kratos/mesh.claims.jsonnet"
)

// MeshTemplate is the tokenizer template of BaseConfig.
const MeshTemplate = "mesh"

// The ports BaseConfig serves on, used with Options.FixedPorts. A test keeps
// them in step with BaseConfig.
const (
	FixedPublicPort = 4433
	FixedAdminPort  = 4434
)

// SessionCookie is the name of Kratos' session cookie (session.cookie.name is
// left at its default in BaseConfig).
const SessionCookie = "ory_kratos_session"

const (
	defaultStartTimeout = 60 * time.Second
	stopTimeout         = 10 * time.Second
	pollInterval        = 50 * time.Millisecond
	startAttempts       = 3 // a free port can be taken before Kratos binds it
)

// templateName is stricter than Kratos' pattern: a "." would split the koanf key.
var templateName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Options configure Start. Only Binary is required.
type Options struct {
	// Binary is the kratos executable.
	Binary string
	// RootDir holds BaseConfig. Kratos runs in it, so the relative file://
	// URLs of BaseConfig resolve exactly as under `make run`. Default: the
	// nearest directory at or above the working directory that has BaseConfig.
	RootDir string
	// WorkDir receives the rendered config, the keys and kratos.log; it is
	// created if missing. Default: a new temporary directory that Stop removes.
	WorkDir string
	// JWKS is the private JWKS of the "mesh" template and of every template
	// without a key of its own. Default: a new ES256 key (jwks.Generate).
	JWKS []byte
	// Templates adds tokenizer templates or overrides fields of BaseConfig's
	// (Kratos merges config files key by key).
	Templates map[string]TokenizerTemplate
	// Env is added to Kratos' environment, e.g. config overrides such as
	// "LOG_LEVEL=debug". Kratos reads config keys from the environment, so it
	// otherwise gets only PATH, HOME and TMPDIR of this process: a developer's
	// shell must not change what a test runs against.
	Env []string
	// StartTimeout bounds Start from launch to ready. Default: 60s.
	StartTimeout time.Duration
	// FixedPorts keeps BaseConfig's ports (FixedPublicPort, FixedAdminPort)
	// instead of picking free ones, for `make run`, whose printed URLs and
	// commands must not change between runs. Start fails at once, without
	// retrying, if one of them is in use. Tests leave it false.
	FixedPorts bool
	// PublicBaseURL is the URL browsers reach the public API through, when
	// a proxy serves it on the browser's own origin (the `make run` demo:
	// Caddy on 127.0.0.1:8080): it becomes serve.public.base_url, so the
	// flows' ui.action and Kratos' redirects point there. The package's own
	// calls still go to the public port itself (PublicURL), and actions are
	// rewritten to it. Empty: the public port's URL. With a trailing slash.
	PublicBaseURL string
	// Config is more Kratos configuration, written to a third -c file over
	// BaseConfig and the rendered one (Kratos merges them key by key): for
	// the demo, the self-service UI's URLs and allowed return URLs.
	Config map[string]any
}

// TokenizerTemplate is one entry of session.whoami.tokenizer.templates.
type TokenizerTemplate struct {
	// TTL is the JWT lifetime. Zero writes no ttl: for a new template Kratos
	// then issues JWTs with exp = iat (already expired, on purpose for tests);
	// for a template of BaseConfig its ttl stays.
	TTL time.Duration
	// JWKS is this template's private JWKS. Nil: Options.JWKS.
	JWKS []byte
	// JWKSURL replaces the key file altogether, e.g. with an unreachable URL to
	// make Kratos answer 500. It wins over JWKS.
	JWKSURL string
	// ClaimsMapperURL is the jsonnet mapper. Empty: ClaimsMapper.
	ClaimsMapperURL string
}

// Kratos is a running Kratos process. Its methods are safe for concurrent use.
type Kratos struct {
	publicURL, adminURL string // base URLs, with a trailing slash
	jwks                []byte
	workDir             string
	ownsWorkDir         bool
	logPath             string
	http                *http.Client

	fixedPorts bool
	// baseURL is Options.PublicBaseURL; extra is Options.Config.
	baseURL string
	extra   map[string]any

	proc     *procgroup.Process
	stopOnce sync.Once
	stopErr  error
}

// Start launches `kratos serve -c BaseConfig -c <WorkDir>/kratosdev.json
// --dev --sqa-opt-out` on free 127.0.0.1 ports and returns once both the
// public and the admin API report ready. ctx bounds only the start; the
// process runs until Stop. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Kratos, error) {
	if opts.Binary == "" {
		return nil, errors.New("kratosdev: no Kratos binary given")
	}
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("kratosdev: %w", err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("kratosdev: Kratos binary %s: not a file: %w", bin, err)
	}
	root := opts.RootDir
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("kratosdev: %w", err)
		}
		if root, err = FindRoot(wd); err != nil {
			return nil, err
		}
	}
	if root, err = filepath.Abs(root); err != nil {
		return nil, fmt.Errorf("kratosdev: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, BaseConfig)); err != nil {
		return nil, fmt.Errorf("kratosdev: base config: %w", err)
	}

	if opts.PublicBaseURL != "" && !strings.HasSuffix(opts.PublicBaseURL, "/") {
		return nil, fmt.Errorf("kratosdev: Options.PublicBaseURL %q: want a trailing slash", opts.PublicBaseURL)
	}
	k := &Kratos{workDir: opts.WorkDir, jwks: opts.JWKS, fixedPorts: opts.FixedPorts, baseURL: opts.PublicBaseURL, extra: opts.Config}
	if k.workDir == "" {
		if k.workDir, err = os.MkdirTemp("", "kratosdev-"); err != nil {
			return nil, fmt.Errorf("kratosdev: %w", err)
		}
		k.ownsWorkDir = true
	}
	if k.workDir, err = filepath.Abs(k.workDir); err != nil {
		return nil, k.fail(fmt.Errorf("kratosdev: %w", err))
	}
	if err := os.MkdirAll(k.workDir, 0o700); err != nil {
		return nil, k.fail(fmt.Errorf("kratosdev: %w", err))
	}
	if k.jwks == nil {
		if k.jwks, err = jwks.Generate(jwks.DefaultAlg, "kratosdev"); err != nil {
			return nil, k.fail(fmt.Errorf("kratosdev: %w", err))
		}
	}
	templates, err := k.writeTemplates(root, opts.Templates)
	if err != nil {
		return nil, k.fail(err)
	}
	k.logPath = filepath.Join(k.workDir, "kratos.log")
	k.http = &http.Client{
		Timeout: 10 * time.Second,
		// No proxy from the environment: everything here is loopback.
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
		// Show Kratos' answers as they are; the JSON flows never redirect.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := k.launch(ctx, bin, root, templates, opts.Env)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, errPortTaken) {
			return nil, k.fail(err)
		}
		if opts.FixedPorts {
			// Taken between the check in launch and Kratos binding it.
			return nil, k.fail(fmt.Errorf("kratosdev: port %d or %d is in use (is another Kratos, e.g. `make run`, still running?)", FixedPublicPort, FixedAdminPort))
		}
		if attempt == startAttempts {
			return nil, k.fail(fmt.Errorf("kratosdev: %d attempts: %w", attempt, err))
		}
	}
}

// errPortTaken means another process bound a port between freePorts and Kratos.
var errPortTaken = errors.New("a port picked for Kratos was taken before it could bind it")

// launch runs one start attempt on new ports, or on the fixed ones.
func (k *Kratos) launch(ctx context.Context, bin, root string, templates map[string]map[string]string, env []string) error {
	ports := []int{FixedPublicPort, FixedAdminPort}
	if k.fixedPorts {
		// Fail before starting anything: a Kratos that cannot bind would
		// otherwise only show up as a timeout.
		if err := portsFree(ports); err != nil {
			return fmt.Errorf("kratosdev: %w (is another Kratos, e.g. `make run`, still running?)", err)
		}
	} else {
		var err error
		if ports, err = freePorts(2); err != nil {
			return fmt.Errorf("kratosdev: %w", err)
		}
	}
	k.publicURL = fmt.Sprintf("http://127.0.0.1:%d/", ports[0])
	k.adminURL = fmt.Sprintf("http://127.0.0.1:%d/", ports[1])
	baseURL := k.publicURL
	if k.baseURL != "" {
		baseURL = k.baseURL
	}
	override := map[string]any{
		"serve": map[string]any{
			"public": map[string]any{"host": "127.0.0.1", "port": ports[0], "base_url": baseURL},
			"admin":  map[string]any{"host": "127.0.0.1", "port": ports[1], "base_url": k.adminURL},
		},
		"session": map[string]any{"whoami": map[string]any{"tokenizer": map[string]any{"templates": templates}}},
	}
	cfg := filepath.Join(k.workDir, "kratosdev.json")
	if err := writeJSON(cfg, override); err != nil {
		return err
	}

	logFile, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("kratosdev: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	args := []string{"serve", "-c", configArg(filepath.Join(root, BaseConfig)), "-c", configArg(cfg)}
	if k.extra != nil {
		extra := filepath.Join(k.workDir, "kratosdev-extra.json")
		if err := writeJSON(extra, k.extra); err != nil {
			return err
		}
		args = append(args, "-c", configArg(extra))
	}
	cmd := exec.Command(bin, append(args, "--dev", "--sqa-opt-out")...)
	cmd.Dir = root
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	proc, err := procgroup.Start(cmd, nil)
	if err != nil {
		return fmt.Errorf("kratosdev: %w", err)
	}
	k.proc = proc

	if err := k.waitReady(ctx); err != nil {
		select {
		case <-k.proc.Exited():
			tail := k.LogTail(20)
			if strings.Contains(tail, "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("kratosdev: Kratos exited before it was ready: %w; log %s:\n%s", k.proc.Err(), k.logPath, tail)
		default:
			_ = k.terminate()
			return fmt.Errorf("kratosdev: %w; log %s:\n%s", err, k.logPath, k.LogTail(20))
		}
	}
	return nil
}

// waitReady polls both health endpoints until they answer 200, the process
// exits or ctx ends.
func (k *Kratos) waitReady(ctx context.Context) error {
	urls := []string{k.PublicURL() + "health/ready", k.AdminURL() + "admin/health/ready"}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		for len(urls) > 0 && k.ok(ctx, urls[0]) {
			urls = urls[1:]
		}
		if len(urls) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Kratos not ready (%s): %w", urls[0], ctx.Err())
		case <-k.proc.Exited():
			return errors.New("Kratos exited")
		case <-tick.C:
		}
	}
}

func (k *Kratos) ok(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writeTemplates writes the key files and returns the templates part of the
// override config: "mesh" always gets the instance's key.
func (k *Kratos) writeTemplates(root string, in map[string]TokenizerTemplate) (map[string]map[string]string, error) {
	if _, err := jwks.Public(k.jwks); err != nil {
		return nil, fmt.Errorf("kratosdev: Options.JWKS: %w", err)
	}
	defaultKey := filepath.Join(k.workDir, "jwks.json")
	if err := os.WriteFile(defaultKey, k.jwks, 0o600); err != nil {
		return nil, fmt.Errorf("kratosdev: %w", err)
	}
	out := map[string]map[string]string{MeshTemplate: {"jwks_url": fileURL(defaultKey)}}
	for name, tpl := range in {
		if !templateName.MatchString(name) {
			return nil, fmt.Errorf("kratosdev: template name %q: want letters, digits, '-' or '_'", name)
		}
		t := map[string]string{"jwks_url": fileURL(defaultKey), "claims_mapper_url": fileURL(filepath.Join(root, ClaimsMapper))}
		switch {
		case tpl.JWKSURL != "":
			t["jwks_url"] = tpl.JWKSURL
		case tpl.JWKS != nil:
			if _, err := jwks.Public(tpl.JWKS); err != nil {
				return nil, fmt.Errorf("kratosdev: template %q: %w", name, err)
			}
			f := filepath.Join(k.workDir, "jwks-"+name+".json")
			if err := os.WriteFile(f, tpl.JWKS, 0o600); err != nil {
				return nil, fmt.Errorf("kratosdev: %w", err)
			}
			t["jwks_url"] = fileURL(f)
		}
		if tpl.ClaimsMapperURL != "" {
			t["claims_mapper_url"] = tpl.ClaimsMapperURL
		}
		if tpl.TTL > 0 {
			t["ttl"] = kratosDuration(tpl.TTL)
		}
		out[name] = t
	}
	return out, nil
}

// PublicURL is the public API's base URL with a trailing slash, e.g.
// "http://127.0.0.1:40123/". It is also the iss claim of tokenized JWTs.
func (k *Kratos) PublicURL() string { return k.publicURL }

// AdminURL is the admin API's base URL with a trailing slash.
func (k *Kratos) AdminURL() string { return k.adminURL }

// JWKS returns the private JWKS of the "mesh" template; jwks.Public gives
// what a JWT verifier needs.
func (k *Kratos) JWKS() []byte { return bytes.Clone(k.jwks) }

// Done is closed when the Kratos process has exited, whether through Stop or
// on its own (a crash, a signal from elsewhere).
func (k *Kratos) Done() <-chan struct{} { return k.proc.Exited() }

// LogFile is the path of Kratos' combined stdout and stderr.
func (k *Kratos) LogFile() string { return k.logPath }

// LogTail returns up to the last n lines of the Kratos log. Kratos runs with
// log.leak_sensitive_values: false, so the log holds no cookies or tokens.
func (k *Kratos) LogTail(n int) string {
	f, err := os.Open(k.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxTail = 64 << 10
	var off int64
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		off = fi.Size() - maxTail
	}
	buf := make([]byte, maxTail)
	m, _ := f.ReadAt(buf, off)
	lines := strings.Split(strings.TrimRight(string(buf[:m]), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop ends Kratos: SIGTERM, then SIGKILL for the whole process group if it
// has not exited after 10s. It then removes a WorkDir that Start created.
// Stop is idempotent; it returns an error only if Kratos had to be killed or
// the directory could not be removed.
func (k *Kratos) Stop() error {
	k.stopOnce.Do(func() {
		if k.proc != nil {
			k.stopErr = k.terminate()
		}
		k.http.CloseIdleConnections()
		if k.ownsWorkDir {
			k.stopErr = errors.Join(k.stopErr, os.RemoveAll(k.workDir))
		}
	})
	return k.stopErr
}

// terminate stops the current process and waits for it: SIGTERM to its
// process group (Kratos and its jsonnet workers), SIGKILL after stopTimeout.
func (k *Kratos) terminate() error {
	if err := k.proc.Stop(stopTimeout); errors.Is(err, procgroup.ErrKilled) {
		return fmt.Errorf("kratosdev: Kratos did not stop within %s after SIGTERM and was killed", stopTimeout)
	}
	return nil
}

// fail cleans up after a failed Start and returns err.
func (k *Kratos) fail(err error) error {
	if k.proc != nil {
		_ = k.terminate()
	}
	if k.http != nil {
		k.http.CloseIdleConnections()
	}
	if k.ownsWorkDir {
		_ = os.RemoveAll(k.workDir)
	}
	return err
}

// FindRoot returns the nearest directory at or above dir that holds
// BaseConfig: the repository root.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("kratosdev: %w", err)
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, BaseConfig)); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("kratosdev: no %s at or above %s", BaseConfig, dir)
		}
		d = parent
	}
}

// freePorts reserves n distinct loopback ports and releases them for Kratos to
// bind; Start retries when one is taken in between.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// portsFree reports an error if one of the loopback ports cannot be bound.
func portsFree(ports []int) error {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return err
		}
		_ = l.Close()
	}
	return nil
}

func baseEnv() []string {
	var env []string
	for _, name := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// configArg protects a path given to Kratos' -c flag, a string slice that
// pflag reads as a CSV record: a path with a comma (a t.TempDir of a subtest
// named "a, b") would otherwise become two config files.
func configArg(path string) string {
	if !strings.ContainsAny(path, ",\"") && strings.TrimSpace(path) == path {
		return path
	}
	return `"` + strings.ReplaceAll(path, `"`, `""`) + `"`
}

func fileURL(path string) string { return "file://" + filepath.ToSlash(path) }

// kratosDuration formats d for Kratos' duration pattern
// ^([0-9]+(ns|us|ms|s|m|h))+$, which time.Duration.String ("1.5s") can miss.
func kratosDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("kratosdev: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("kratosdev: %w", err)
	}
	return nil
}
