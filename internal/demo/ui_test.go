package demo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev"
	"github.com/ory-ext-authz/ory-ext-authz/internal/kratosdev/kratostest"
)

// TestUIAgainstKratos: the UI's answers that the browser test does not
// walk, against a real Kratos: a page without a flow, an unknown or foreign
// flow, Kratos' error page, an unknown error.
func TestUIAgainstKratos(t *testing.T) {
	k := kratostest.Start(t, kratosdev.Options{})
	ui := (&UI{KratosPublic: k.PublicURL()}).Handler()
	get := func(target, cookie string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		w := httptest.NewRecorder()
		ui.ServeHTTP(w, r)
		return w
	}

	t.Run("no flow: Kratos creates one, return_to and aal kept", func(t *testing.T) {
		w := get("/ui/login?return_to=http%3A%2F%2F127.0.0.1%3A8080%2Fprotected&aal=aal2", "")
		if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther ||
			loc != "/self-service/login/browser?aal=aal2&return_to=http%3A%2F%2F127.0.0.1%3A8080%2Fprotected" {
			t.Fatalf("%d %q", w.Code, loc)
		}
		w = get("/ui/registration", "")
		if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || loc != "/self-service/registration/browser" {
			t.Fatalf("%d %q", w.Code, loc)
		}
	})

	t.Run("unknown flow: a new one", func(t *testing.T) {
		w := get("/ui/login?flow=6f1ad4a2-5f59-4c1e-9d26-0c1c2d9e7b11&return_to=http%3A%2F%2F127.0.0.1%3A8080%2Fprotected", "")
		if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/self-service/login/browser?return_to=") {
			t.Fatalf("%d %q", w.Code, loc)
		}
	})

	t.Run("a flow without its CSRF cookie: a new one", func(t *testing.T) {
		// A browser flow as Kratos makes it for a browser, whose CSRF
		// cookie then does not come with the UI's request.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, k.PublicURL()+"self-service/login/browser", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var f flow
		err = json.NewDecoder(resp.Body).Decode(&f)
		resp.Body.Close()
		if err != nil || f.ID == "" {
			t.Fatalf("creating a flow: %d, %v", resp.StatusCode, err)
		}
		id := f.ID
		w := get("/ui/login?flow="+id, "")
		if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || loc != "/self-service/login/browser" {
			t.Fatalf("%d %q: %s", w.Code, loc, w.Body.String())
		}
	})

	t.Run("error page", func(t *testing.T) {
		w := get("/ui/error?id=stub:500", "")
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "This is a stub error.") {
			t.Fatalf("%d: %s", w.Code, w.Body.String())
		}
		if w := get("/ui/error", ""); w.Code != http.StatusBadRequest {
			t.Fatalf("no id: %d", w.Code)
		}
		if w := get("/ui/error?id=6f1ad4a2-5f59-4c1e-9d26-0c1c2d9e7b11", ""); w.Code != http.StatusBadGateway {
			t.Fatalf("unknown id: %d", w.Code)
		}
	})
}
