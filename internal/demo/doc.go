// Package demo is the browser demo of `make run` (internal/cmd/devenv): a
// minimal self-service UI for Kratos' browser flows and a small app behind
// Caddy's forward_auth, which asks ory-ext-authz's forward-auth endpoint
// about every request.
//
// All of it is on one origin, Caddy's (http://127.0.0.1:8080 under `make
// run`), so the cookies Kratos sets reach every page:
//
//	/self-service/*  Kratos' public API (the browser flows), as it is
//	/ui/*            UI: login, registration, settings, error, signed out
//	everything else  App, each request first asked of ory-ext-authz
//
// The UI follows Kratos' UI contract: a page without ?flow= sends the
// browser to Kratos to create the flow (/self-service/<flow>/browser), and
// Kratos sends it back with ?flow=<id>; the page fetches the flow from
// Kratos with the browser's cookies, renders ui.nodes as a form that posts
// to ui.action with ui.method, and shows ui.messages and each node's
// messages. Kratos checks the submission, sets its session cookie and
// redirects to the flow's return_to.
//
// The App verifies the JWT ory-ext-authz set in Authorization against the
// tokenizer template's public keys and shows its claims; its logout revokes
// the session in Kratos' admin API and then calls ory-ext-authz's
// InvalidateSession, in that order, as docs/operations.md recommends.
//
// Nothing here is a product: it is small on purpose, listens on loopback
// only, and never shows a JWT, a session token or a cookie's value.
package demo
