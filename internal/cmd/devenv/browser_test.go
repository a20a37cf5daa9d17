package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ory-ext-authz/ory-ext-authz/internal/browsertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/proxytest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
)

// EnvTestOutput names a directory the browser test writes its screenshots
// to (make test sets it to test-output/); without it they go to the test's
// artifact directory (go test -artifacts keeps it).
const EnvTestOutput = "ORY_EXT_AUTHZ_TEST_OUTPUT"

// step is how long one browser step may take: a page load through Caddy,
// ory-ext-authz and Kratos.
const step = 30 * time.Second

// A JWT in compact form (three base64url parts, the first two JSON
// objects), and a Kratos session token.
var (
	jwtPattern   = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)
	tokenPattern = regexp.MustCompile(`ory_st_[A-Za-z0-9]+`)
)

// TestBrowserDemo walks the `make run` demo as a person does, in a real
// headless Chromium, against the real stack devenv starts (Kratos, the
// ory-ext-authz binary, the UI and the app, Caddy in front): the protected
// page sends the browser to the login, the login brings it back with the
// JWT's claims shown, the logout revokes and invalidates, and the protected
// page sends it to the login again, also with the old cookie put back.
// Registration is walked too. No JWT, session token or cookie value may
// ever be in a page, a URL or the console.
func TestBrowserDemo(t *testing.T) {
	kratosBin := kratostest.Binary(t)
	caddyBin := proxytest.CaddyBinary(t)
	b := browsertest.New(t)
	root, err := kratosdev.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	server := goBuild(t, root, t.TempDir(), "./cmd/ory-ext-authz")
	shots := screenshotDir(t)

	addrs := map[string]string{}
	for _, f := range []string{"grpc-addr", "http-addr", "admin-addr", "forward-auth-addr", "demo-addr"} {
		addrs[f] = servertest.FreeAddr(t)
	}
	args := []string{"--kratos", kratosBin, "--server", server, "--caddy", caddyBin, "--root", root,
		"--dev-dir", t.TempDir(), "--kratos-free-ports"}
	for f, a := range addrs {
		args = append(args, "--"+f, a)
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var out, errOut logcapture.Buffer
	exited := make(chan struct{})
	code := -1
	go func() {
		defer close(exited)
		code = run(ctx, args, &out, &errOut)
	}()
	stopped := false
	t.Cleanup(func() {
		stop()
		<-exited
		if !stopped && t.Failed() {
			t.Logf("devenv stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
		}
	})
	waitFor(t, 2*time.Minute, "the demo to be up", exited, &out, func() bool { return strings.Contains(out.String(), "Press Ctrl-C") })
	origin := "http://" + addrs["demo-addr"]
	if want := "Open " + origin + "/ in a browser and sign in as " + demoEmail + " / " + demoPassword; !strings.Contains(out.String(), want) {
		t.Fatalf("the terminal does not say %q:\n%s", want, out.String())
	}
	identity := regexp.MustCompile(`demo identity \S+ \(password \S+\): id (\S+)`).FindStringSubmatch(out.String())
	if identity == nil {
		t.Fatalf("no demo identity id in the output:\n%s", out.String())
	}

	w := &walker{t: t, b: b, origin: origin, shots: shots}

	// 1. The protected page sends a browser without a session to the login.
	w.navigate("/protected")
	w.waitVisible(`#flow input[name="identifier"]`)
	w.wantPath("/ui/login", "flow")
	w.wantText("h1", "Sign in")
	w.wantForm(origin+"/self-service/login?flow=", "identifier", "password", "csrf_token", "method")
	w.noSecrets("1 login")
	w.screenshot("1-login.png")

	// 2. Log in as the demo user.
	w.fill(`#flow input[name="identifier"]`, demoEmail)
	w.fill(`#flow input[name="password"]`, demoPassword)
	w.click(`#flow button[name="method"][value="password"]`)
	w.waitVisible(`#claims`)

	// 3. Back on the protected page, with the JWT's claims.
	w.wantPath("/protected", "")
	w.wantText("#claim-email", demoEmail)
	w.wantText("#claim-aal", "aal1")
	w.wantText("#claim-sub", identity[1])
	w.wantText("#signed-in", demoEmail)
	w.wantMatch("#exp-left", `^in [0-9]+ s$`)
	w.wantMatch("#headers", `X-User-Email\s+`+regexp.QuoteMeta(demoEmail))
	w.wantMatch("#headers", `Authorization\s+Bearer <a JWT of [0-9]+ bytes, set by ory-ext-authz; not shown>`)
	session := w.sessionCookie()
	if session == nil {
		t.Fatalf("no %s cookie in the browser after the login", kratosdev.SessionCookie)
	}
	w.secrets = append(w.secrets, session.Value)
	w.noSecrets("3 protected page")
	w.screenshot("2-protected.png")

	// 4. Log out: the signed-out page, and the protected page sends the
	// browser to the login again.
	w.click(`#logout button`)
	w.waitVisible(`#message`)
	w.wantPath("/ui/logout", "")
	w.wantMatch("#message", "You are signed out")
	if c := w.sessionCookie(); c != nil {
		t.Errorf("the logout left the %s cookie in the browser", kratosdev.SessionCookie)
	}
	w.noSecrets("4 signed out")
	w.screenshot("3-signed-out.png")
	w.navigate("/protected")
	w.waitVisible(`#flow input[name="identifier"]`)
	w.wantPath("/ui/login", "flow")
	w.noSecrets("4 login again")
	w.screenshot("4-login-again.png")

	// The session itself is over, not just its cookie: with the old cookie
	// put back, the protected page still sends the browser to the login.
	// Only the revocation together with InvalidateSession does that within
	// the JWT's lifetime (a minute): a cached JWT would still be served.
	w.setCookie(session)
	kratosPublic := regexp.MustCompile(`Kratos is up: public (\S+),`).FindStringSubmatch(out.String())
	if kratosPublic == nil {
		t.Fatalf("no Kratos public URL in the output:\n%s", out.String())
	}
	if status := whoamiStatus(t, kratosPublic[1], session); status != http.StatusUnauthorized {
		t.Errorf("Kratos' whoami answers %d for the session after the logout, want 401 (revoked)", status)
	}
	if c := w.sessionCookie(); c == nil || c.Value != session.Value {
		t.Fatal("the old session cookie could not be put back into the browser")
	}
	w.navigate("/protected")
	w.waitVisible(`#flow input[name="identifier"]`)
	w.wantPath("/ui/login", "flow")
	w.noSecrets("old cookie")

	// Registration: a new person signs up on the way to the protected page
	// and lands on it signed in.
	w.clearCookies()
	w.navigate("/protected")
	w.waitVisible(`#other`)
	w.click(`#other`)
	w.waitVisible(`#flow input[name="traits.email"]`)
	w.wantPath("/ui/registration", "flow")
	newEmail := fmt.Sprintf("new-%d@example.org", time.Now().UnixNano())
	w.fill(`#flow input[name="traits.email"]`, newEmail)
	if w.exists(`#flow input[name="password"]`) {
		w.fill(`#flow input[name="password"]`, "a long enough password for kratos")
		w.click(`#flow button[name="method"][value="password"]`)
	} else {
		// Kratos' two-step registration: the profile, then the password.
		w.click(`#flow button[name="method"]`)
		w.waitVisible(`#flow input[name="password"]`)
		w.fill(`#flow input[name="password"]`, "a long enough password for kratos")
		w.click(`#flow button[name="method"][value="password"]`)
	}
	w.waitVisible(`#claims`)
	w.wantPath("/protected", "")
	w.wantText("#claim-email", newEmail)
	if c := w.sessionCookie(); c != nil {
		w.secrets = append(w.secrets, c.Value)
	}
	w.noSecrets("registered")
	w.screenshot("5-registered.png")

	// A wrong password is shown as Kratos' message, on the login page.
	w.clearCookies()
	w.navigate("/ui/login")
	w.waitVisible(`#flow input[name="identifier"]`)
	w.fill(`#flow input[name="identifier"]`, demoEmail)
	w.fill(`#flow input[name="password"]`, "not the password")
	w.click(`#flow button[name="method"][value="password"]`)
	w.waitVisible(`.msg.error`)
	w.wantPath("/ui/login", "flow")
	w.wantMatch(".msg.error", "credentials are invalid")
	w.noSecrets("wrong password")

	for _, m := range b.Console() {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			t.Errorf("browser console: %s (%s)", m, m.URL)
		}
	}

	// Ctrl-C: everything devenv started stops.
	stop()
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("devenv did not stop within 60s:\n%s", out.String())
	}
	stopped = true
	if code != 0 {
		t.Fatalf("devenv exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"stopped Caddy and the demo app", "stopped ory-ext-authz", "stopped Kratos"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	all := kratosAddrs(t, out.String())
	for _, a := range addrs {
		all = append(all, a)
	}
	assertNothingListens(t, all)
	for _, text := range []string{out.String(), errOut.String()} {
		w.checkNoSecrets("devenv's output", text)
	}
	t.Logf("screenshots in %s", shots)
}

// screenshotDir is $ORY_EXT_AUTHZ_TEST_OUTPUT/browser, else the test's
// artifact directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := t.ArtifactDir()
	if base := os.Getenv(EnvTestOutput); base != "" {
		dir = filepath.Join(base, "browser")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// walker runs the steps of one person in the browser; each failure is fatal.
type walker struct {
	t       *testing.T
	b       *browsertest.Browser
	origin  string
	shots   string
	secrets []string // cookie values seen, never to be shown
}

// fatal stops the test, saying where the browser is.
func (w *walker) fatal(what string, err error) {
	w.t.Helper()
	loc, _ := browsertest.Get(w.b, 5*time.Second, chromedp.Location())
	w.t.Fatalf("%s: %v (the browser is at %s)", what, err, loc)
}

func (w *walker) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	w.t.Helper()
	if err := w.b.Do(step, steps...); err != nil {
		w.fatal(what, err)
	}
}

func get[T any](w *walker, what string, a chromedp.Action[T]) T {
	w.t.Helper()
	v, err := browsertest.Get(w.b, step, a)
	if err != nil {
		w.fatal(what, err)
	}
	return v
}

func (w *walker) navigate(path string) {
	w.t.Helper()
	w.do("open "+path, chromedp.Navigate(w.origin+path))
}

func (w *walker) waitVisible(sel string) {
	w.t.Helper()
	w.do("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
}

func (w *walker) fill(sel, value string) {
	w.t.Helper()
	w.do("fill "+sel, chromedp.SendKeys(chromedp.CSS(sel), value))
}

func (w *walker) click(sel string) {
	w.t.Helper()
	w.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

func (w *walker) exists(sel string) bool {
	w.t.Helper()
	return get(w, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))) > 0
}

// wantPath checks the browser's URL: on the demo's origin, at path, with
// the query parameter param (when given), else with no query.
func (w *walker) wantPath(path, param string) {
	w.t.Helper()
	loc := get(w, "location", chromedp.Location())
	if !strings.HasPrefix(loc, w.origin+path) {
		w.t.Fatalf("the browser is at %s, want %s%s", loc, w.origin, path)
	}
	rest := strings.TrimPrefix(loc, w.origin+path)
	switch {
	case param == "" && rest != "":
		w.t.Fatalf("the browser is at %s, want %s%s with no query", loc, w.origin, path)
	case param != "" && !strings.HasPrefix(rest, "?"+param+"="):
		w.t.Fatalf("the browser is at %s, want %s%s?%s=...", loc, w.origin, path, param)
	}
}

func (w *walker) text(sel string) string {
	w.t.Helper()
	return strings.TrimSpace(get(w, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

func (w *walker) wantText(sel, want string) {
	w.t.Helper()
	if got := w.text(sel); got != want {
		w.t.Errorf("%s shows %q, want %q", sel, got, want)
	}
}

func (w *walker) wantMatch(sel, pattern string) {
	w.t.Helper()
	if got := w.text(sel); !regexp.MustCompile(pattern).MatchString(got) {
		w.t.Errorf("%s shows %q, want a match of %s", sel, got, pattern)
	}
}

// wantForm checks the rendered flow: it posts to an action below
// actionPrefix and has inputs with every name of names.
func (w *walker) wantForm(actionPrefix string, names ...string) {
	w.t.Helper()
	action := get(w, "read the form", chromedp.Evaluate[string](`document.querySelector("#flow").getAttribute("action")`))
	method := get(w, "read the form", chromedp.Evaluate[string](`document.querySelector("#flow").getAttribute("method")`))
	have := get(w, "read the form", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#flow [name]")).map(e => e.name)`))
	if !strings.HasPrefix(action, actionPrefix) || !strings.EqualFold(method, "post") {
		w.t.Errorf("the form posts (%s) to %s, want post to %s...", method, action, actionPrefix)
	}
	for _, n := range names {
		if !slices.Contains(have, n) {
			w.t.Errorf("the form has no field %q (it has %v)", n, have)
		}
	}
}

// noSecrets checks the page's HTML, its URL and the console so far.
func (w *walker) noSecrets(step string) {
	w.t.Helper()
	html := get(w, "read the page", chromedp.OuterHTML(chromedp.CSS("html")))
	loc := get(w, "read the URL", chromedp.Location())
	w.checkNoSecrets(step+": the page", html)
	w.checkNoSecrets(step+": the URL", loc)
	for _, m := range w.b.Console() {
		w.checkNoSecrets(step+": the console", m.String())
	}
}

func (w *walker) checkNoSecrets(where, text string) {
	w.t.Helper()
	if m := jwtPattern.FindString(text); m != "" {
		w.t.Errorf("%s shows a JWT (%d bytes)", where, len(m))
	}
	if tokenPattern.MatchString(text) {
		w.t.Errorf("%s shows a session token", where)
	}
	for _, s := range w.secrets {
		if s != "" && strings.Contains(text, s) {
			w.t.Errorf("%s shows the value of the session cookie", where)
		}
	}
}

func (w *walker) screenshot(name string) {
	w.t.Helper()
	png := get(w, "screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(w.shots, name), png, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// sessionCookie is Kratos' session cookie in the browser, or nil.
func (w *walker) sessionCookie() *network.Cookie {
	w.t.Helper()
	res, err := browsertest.Call(w.b, step, network.GetCookies, network.GetCookiesParams{URLs: []string{w.origin + "/"}})
	if err != nil {
		w.fatal("read the cookies", err)
	}
	for _, c := range res.Cookies {
		if c.Name == kratosdev.SessionCookie {
			return c
		}
	}
	return nil
}

func (w *walker) setCookie(c *network.Cookie) {
	w.t.Helper()
	if _, err := browsertest.Call(w.b, step, network.SetCookie, network.SetCookieParams{
		Name: c.Name, Value: c.Value, URL: w.origin + "/", Path: c.Path, HTTPOnly: &c.HTTPOnly,
	}); err != nil {
		w.fatal("set the cookie", err)
	}
}

func (w *walker) clearCookies() {
	w.t.Helper()
	if _, err := browsertest.Call(w.b, step, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		w.fatal("clear the cookies", err)
	}
}

// whoamiStatus asks Kratos' whoami directly with the session's cookie.
func whoamiStatus(t *testing.T, kratosPublic string, c *network.Cookie) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, kratosPublic+"sessions/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
