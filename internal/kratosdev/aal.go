package kratosdev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Second factors (aal2), as BaseConfig enables them: TOTP and lookup secrets.
//
// What Kratos v1.3.1 does, read in its source (selfservice/strategy/totp,
// selfservice/strategy/lookup, selfservice/flow/login/hook.go) and checked by
// the tests here:
//
//   - Adding a second factor in the settings flow counts as using it: the
//     session that adds it becomes aal2 at once. An aal1 session of an
//     identity with a second factor comes from a new password login
//     (APILogin, BrowserLoginSession), which BaseConfig's
//     session.whoami.required_aal: aal1 keeps working.
//   - A login flow with ?aal=aal2 upgrades the session it is started with; the
//     session id and the session token stay, a browser gets a new cookie
//     value for the same session.
//   - TOTP codes are checked with pquerna/otp's totp.Validate (the code of the
//     current 30s period or of the one before or after) and used codes are
//     not recorded, so the same code may be used again: EnableTOTP followed
//     at once by APILoginAAL2 needs no wait for the next period.
//   - A lookup secret works once.

// totpOpts are the TOTP parameters of Kratos' keys (totp.NewKey): 6 digits,
// a 30s period and SHA1.
var totpOpts = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// TOTPCode is the TOTP code of the base32 secret (EnableTOTP) for the time t,
// usually time.Now().
func TOTPCode(secret string, t time.Time) (string, error) {
	code, err := totp.GenerateCodeCustom(secret, t, totpOpts)
	if err != nil {
		// The error is about the secret's encoding; it never holds the secret.
		return "", fmt.Errorf("kratosdev: TOTP code: %w", err)
	}
	return code, nil
}

// EnableTOTP adds TOTP to the identity of the session token (APILogin) with
// the native settings flow, as an app does: it reads the secret Kratos offers
// (the totp_secret_key node), answers with its current code and returns the
// base32 secret for TOTPCode, APILoginAAL2 and BrowserLoginAAL2.
//
// The session must be fresh (selfservice.flows.settings.privileged_session_max_age,
// 15m by default) and, if the identity already has a second factor, aal2
// (settings.required_aal: highest_available). Afterwards that session is
// aal2 (see above); the identity's other sessions keep their level.
func (k *Kratos) EnableTOTP(ctx context.Context, sessionToken string) (string, error) {
	h := tokenHeader(sessionToken)
	var flow uiFlow
	if _, err := k.doWith(ctx, nil, h, http.MethodGet, k.publicURL+"self-service/settings/api", nil, &flow, http.StatusOK); err != nil {
		return "", fmt.Errorf("kratosdev: api settings flow: %w", err)
	}
	secret, _ := flow.text("totp_secret_key")
	if secret == "" {
		return "", errors.New("kratosdev: enable TOTP: the settings flow offers no TOTP secret (is TOTP enabled, or does the identity have it already?)")
	}
	code, err := TOTPCode(secret, time.Now())
	if err != nil {
		return "", err
	}
	action, err := k.publicAction(flow)
	if err != nil {
		return "", err
	}
	var done uiFlow
	body := map[string]string{"method": "totp", "totp_code": code}
	if _, err := k.doWith(ctx, nil, h, http.MethodPost, action, body, &done, http.StatusOK); err != nil {
		return "", fmt.Errorf("kratosdev: enable TOTP: %w", err)
	}
	if done.State != "success" {
		return "", fmt.Errorf("kratosdev: enable TOTP: settings flow in state %q, want success", done.State)
	}
	return secret, nil
}

// EnableLookupSecrets adds lookup secrets (recovery codes) to the identity of
// the session token with the native settings flow, regenerating and then
// confirming them, and returns the codes, each good for one aal2 login
// (APILoginLookupSecret). Like EnableTOTP, it needs a fresh session, an aal2
// one if the identity has a second factor, and leaves that session aal2.
func (k *Kratos) EnableLookupSecrets(ctx context.Context, sessionToken string) ([]string, error) {
	h := tokenHeader(sessionToken)
	var flow uiFlow
	if _, err := k.doWith(ctx, nil, h, http.MethodGet, k.publicURL+"self-service/settings/api", nil, &flow, http.StatusOK); err != nil {
		return nil, fmt.Errorf("kratosdev: api settings flow: %w", err)
	}
	action, err := k.publicAction(flow)
	if err != nil {
		return nil, err
	}
	var shown uiFlow
	regenerate := map[string]any{"method": "lookup_secret", "lookup_secret_regenerate": true}
	if _, err := k.doWith(ctx, nil, h, http.MethodPost, action, regenerate, &shown, http.StatusOK); err != nil {
		return nil, fmt.Errorf("kratosdev: generate lookup secrets: %w", err)
	}
	// The text is "code, code, ..."; its context lists one message per code.
	_, raw := shown.text("lookup_secret_codes")
	var list struct {
		Secrets []struct {
			Text string `json:"text"`
		} `json:"secrets"`
	}
	if raw == nil || json.Unmarshal(raw, &list) != nil || len(list.Secrets) == 0 {
		return nil, errors.New("kratosdev: generate lookup secrets: the settings flow shows no codes")
	}
	codes := make([]string, len(list.Secrets))
	for i, s := range list.Secrets {
		codes[i] = s.Text
	}
	if action, err = k.publicAction(shown); err != nil {
		return nil, err
	}
	var done uiFlow
	confirm := map[string]any{"method": "lookup_secret", "lookup_secret_confirm": true}
	if _, err := k.doWith(ctx, nil, h, http.MethodPost, action, confirm, &done, http.StatusOK); err != nil {
		return nil, fmt.Errorf("kratosdev: confirm lookup secrets: %w", err)
	}
	if done.State != "success" {
		return nil, fmt.Errorf("kratosdev: confirm lookup secrets: settings flow in state %q, want success", done.State)
	}
	return codes, nil
}

// APILoginAAL2 upgrades the session of the token (APILogin) to aal2 with the
// native login flow (?aal=aal2) and the current TOTP code of secret
// (EnableTOTP). The token stays the session's token; whoami with it reports
// aal2 afterwards.
func (k *Kratos) APILoginAAL2(ctx context.Context, sessionToken, secret string) error {
	code, err := TOTPCode(secret, time.Now())
	if err != nil {
		return err
	}
	return k.apiLoginAAL2(ctx, sessionToken, map[string]string{"method": "totp", "totp_code": code})
}

// APILoginLookupSecret is APILoginAAL2 with a lookup secret
// (EnableLookupSecrets) instead of a TOTP code. Kratos refuses a used one.
func (k *Kratos) APILoginLookupSecret(ctx context.Context, sessionToken, code string) error {
	return k.apiLoginAAL2(ctx, sessionToken, map[string]string{"method": "lookup_secret", "lookup_secret": code})
}

// BrowserLoginAAL2 upgrades the browser session of cookie
// ("ory_kratos_session=<value>", from BrowserLogin) to aal2 with the JSON
// browser login flow (?aal=aal2) and the current TOTP code of secret, and
// returns the session's new cookie: Kratos issues a new value for the same
// session. An identity gets TOTP through an API session of its own
// (APILogin, then EnableTOTP); its browser logins are aal1 until upgraded.
func (k *Kratos) BrowserLoginAAL2(ctx context.Context, cookie, secret string) (string, error) {
	code, err := TOTPCode(secret, time.Now())
	if err != nil {
		return "", err
	}
	return k.browserLoginAAL2(ctx, cookie, map[string]string{"method": "totp", "totp_code": code})
}

// aal2Answer is the part of a login answer the aal2 upgrades check.
type aal2Answer struct {
	SessionToken string `json:"session_token"`
	Session      struct {
		ID  string `json:"id"`
		AAL string `json:"authenticator_assurance_level"`
	} `json:"session"`
}

func (a *aal2Answer) check() error {
	if a.Session.ID == "" || a.Session.AAL != "aal2" {
		return fmt.Errorf("answer with session id %q at level %q, want aal2", a.Session.ID, a.Session.AAL)
	}
	return nil
}

// apiLoginAAL2 runs the native aal2 login flow for the session of the token
// and posts body (method and second factor) to it.
func (k *Kratos) apiLoginAAL2(ctx context.Context, sessionToken string, body map[string]string) error {
	h := tokenHeader(sessionToken)
	var flow uiFlow
	if _, err := k.doWith(ctx, nil, h, http.MethodGet, k.publicURL+"self-service/login/api?aal=aal2", nil, &flow, http.StatusOK); err != nil {
		return fmt.Errorf("kratosdev: api aal2 login flow: %w", err)
	}
	action, err := k.publicAction(flow)
	if err != nil {
		return err
	}
	var res aal2Answer
	if _, err := k.doWith(ctx, nil, h, http.MethodPost, action, body, &res, http.StatusOK); err != nil {
		return fmt.Errorf("kratosdev: api aal2 login: %w", err)
	}
	if err := res.check(); err != nil {
		return fmt.Errorf("kratosdev: api aal2 login: %w", err)
	}
	if res.SessionToken != sessionToken {
		// Callers keep using their token; Kratos v1.3.1 upgrades its session.
		return errors.New("kratosdev: api aal2 login: Kratos answered with another session token")
	}
	return nil
}

// browserLoginAAL2 runs the JSON browser aal2 login flow with the session
// cookie, posts body with the flow's csrf_token and returns the new session
// cookie.
func (k *Kratos) browserLoginAAL2(ctx context.Context, cookie string, body map[string]string) (string, error) {
	name, value, ok := strings.Cut(cookie, "=")
	if !ok || name != SessionCookie || value == "" {
		return "", fmt.Errorf("kratosdev: browser aal2 login: want a %s=<value> cookie", SessionCookie)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(k.publicURL)
	if err != nil {
		return "", fmt.Errorf("kratosdev: %w", err)
	}
	jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
	client := *k.http
	client.Jar = jar
	var flow uiFlow
	if _, err := k.do(ctx, &client, http.MethodGet, k.publicURL+"self-service/login/browser?aal=aal2", nil, &flow, http.StatusOK); err != nil {
		return "", fmt.Errorf("kratosdev: browser aal2 login flow: %w", err)
	}
	csrf := flow.csrfToken()
	if csrf == "" {
		return "", errors.New("kratosdev: browser aal2 login flow has no csrf_token")
	}
	action, err := k.publicAction(flow)
	if err != nil {
		return "", err
	}
	form := map[string]string{"csrf_token": csrf}
	maps.Copy(form, body)
	var res aal2Answer
	if _, err := k.do(ctx, &client, http.MethodPost, action, form, &res, http.StatusOK); err != nil {
		return "", fmt.Errorf("kratosdev: browser aal2 login: %w", err)
	}
	if err := res.check(); err != nil {
		return "", fmt.Errorf("kratosdev: browser aal2 login: %w", err)
	}
	for _, c := range jar.Cookies(u) {
		if c.Name == SessionCookie && c.Value != "" {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", fmt.Errorf("kratosdev: browser aal2 login: no %s cookie", SessionCookie)
}

// tokenHeader is the header carrying a session token to Kratos' self-service
// flows.
func tokenHeader(sessionToken string) http.Header {
	return http.Header{"X-Session-Token": {sessionToken}}
}
