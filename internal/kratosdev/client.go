package kratosdev

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// CreateIdentity creates an identity of the default schema with the email
// trait and a password, via POST /admin/identities, and returns its id. If the
// email is taken it returns the existing identity's id (which keeps its old
// password), so tests can share identities.
func (k *Kratos) CreateIdentity(ctx context.Context, email, password string) (string, error) {
	body := map[string]any{
		"schema_id":   "default",
		"traits":      map[string]string{"email": email},
		"credentials": map[string]any{"password": map[string]any{"config": map[string]string{"password": password}}},
	}
	var created struct {
		ID string `json:"id"`
	}
	status, err := k.do(ctx, nil, http.MethodPost, k.adminURL+"admin/identities", body, &created, http.StatusCreated, http.StatusConflict)
	if err != nil {
		return "", fmt.Errorf("kratosdev: create identity: %w", err)
	}
	if status == http.StatusCreated {
		return created.ID, nil
	}
	var found []struct {
		ID string `json:"id"`
	}
	q := url.Values{"credentials_identifier": {email}}
	if _, err := k.do(ctx, nil, http.MethodGet, k.adminURL+"admin/identities?"+q.Encode(), nil, &found, http.StatusOK); err != nil {
		return "", fmt.Errorf("kratosdev: look up existing identity: %w", err)
	}
	if len(found) != 1 || found[0].ID == "" {
		return "", fmt.Errorf("kratosdev: identity conflicts, but %d identities have the identifier", len(found))
	}
	return found[0].ID, nil
}

// uiFlow is the part of a Kratos self-service flow (login, settings) the
// clients here read: the form action, the state and the UI nodes.
type uiFlow struct {
	State string `json:"state"`
	UI    struct {
		Action string `json:"action"`
		Nodes  []struct {
			Attributes struct {
				// Input nodes.
				Name  string `json:"name"`
				Value any    `json:"value"`
				// Text nodes (a TOTP secret, lookup secrets).
				ID   string `json:"id"`
				Text *struct {
					Text    string          `json:"text"`
					Context json.RawMessage `json:"context"`
				} `json:"text"`
			} `json:"attributes"`
		} `json:"nodes"`
	} `json:"ui"`
}

func (f *uiFlow) csrfToken() string {
	for _, n := range f.UI.Nodes {
		if s, ok := n.Attributes.Value.(string); ok && n.Attributes.Name == "csrf_token" {
			return s
		}
	}
	return ""
}

// text returns the text and the text context of the text node with the id,
// or "" and nil without one.
func (f *uiFlow) text(id string) (string, json.RawMessage) {
	for _, n := range f.UI.Nodes {
		if a := n.Attributes; a.ID == id && a.Text != nil {
			return a.Text.Text, a.Text.Context
		}
	}
	return "", nil
}

// BrowserLogin logs in with the JSON browser flow, as a single-page app does:
// GET /self-service/login/browser (Accept: application/json) sets the CSRF
// cookie, then the password is posted with that cookie and the flow's
// csrf_token. It returns "ory_kratos_session=<value>", ready for a Cookie
// header.
func (k *Kratos) BrowserLogin(ctx context.Context, email, password string) (string, error) {
	cookie, _, err := k.BrowserLoginSession(ctx, email, password)
	return cookie, err
}

// BrowserLoginSession is BrowserLogin that also returns the id of the new
// session, as the login answer names it.
func (k *Kratos) BrowserLoginSession(ctx context.Context, email, password string) (cookie, sessionID string, err error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", "", err
	}
	client := *k.http
	client.Jar = jar
	var flow uiFlow
	if _, err := k.do(ctx, &client, http.MethodGet, k.publicURL+"self-service/login/browser", nil, &flow, http.StatusOK); err != nil {
		return "", "", fmt.Errorf("kratosdev: browser login flow: %w", err)
	}
	csrf := flow.csrfToken()
	if csrf == "" {
		return "", "", errors.New("kratosdev: browser login flow has no csrf_token")
	}
	action, err := k.publicAction(flow)
	if err != nil {
		return "", "", err
	}
	var res struct {
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	body := map[string]string{"method": "password", "identifier": email, "password": password, "csrf_token": csrf}
	if _, err := k.do(ctx, &client, http.MethodPost, action, body, &res, http.StatusOK); err != nil {
		return "", "", fmt.Errorf("kratosdev: browser login: %w", err)
	}
	if res.Session.ID == "" {
		return "", "", errors.New("kratosdev: browser login: answer without session id")
	}
	u, _ := url.Parse(k.publicURL)
	for _, c := range jar.Cookies(u) {
		if c.Name == SessionCookie {
			return c.Name + "=" + c.Value, res.Session.ID, nil
		}
	}
	return "", "", fmt.Errorf("kratosdev: browser login: no %s cookie in the answer", SessionCookie)
}

// APILogin logs in with the native (API) flow, as a mobile app does, without
// cookies, and returns the session token ("ory_st_...") and the session id.
func (k *Kratos) APILogin(ctx context.Context, email, password string) (token, sessionID string, err error) {
	var flow uiFlow
	if _, err := k.do(ctx, nil, http.MethodGet, k.publicURL+"self-service/login/api", nil, &flow, http.StatusOK); err != nil {
		return "", "", fmt.Errorf("kratosdev: api login flow: %w", err)
	}
	action, err := k.publicAction(flow)
	if err != nil {
		return "", "", err
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Session      struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	body := map[string]string{"method": "password", "identifier": email, "password": password}
	if _, err := k.do(ctx, nil, http.MethodPost, action, body, &res, http.StatusOK); err != nil {
		return "", "", fmt.Errorf("kratosdev: api login: %w", err)
	}
	if res.SessionToken == "" || res.Session.ID == "" {
		return "", "", errors.New("kratosdev: api login: answer without session token or session id")
	}
	return res.SessionToken, res.Session.ID, nil
}

// RevokeSession revokes a session via DELETE /admin/sessions/{id}; whoami
// answers 401 for it afterwards.
func (k *Kratos) RevokeSession(ctx context.Context, sessionID string) error {
	if _, err := k.do(ctx, nil, http.MethodDelete, k.adminURL+"admin/sessions/"+url.PathEscape(sessionID), nil, nil, http.StatusNoContent); err != nil {
		return fmt.Errorf("kratosdev: revoke session: %w", err)
	}
	return nil
}

// ExtendSession extends a session via PATCH /admin/sessions/{id}/extend. Its
// expires_at then lies past the expiry recorded in the browser's cookie, so
// the next whoami with that cookie answers with a Set-Cookie that refreshes it.
func (k *Kratos) ExtendSession(ctx context.Context, sessionID string) error {
	if _, err := k.do(ctx, nil, http.MethodPatch, k.adminURL+"admin/sessions/"+url.PathEscape(sessionID)+"/extend", nil, nil, http.StatusOK, http.StatusNoContent); err != nil {
		return fmt.Errorf("kratosdev: extend session: %w", err)
	}
	return nil
}

// WhoamiURL is the public whoami URL, with ?tokenize_as=template unless the
// template is empty.
func (k *Kratos) WhoamiURL(template string) string {
	u := k.publicURL + "sessions/whoami"
	if template != "" {
		u += "?" + url.Values{"tokenize_as": {template}}.Encode()
	}
	return u
}

// publicAction returns the flow's form action after checking that it points
// at this Kratos, so credentials are never posted anywhere else.
func (k *Kratos) publicAction(flow uiFlow) (string, error) {
	if k.baseURL != "" && strings.HasPrefix(flow.UI.Action, k.baseURL) {
		// Kratos names the browsers' URL (PublicBaseURL); ask the port itself.
		return k.publicURL + strings.TrimPrefix(flow.UI.Action, k.baseURL), nil
	}
	if !strings.HasPrefix(flow.UI.Action, k.publicURL) {
		return "", fmt.Errorf("kratosdev: flow action %q is not below %s", flow.UI.Action, k.publicURL)
	}
	return flow.UI.Action, nil
}

// do sends a JSON request and decodes a JSON answer into out (if not nil). An
// answer with a status outside want is an error that carries Kratos' reason
// but never the request, which may hold a password.
func (k *Kratos) do(ctx context.Context, client *http.Client, method, target string, in, out any, want ...int) (int, error) {
	return k.doWith(ctx, client, nil, method, target, in, out, want...)
}

// doWith is do with extra request headers, e.g. X-Session-Token; like the
// request body, they never appear in an error.
func (k *Kratos) doWith(ctx context.Context, client *http.Client, header http.Header, method, target string, in, out any, want ...int) (int, error) {
	if client == nil {
		client = k.http
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return 0, err
	}
	for name, values := range header {
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	for _, w := range want {
		if resp.StatusCode != w {
			continue
		}
		if out != nil && w < 300 {
			if err := json.Unmarshal(raw, out); err != nil {
				return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, req.URL.Path, err)
			}
		}
		return resp.StatusCode, nil
	}
	return resp.StatusCode, fmt.Errorf("%s %s: status %d: %s", method, req.URL.Path, resp.StatusCode, reason(raw))
}

// reason extracts the human-readable part of a Kratos error or flow answer.
func reason(raw []byte) string {
	var e struct {
		Error struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"error"`
		UI struct {
			Messages []struct {
				Text string `json:"text"`
			} `json:"messages"`
			Nodes []struct {
				Messages []struct {
					Text string `json:"text"`
				} `json:"messages"`
			} `json:"nodes"`
		} `json:"ui"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return fmt.Sprintf("non-JSON answer of %d bytes", len(raw))
	}
	var parts []string
	for _, s := range []string{e.Error.Message, e.Error.Reason} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	for _, m := range e.UI.Messages {
		parts = append(parts, m.Text)
	}
	for _, n := range e.UI.Nodes {
		for _, m := range n.Messages {
			parts = append(parts, m.Text)
		}
	}
	if len(parts) == 0 {
		return "no reason given"
	}
	return strings.Join(parts, "; ")
}
