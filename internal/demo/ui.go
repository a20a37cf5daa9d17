package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The self-service flows the UI renders. Each is created by sending the
// browser to /self-service/<kind>/browser and read from
// /self-service/<kind>/flows?id=<id>.
var flowKinds = map[string]flowPage{
	"login": {
		Title: "Sign in", Intro: "Sign in to reach the protected page.",
		Other: "registration", OtherText: "No account yet? Register",
	},
	"registration": {
		Title: "Register", Intro: "Create an account; Kratos signs you in right after.",
		Other: "login", OtherText: "Have an account? Sign in",
	},
	"settings": {
		Title: "Account settings", Intro: "Change your password or add a second factor.",
	},
}

type flowPage struct {
	Title, Intro     string
	Other, OtherText string
}

// UI is the self-service UI: a handler for /ui/login, /ui/registration,
// /ui/settings, /ui/error and /ui/logout.
type UI struct {
	// KratosPublic is the public API's own URL, with a trailing slash, for
	// the UI's calls from the server side (the flows, the errors). Browsers
	// reach the same API on the demo's origin, through Caddy.
	KratosPublic string
	// Client makes those calls. Nil: a client with a 10s timeout.
	Client *http.Client
	// Log gets one line per failed call. Nil: slog.Default().
	Log *slog.Logger
}

// Handler serves the UI's pages below /ui/.
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	for kind := range flowKinds {
		mux.HandleFunc("GET /ui/"+kind, func(w http.ResponseWriter, r *http.Request) { u.flow(w, r, kind) })
	}
	mux.HandleFunc("GET /ui/error", u.errorPage)
	mux.HandleFunc("GET /ui/logout", func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusOK, "signedout", page{Title: "Signed out"})
	})
	return mux
}

// The parts of a Kratos v1.3 self-service flow the UI renders (the JSON of
// GET /self-service/<kind>/flows).
type flow struct {
	ID       string `json:"id"`
	ReturnTo string `json:"return_to"`
	UI       struct {
		Action   string   `json:"action"`
		Method   string   `json:"method"`
		Nodes    []node   `json:"nodes"`
		Messages []uiText `json:"messages"`
	} `json:"ui"`
}

// node is one of ui.nodes: an input, a text, a link or an image (scripts,
// for WebAuthn, are not rendered: the demo enables no such method).
type node struct {
	Type       string `json:"type"`
	Group      string `json:"group"`
	Attributes struct {
		Name         string  `json:"name"`
		Type         string  `json:"type"`
		Value        any     `json:"value"`
		Required     bool    `json:"required"`
		Disabled     bool    `json:"disabled"`
		Autocomplete string  `json:"autocomplete"`
		Href         string  `json:"href"`
		Src          string  `json:"src"`
		ID           string  `json:"id"`
		Title        *uiText `json:"title"`
		Text         *uiText `json:"text"`
	} `json:"attributes"`
	Messages []uiText `json:"messages"`
	Meta     struct {
		Label *uiText `json:"label"`
	} `json:"meta"`
}

// uiText is Kratos' ui text: a message or a label.
type uiText struct {
	ID   int64  `json:"id"`
	Text string `json:"text"`
	Type string `json:"type"` // info, error, success
}

// Label is what a person reads next to the node.
func (n node) Label() string {
	switch {
	case n.Meta.Label != nil:
		return n.Meta.Label.Text
	case n.Attributes.Title != nil:
		return n.Attributes.Title.Text
	}
	return n.Attributes.Name
}

// ValueString is the input's value as the form sends it back.
func (n node) ValueString() string {
	switch v := n.Attributes.Value.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// Button tells a submit input, rendered as a button with its label.
func (n node) Button() bool {
	return n.Type == "input" && (n.Attributes.Type == "submit" || n.Attributes.Type == "button")
}

// flow serves /ui/<kind>: without ?flow= it sends the browser to Kratos to
// create one; with it, it renders the flow.
func (u *UI) flow(w http.ResponseWriter, r *http.Request, kind string) {
	id := r.URL.Query().Get("flow")
	if id == "" {
		u.restart(w, r, kind, r.URL.Query().Get("return_to"))
		return
	}
	var f flow
	status, kratosErr, err := u.get(r.Context(), "self-service/"+kind+"/flows?id="+url.QueryEscape(id), r.Header.Get("Cookie"), &f)
	switch {
	case err != nil:
		u.log().Error("demo ui: fetching the flow failed", "flow", kind, "err", err)
		render(w, http.StatusBadGateway, "message", page{Title: "Kratos is unreachable", Message: "The flow could not be fetched from Kratos; see the log."})
		return
	case status == http.StatusOK:
	case status == http.StatusNotFound, status == http.StatusGone, status == http.StatusForbidden:
		// Unknown, expired, or not this browser's (its CSRF cookie): a new
		// flow, keeping where the person was going.
		u.log().Info("demo ui: flow not usable, creating a new one", "flow", kind, "status", status, "error_id", kratosErr.ID)
		u.restart(w, r, kind, r.URL.Query().Get("return_to"))
		return
	case status == http.StatusUnauthorized && kind == "settings":
		u.restart(w, r, "login", "")
		return
	default:
		u.log().Error("demo ui: Kratos refused the flow", "flow", kind, "status", status, "error_id", kratosErr.ID)
		render(w, http.StatusBadGateway, "message", page{Title: "Kratos refused the flow", Message: kratosErr.describe(status)})
		return
	}
	p := flowKinds[kind]
	other := ""
	if p.Other != "" {
		other = "/ui/" + p.Other
		if f.ReturnTo != "" {
			other += "?return_to=" + url.QueryEscape(f.ReturnTo)
		}
	}
	render(w, http.StatusOK, "flow", page{Title: p.Title, Intro: p.Intro, Flow: &f, Other: other, OtherText: p.OtherText})
}

// restart sends the browser to Kratos to create a new flow of kind.
func (u *UI) restart(w http.ResponseWriter, r *http.Request, kind, returnTo string) {
	target := "/self-service/" + kind + "/browser"
	q := url.Values{}
	if returnTo != "" {
		q.Set("return_to", returnTo)
	}
	if aal := r.URL.Query().Get("aal"); aal != "" && kind == "login" {
		q.Set("aal", aal)
	}
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// errorPage serves /ui/error?id=, Kratos' error_ui_url.
func (u *UI) errorPage(w http.ResponseWriter, r *http.Request) {
	var e struct {
		Error kratosError `json:"error"`
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		render(w, http.StatusBadRequest, "message", page{Title: "Error", Message: "No error id in the URL."})
		return
	}
	status, _, err := u.get(r.Context(), "self-service/errors?id="+url.QueryEscape(id), "", &e)
	if err != nil || status != http.StatusOK {
		u.log().Error("demo ui: fetching the error failed", "status", status, "err", err)
		render(w, http.StatusBadGateway, "message", page{Title: "Error", Message: "The error could not be fetched from Kratos."})
		return
	}
	render(w, http.StatusOK, "message", page{Title: "Error", Message: e.Error.describe(int(e.Error.Code))})
}

// kratosError is the error object of Kratos' answers.
type kratosError struct {
	ID      string `json:"id"`
	Code    int64  `json:"code"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (e kratosError) describe(status int) string {
	var parts []string
	for _, s := range []string{e.Message, e.Reason} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("Kratos answered %d.", status)
	}
	return strings.Join(parts, " ")
}

// get calls Kratos' public API with the browser's cookies and decodes a 200
// answer into out, any other into the returned kratosError.
func (u *UI) get(ctx context.Context, path, cookie string, out any) (int, kratosError, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.KratosPublic+path, nil)
	if err != nil {
		return 0, kratosError{}, err
	}
	req.Header.Set("Accept", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	client := u.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, kratosError{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, kratosError{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error kratosError `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return resp.StatusCode, e.Error, nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return resp.StatusCode, kratosError{}, errors.New("the answer is not the JSON expected: " + err.Error())
	}
	return resp.StatusCode, kratosError{}, nil
}

func (u *UI) log() *slog.Logger {
	if u.Log != nil {
		return u.Log
	}
	return slog.Default()
}
