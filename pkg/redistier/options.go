package redistier

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/redis/rueidis"
)

// Defaults of Options.
const (
	DefaultTimeout          = 50 * time.Millisecond
	DefaultChannel          = "ory-ext-authz:invalidate"
	DefaultPrefix           = "oea:"
	DefaultInvalidationTTL  = 24 * time.Hour
	DefaultDialTimeout      = time.Second
	DefaultFailureThreshold = 5
	DefaultMinBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff       = 5 * time.Second
	DefaultWarnEvery        = 10 * time.Second
)

// Options configure a Tier. Only URL and Secrets are required.
type Options struct {
	// URL of Redis or Valkey, parsed by rueidis.ParseURL:
	//   - standalone: redis://host:6379/0, rediss://host:6380 (TLS);
	//   - Sentinel: redis://sentinel1:26379?addr=sentinel2:26379&master_set=mymaster
	//     (the addresses are the sentinels'; the TLS settings apply to the
	//     sentinels too, the credentials only to the master: sentinels are
	//     reached without AUTH);
	//   - Cluster: redis://node1:6379?addr=node2:6379&addr=node3:6379 (one
	//     node is enough: rueidis finds the cluster from any node).
	// Credentials in the URL work but are discouraged: prefer Username and
	// Password, read from a file or the environment. The URL is never
	// logged with its password.
	URL string
	// CAFile (PEM) is trusted for the server's certificate on top of the
	// system roots; CertFile and KeyFile are a client certificate. They
	// need a rediss:// URL.
	CAFile, CertFile, KeyFile string
	// Username and Password for AUTH (ACL user, or requirepass with an
	// empty Username). They override the URL's; never logged.
	Username, Password string
	// Secrets: [0] is current (key names, values), [1], if given, is the
	// previous one, still accepted for reads during a rotation. Each has
	// at least MinSecretLen bytes. See the package doc for rotation.
	Secrets [][]byte
	// Timeout bounds every operation; DefaultTimeout if zero.
	Timeout time.Duration
	// DialTimeout bounds a connection attempt of the background connector
	// and the breaker's probe; DefaultDialTimeout if zero. A connection
	// made on the request path is bounded by Timeout.
	DialTimeout time.Duration
	// Channel is the pub/sub channel of invalidations; DefaultChannel if empty.
	Channel string
	// Prefix starts every key; DefaultPrefix if empty.
	Prefix string
	// InvalidationTTL is how long an invalidation record is kept: set it to
	// the longest JWT lifetime, after which no entry it could void is left.
	// DefaultInvalidationTTL if zero.
	InvalidationTTL time.Duration
	// FailureThreshold consecutive failures open the breaker;
	// DefaultFailureThreshold if zero.
	FailureThreshold int
	// MinBackoff and MaxBackoff bound the time the breaker stays open
	// before a probe, doubling from Min to Max while probes fail.
	MinBackoff, MaxBackoff time.Duration
	// WarnEvery is the least time between two warnings of one kind;
	// DefaultWarnEvery if zero.
	WarnEvery time.Duration
	// Logger gets the rate-limited warnings; slog.Default() if nil.
	Logger *slog.Logger
	// Observer gets metrics; none if nil.
	Observer Observer
	// Now is the wall clock for pause and invalidation times; time.Now if nil.
	Now func() time.Time
}

// withDefaults returns o with the defaults filled in, or an error naming
// the first bad field.
func (o Options) withDefaults() (Options, error) {
	if o.URL == "" {
		return o, errors.New("redistier: URL is required")
	}
	switch n := len(o.Secrets); {
	case n == 0:
		return o, errors.New("redistier: Secrets: at least one secret is required")
	case n > 2:
		return o, fmt.Errorf("redistier: Secrets: %d given, want the current and at most one previous", n)
	}
	setDur := func(d *time.Duration, def time.Duration, name string) error {
		if *d < 0 {
			return fmt.Errorf("redistier: %s: %v is negative", name, *d)
		}
		if *d == 0 {
			*d = def
		}
		return nil
	}
	for _, f := range []struct {
		d    *time.Duration
		def  time.Duration
		name string
	}{
		{&o.Timeout, DefaultTimeout, "Timeout"},
		{&o.DialTimeout, DefaultDialTimeout, "DialTimeout"},
		{&o.InvalidationTTL, DefaultInvalidationTTL, "InvalidationTTL"},
		{&o.MinBackoff, DefaultMinBackoff, "MinBackoff"},
		{&o.MaxBackoff, DefaultMaxBackoff, "MaxBackoff"},
		{&o.WarnEvery, DefaultWarnEvery, "WarnEvery"},
	} {
		if err := setDur(f.d, f.def, f.name); err != nil {
			return o, err
		}
	}
	if o.MaxBackoff < o.MinBackoff {
		return o, fmt.Errorf("redistier: MaxBackoff %v is below MinBackoff %v", o.MaxBackoff, o.MinBackoff)
	}
	if o.FailureThreshold < 0 {
		return o, fmt.Errorf("redistier: FailureThreshold: %d is negative", o.FailureThreshold)
	}
	if o.FailureThreshold == 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.Channel == "" {
		o.Channel = DefaultChannel
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// clientOption turns o into rueidis options. Client-side caching is off:
// values are read once per L1 miss, and a tracking cache would only hold
// ciphertexts in memory twice (rueidis#403 is about bounding it).
func (o Options) clientOption() (rueidis.ClientOption, error) {
	opt, err := rueidis.ParseURL(o.URL)
	if err != nil {
		// A *url.Error quotes the URL, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return opt, fmt.Errorf("redistier: URL: %w", err)
	}
	if o.Username != "" {
		opt.Username = o.Username
	}
	if o.Password != "" {
		opt.Password = o.Password
	}
	if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
		if opt.TLSConfig == nil {
			return opt, errors.New("redistier: CAFile, CertFile and KeyFile need a rediss:// URL")
		}
		if err := o.loadTLS(opt.TLSConfig); err != nil {
			return opt, err
		}
	}
	opt.DisableCache = true
	if opt.ClientName == "" {
		opt.ClientName = "ory-ext-authz"
	}
	opt.Dialer.Timeout = o.DialTimeout
	opt.Dialer.KeepAlive = time.Second
	// A connection that does not answer rueidis' background PING within
	// this is closed, which also ends a subscription on a hung Redis.
	opt.ConnWriteTimeout = max(20*o.Timeout, time.Second)
	if opt.Sentinel.MasterSet != "" {
		opt.Sentinel.TLSConfig = opt.TLSConfig
		opt.Sentinel.Dialer = opt.Dialer
		opt.Sentinel.TopologyRefreshInterval = 5 * time.Second
	}
	return opt, nil
}

func (o Options) loadTLS(c *tls.Config) error {
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return fmt.Errorf("redistier: CAFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("redistier: CAFile %s: no PEM certificate in it", o.CAFile)
		}
		c.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("redistier: CertFile and KeyFile go together")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return fmt.Errorf("redistier: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// redactedURL is the URL for logs, without its password.
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
