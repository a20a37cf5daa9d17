package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
	adminv1 "github.com/ory-ext-authz/ory-ext-authz/proto/ory_ext_authz/admin/v1"
)

// Cache is what the admin API ends and reports on (*authz.Server).
type Cache interface {
	// Invalidate ends the cached JWTs of a session ("session"), an
	// identity ("identity") or all of them ("purge", id ""), here before
	// it returns and on every replica sharing the tier; replicas is how
	// many received it. An error that wraps authz.ErrNotShared means it
	// holds on this replica only.
	Invalidate(ctx context.Context, kind, id string) (replicas int64, err error)
	CacheStats() tokencache.Stats
}

// OryStats counts the whoami calls to Ory (*ory.Client).
type OryStats interface {
	Stats() (calls, errors uint64)
}

// MaxIDLen bounds a session or identity id. Kratos' ids are 36-byte UUIDs;
// the bound leaves room for other id formats while keeping what a caller can
// make the server store (one revocation record per id) small.
const MaxIDLen = 256

// tokenPrefixes start Kratos' session tokens and logout tokens (the two
// prefixes in Kratos v1.3.1's source). An id never starts with one; a value
// that does is a credential given where an id belongs, and must be neither
// stored nor logged.
var tokenPrefixes = []string{"ory_st_", "ory_lo_"}

// The kinds of invalidation, as Cache.Invalidate and Observer name them.
const (
	KindSession  = "session"
	KindIdentity = "identity"
	KindPurge    = "purge"
)

// Kinds lists the kinds of invalidation, for metrics that pre-create a
// series per kind.
func Kinds() []string { return []string{KindSession, KindIdentity, KindPurge} }

// The results of an invalidation, as Observer sees them.
const (
	// ResultOK: it holds here and reached every replica subscribed.
	ResultOK = "ok"
	// ResultInvalid: refused (InvalidArgument): the id cannot be one.
	ResultInvalid = "invalid"
	// ResultLocalOnly: it holds on this replica only (UNAVAILABLE): the
	// shared tier could not carry it to the others.
	ResultLocalOnly = "local_only"
)

// Results lists the results of an invalidation.
func Results() []string { return []string{ResultOK, ResultInvalid, ResultLocalOnly} }

// Observer sees the result of every invalidation and purge (pkg/metrics).
type Observer interface {
	ObserveInvalidation(kind, result string)
}

// Options configure a Server.
type Options struct {
	Cache Cache
	Ory   OryStats
	// Logger gets one info line per invalidation and purge; nil discards.
	Logger *slog.Logger
	// Observer, when set, counts invalidations by kind and result.
	Observer Observer
}

// Server implements adminv1.AdminServer.
type Server struct {
	adminv1.UnimplementedAdminServer
	cache Cache
	ory   OryStats
	log   *slog.Logger
	obs   Observer
}

type nopObserver struct{}

func (nopObserver) ObserveInvalidation(string, string) {}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Cache == nil || o.Ory == nil {
		return nil, errors.New("admin: Cache and Ory are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return &Server{cache: o.Cache, ory: o.Ory, log: o.Logger, obs: o.Observer}, nil
}

// Register registers the admin service on gs, the admin listener's gRPC
// server (server.Options.RegisterAdmin). Never register it on the ext_authz
// server.
func (s *Server) Register(gs grpc.ServiceRegistrar) { adminv1.RegisterAdminServer(gs, s) }

// InvalidateSession voids every cached JWT of the session, on every replica.
func (s *Server) InvalidateSession(ctx context.Context, req *adminv1.InvalidateSessionRequest) (*adminv1.InvalidateSessionResponse, error) {
	n, err := s.invalidateID(ctx, "InvalidateSession", KindSession, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	return &adminv1.InvalidateSessionResponse{Replicas: n}, nil
}

// InvalidateIdentity voids every cached JWT of every session of the
// identity, on every replica.
func (s *Server) InvalidateIdentity(ctx context.Context, req *adminv1.InvalidateIdentityRequest) (*adminv1.InvalidateIdentityResponse, error) {
	n, err := s.invalidateID(ctx, "InvalidateIdentity", KindIdentity, req.GetIdentityId())
	if err != nil {
		return nil, err
	}
	return &adminv1.InvalidateIdentityResponse{Replicas: n}, nil
}

// Purge voids every cached JWT and every remembered 401, on every replica.
func (s *Server) Purge(ctx context.Context, _ *adminv1.PurgeRequest) (*adminv1.PurgeResponse, error) {
	n, err := s.invalidate(ctx, KindPurge, "", "cache purged", nil)
	if err != nil {
		return nil, err
	}
	return &adminv1.PurgeResponse{Replicas: n}, nil
}

// invalidateID is the method of the admin API named method for the id of a
// kind ("session", "identity"): it validates the id (the request's
// <kind>_id), canonicalises a UUID and invalidates it.
func (s *Server) invalidateID(ctx context.Context, method, kind, id string) (int64, error) {
	field := kind + "_id"
	if err := validateID(field, id); err != nil {
		s.obs.ObserveInvalidation(kind, ResultInvalid)
		s.rejected(ctx, method, err)
		return 0, err
	}
	id = CanonicalID(id)
	return s.invalidate(ctx, kind, id, kind+" invalidated", idAttrs(field, id))
}

// invalidate runs one invalidation and logs it. One that holds here but
// could not reach the other replicas is an error (UNAVAILABLE), never a
// silent success: the caller must know the others still serve the session.
func (s *Server) invalidate(ctx context.Context, kind, id, msg string, attrs []slog.Attr) (int64, error) {
	n, err := s.cache.Invalidate(ctx, kind, id)
	attrs = append(append(attrs, slog.Int64("replicas", n)), caller(ctx)...)
	if err != nil {
		s.obs.ObserveInvalidation(kind, ResultLocalOnly)
		s.log.LogAttrs(ctx, slog.LevelWarn, "admin: "+msg+" on this replica only", append(attrs, slog.String("error", err.Error()))...)
		return n, status.Error(codes.Unavailable, err.Error())
	}
	s.obs.ObserveInvalidation(kind, ResultOK)
	s.log.LogAttrs(ctx, slog.LevelInfo, "admin: "+msg, attrs...)
	return n, nil
}

// Stats reports the cache and the calls to Ory since the server started.
func (s *Server) Stats(context.Context, *adminv1.StatsRequest) (*adminv1.StatsResponse, error) {
	cs := s.cache.CacheStats()
	calls, errs := s.ory.Stats()
	return &adminv1.StatsResponse{
		CacheEntries: cs.Entries,
		CacheBytes:   cs.Bytes,
		Hits:         cs.Hits,
		Misses:       cs.Misses,
		NegativeHits: cs.NegativeHits,
		Refreshes:    cs.Refreshes,
		SharedHits:   cs.SharedHits,
		OryCalls:     calls,
		OryErrors:    errs,
	}, nil
}

// validateID returns an InvalidArgument error for an id that cannot be one.
// The message never repeats the id: it may be anything, a credential too.
func validateID(field, id string) error {
	if id == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	if len(id) > MaxIDLen {
		return status.Errorf(codes.InvalidArgument, "%s is %d bytes, more than %d", field, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return status.Errorf(codes.InvalidArgument, "%s: byte %d is not printable ASCII (ids are UUIDs such as the JWT's sid and sub claims)", field, i)
		}
	}
	for _, p := range tokenPrefixes {
		if strings.HasPrefix(id, p) {
			return status.Errorf(codes.InvalidArgument, "%s starts with %q: that is an Ory token, not an id (use the JWT's sid or sub claim, or the id Kratos' admin API lists)", field, p)
		}
	}
	return nil
}

func (s *Server) rejected(ctx context.Context, method string, err error) {
	s.log.LogAttrs(ctx, slog.LevelInfo, "admin: request rejected",
		append([]slog.Attr{slog.String("method", method), slog.String("error", status.Convert(err).Message())}, caller(ctx)...)...)
}

// idAttrs logs a UUID as is (ids are not secrets) and anything else as its
// length and a short hash, since conventions forbid ever logging a
// credential and a non-UUID "id" may be one pasted into the wrong field.
func idAttrs(key, id string) []slog.Attr {
	if IsUUID(id) {
		return []slog.Attr{slog.String(key, id)}
	}
	sum := sha256.Sum256([]byte(id))
	return []slog.Attr{slog.String(key+"_sha256", hex.EncodeToString(sum[:6])), slog.Int(key+"_len", len(id))}
}

// caller names who made the call: the peer address and, over mTLS, the
// client certificate's subject common name.
func caller(ctx context.Context) []slog.Attr {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	attrs := []slog.Attr{slog.String("peer", p.Addr.String())}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.PeerCertificates) > 0 {
		attrs = append(attrs, slog.String("client_cn", ti.State.PeerCertificates[0].Subject.CommonName))
	}
	return attrs
}

// CanonicalID is id as the cache holds it. Kratos writes its session and
// identity ids as lower-case hyphenated UUIDs, and the cache compares ids
// byte for byte, so a UUID in another spelling uuid.Parse reads (upper or
// mixed case, {braces}, urn:uuid:, 32 hex digits without hyphens) becomes that
// form: otherwise it would match nothing while the call succeeds. Any other id
// is kept as it is, since other setups may use other id formats.
func CanonicalID(id string) string {
	if u, err := uuid.Parse(id); err == nil {
		return u.String()
	}
	return id
}

// IsUUID reports whether s has the textual form of a UUID
// (8-4-4-4-12 hex digits), as Kratos' session and identity ids do.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
