// Package admincli is `ory-ext-authz admin`: the command-line client of the
// admin API (pkg/admin) of a running server.
package admincli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/cli"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// Defaults of the CLI, named so that the help text and the code agree.
const (
	// DefaultAddr is serve's default --admin-addr (config.DefaultAdminAddr).
	DefaultAddr    = "127.0.0.1:9003"
	defaultTimeout = 5 * time.Second
)

const command = "ory-ext-authz admin"

// synopsis is what a missing or unknown subcommand shows.
const synopsis = `Usage:
  ory-ext-authz admin invalidate --session ID | --identity ID | --all [flags]
  ory-ext-authz admin stats [--json] [flags]
`

const cliUsage = synopsis + `
Calls the admin API (ory_ext_authz.admin.v1.Admin) of a running
ory-ext-authz serve on its --admin-addr. The admin API is never served on
--grpc-addr, the ext_authz listener Envoy talks to.

  invalidate --session ID    end every cached JWT of the session (the JWT's sid
                             claim, Kratos' session id), for every template and
                             credential kind
  invalidate --identity ID   end every cached JWT of every session of the
                             identity (the JWT's sub claim, Kratos' identity id)
  invalidate --all           end every cached JWT and every remembered 401
  stats                      cache entries and bytes, hits, misses, negative
                             hits, refreshes, whoami calls to Ory and errors

An invalidation takes effect before the command returns: the next Check of
the session asks Ory again, and is denied if Ory now answers 401. Revoke the
session in Ory first (Kratos' admin API, or the logout flow), then invalidate:
the other way round, a Check in between caches the session again.
An id that matches no cached session is not an error.

Exit codes:
  0  done
  1  the server refused (invalid id, or the address is not an admin API)
  2  bad flags, no connection, TLS failure or timeout

Flags (after the subcommand; one or two dashes):
`

// cliOptions is the parsed command line.
type cliOptions struct {
	addr    string
	timeout time.Duration
	tls     cli.TLS
	// invalidate
	session, identity string
	all               bool
	// stats
	json bool
}

// Run runs `ory-ext-authz admin <invalidate|stats> [flags]`; args are the
// arguments after "admin". It follows internal/cli's convention and returns
// the exit code: 0 done, 1 the server refused, 2 usage or connection error.
// -h prints the help to stdout and returns 0. stdin is not read.
func Run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	sub := func(name string) func([]string) error {
		return func(args []string) error { return run(ctx, name, args, stdout, stderr) }
	}
	return cli.Subcommands{
		Command: command, Noun: "subcommand", Synopsis: synopsis,
		Help: func(w io.Writer) error { return cli.Help(w, cliUsage, newFlagSet("", &cliOptions{})) },
		Run:  map[string]func([]string) error{"invalidate": sub("invalidate"), "stats": sub("stats")},
	}.Dispatch(args, stdout, stderr)
}

// run runs the subcommand cmd; notes go to stderr.
func run(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	o, err := parseCLI(cmd, args, stdout, stderr)
	if err != nil {
		return err
	}
	creds, err := o.tls.Credentials()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(creds), grpc.WithUserAgent("ory-ext-authz-admin"))
	if err != nil {
		return fmt.Errorf("--admin-addr %q: %w", o.addr, err)
	}
	defer func() { _ = conn.Close() }()
	client := adminv1.NewAdminClient(conn)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	if cmd == "stats" {
		resp, err := client.Stats(ctx, &adminv1.StatsRequest{})
		if err != nil {
			return callError(o.addr, err)
		}
		if o.json {
			return printStatsJSON(stdout, resp)
		}
		return printStats(stdout, resp)
	}

	var what string
	var replicas interface{ GetReplicas() int64 }
	switch {
	case o.all:
		replicas, err = client.Purge(ctx, &adminv1.PurgeRequest{})
		what = "purged the cache: every cached JWT and remembered 401 is void"
	case o.session != "":
		replicas, err = client.InvalidateSession(ctx, &adminv1.InvalidateSessionRequest{SessionId: o.session})
		what = "invalidated session " + o.session + ": its cached JWTs are void; its next Check asks Ory"
	default:
		replicas, err = client.InvalidateIdentity(ctx, &adminv1.InvalidateIdentityRequest{IdentityId: o.identity})
		what = "invalidated identity " + o.identity + ": the cached JWTs of all its sessions are void; their next Check asks Ory"
	}
	if err != nil {
		return callError(o.addr, err)
	}
	_, err = fmt.Fprintf(stdout, "%s (replicas reached: %d)\n", what, replicas.GetReplicas())
	return err
}

// callError is the error of a failed call: no connection (exit 2) or the
// server's refusal (exit 1).
func callError(addr string, err error) error {
	st := status.Convert(err)
	if st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), authz.ErrNotShared.Error()) {
		// The server invalidated on its own replica but could not pass it
		// on: the call did not fail to reach it, the shared tier did.
		return cli.Refused(fmt.Errorf("%s", st.Message()))
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("cannot reach the admin API at %s (%s): %s", addr, st.Code(), st.Message())
	case codes.Unimplemented:
		return cli.Refused(fmt.Errorf("%s does not serve the admin API (%s): is that --grpc-addr? The admin API is on serve's --admin-addr (default %s)",
			addr, st.Message(), DefaultAddr))
	default:
		return cli.Refused(fmt.Errorf("the server refused: %s: %s", st.Code(), st.Message()))
	}
}

func newFlagSet(cmd string, o *cliOptions) *flag.FlagSet {
	fs := cli.NewFlagSet(command + " " + cmd)
	fs.StringVar(&o.addr, "admin-addr", DefaultAddr, "`address` of serve's admin listener (its --admin-addr)")
	fs.DurationVar(&o.timeout, "timeout", defaultTimeout, "`deadline` for connecting and for the call")
	o.tls.AddFlags(fs, "the admin listener's certificate (serve's --admin-tls-cert)", "admin-addr")
	fs.StringVar(&o.session, "session", "", "invalidate: the session `id` (the JWT's sid claim)")
	fs.StringVar(&o.identity, "identity", "", "invalidate: the identity `id` (the JWT's sub claim)")
	fs.BoolVar(&o.all, "all", false, "invalidate: every cached JWT and remembered 401 (purge)")
	fs.BoolVar(&o.json, "json", false, "stats: print one JSON object instead of a table")
	return fs
}

// parseCLI parses and validates the flags of cmd; notes about the ids go to
// stderr. For -h it prints the help to stdout and returns flag.ErrHelp.
func parseCLI(cmd string, args []string, stdout, stderr io.Writer) (*cliOptions, error) {
	o := &cliOptions{}
	fs := newFlagSet(cmd, o)
	if err := cli.Parse(fs, args, stdout, cliUsage); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := o.validate(cmd, fs.Args(), set); err != nil {
		return nil, cli.Usage(err)
	}
	for _, id := range []*string{&o.session, &o.identity} {
		// The server canonicalises too; doing it here makes the message
		// name the id that was ended.
		if c := admin.CanonicalID(*id); c != *id {
			fmt.Fprintf(stderr, "%s: note: the id is a UUID; sending it as %s, the lower-case form Kratos' ids have\n", command, c)
			*id = c
		}
	}
	if o.session != "" && !admin.IsUUID(o.session) || o.identity != "" && !admin.IsUUID(o.identity) {
		// Not an error: other Ory setups may use other ids. But a typo, or a
		// cookie pasted by mistake, would silently end nothing.
		fmt.Fprintf(stderr, "%s: note: the id is not a UUID; Kratos' session and identity ids (the JWT's sid and sub) are\n", command)
	}
	return o, nil
}

// validate checks what the flag types cannot; set holds the flags given.
func (o *cliOptions) validate(cmd string, rest []string, set map[string]bool) error {
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q: admin %s takes flags only", rest[0], cmd)
	}
	if o.addr == "" {
		return errors.New("--admin-addr: must not be empty")
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", o.timeout)
	}
	if err := o.tls.Validate(); err != nil {
		return err
	}
	switch cmd {
	case "invalidate":
		if set["json"] {
			return errors.New("--json: only for admin stats")
		}
		n := 0
		for _, f := range []string{"session", "identity", "all"} {
			if set[f] {
				n++
			}
		}
		if n != 1 {
			return errors.New("admin invalidate: give exactly one of --session ID, --identity ID or --all")
		}
		if set["session"] && o.session == "" {
			return errors.New("--session: the id must not be empty")
		}
		if set["identity"] && o.identity == "" {
			return errors.New("--identity: the id must not be empty")
		}
		if set["all"] && !o.all {
			return errors.New("--all=false: nothing to do")
		}
	case "stats":
		for _, f := range []string{"session", "identity", "all"} {
			if set[f] {
				return fmt.Errorf("--%s: only for admin invalidate", f)
			}
		}
	}
	return nil
}

// statsJSON is the --json form: the proto's field names, numbers as numbers
// (protojson would print uint64 as strings).
type statsJSON struct {
	CacheEntries uint64 `json:"cache_entries"`
	CacheBytes   uint64 `json:"cache_bytes"`
	Hits         uint64 `json:"hits"`
	Misses       uint64 `json:"misses"`
	NegativeHits uint64 `json:"negative_hits"`
	Refreshes    uint64 `json:"refreshes"`
	SharedHits   uint64 `json:"shared_hits"`
	OryCalls     uint64 `json:"ory_calls"`
	OryErrors    uint64 `json:"ory_errors"`
}

func printStatsJSON(w io.Writer, r *adminv1.StatsResponse) error {
	return json.NewEncoder(w).Encode(statsJSON{
		CacheEntries: r.GetCacheEntries(), CacheBytes: r.GetCacheBytes(),
		Hits: r.GetHits(), Misses: r.GetMisses(), NegativeHits: r.GetNegativeHits(), Refreshes: r.GetRefreshes(),
		SharedHits: r.GetSharedHits(), OryCalls: r.GetOryCalls(), OryErrors: r.GetOryErrors(),
	})
}

func printStats(w io.Writer, r *adminv1.StatsResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name string, v uint64, note string) { fmt.Fprintf(tw, "%s\t%d\t%s\n", name, v, note) }
	row("cache entries", r.GetCacheEntries(), "held now, 401s and invalidated entries not yet evicted included")
	row("cache bytes", r.GetCacheBytes(), humanBytes(r.GetCacheBytes()))
	lookups := r.GetHits() + r.GetMisses() + r.GetNegativeHits()
	row("hits", r.GetHits(), ratio(r.GetHits(), lookups, "of lookups"))
	row("misses", r.GetMisses(), ratio(r.GetMisses(), lookups, "of lookups"))
	row("negative hits", r.GetNegativeHits(), "remembered 401s")
	row("refreshes", r.GetRefreshes(), "background refresh-ahead calls started")
	row("shared hits", r.GetSharedHits(), "misses answered from the shared tier (--redis-url)")
	row("ory calls", r.GetOryCalls(), "whoami calls since start")
	row("ory errors", r.GetOryErrors(), ratio(r.GetOryErrors(), r.GetOryCalls(), "of calls; anything but 200, 401s included"))
	return tw.Flush()
}

func ratio(n, of uint64, what string) string {
	if of == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f%% %s", 100*float64(n)/float64(of), what)
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return ""
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + suffix
}
