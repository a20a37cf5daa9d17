package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// TLSFiles are the PEM files of the gRPC listener's TLS. ClientCA turns on
// mTLS: a client without a certificate signed by one of its CAs is refused.
type TLSFiles struct {
	Cert, Key, ClientCA string
}

// NewTLSConfig returns a server TLS config that re-reads the files whenever
// one of them changes (checked on each new connection), so that certificate
// rotation needs no restart. A change that does not load (a half-written
// file, a key that does not match) keeps the previous certificates and is
// logged.
func NewTLSConfig(files TLSFiles, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &tlsReloader{files: files, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.config(), nil
		},
	}, nil
}

type tlsReloader struct {
	files TLSFiles
	log   *slog.Logger

	mu      sync.Mutex
	current *tls.Config
	stamps  [3]fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func (r *tlsReloader) paths() [3]string {
	return [3]string{r.files.Cert, r.files.Key, r.files.ClientCA}
}

func (r *tlsReloader) stat() [3]fileStamp {
	var s [3]fileStamp
	for i, p := range r.paths() {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			s[i] = fileStamp{fi.ModTime(), fi.Size()}
		}
	}
	return s
}

// config returns the current config, reloading first if a file changed.
func (r *tlsReloader) config() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.stat(); s != r.stamps {
		if err := r.loadLocked(s); err != nil {
			r.log.Error("TLS files changed but do not load; keeping the previous certificates", "error", err.Error())
			r.stamps = s // do not retry on every handshake until they change again
		} else {
			r.log.Info("TLS files reloaded", "cert", r.files.Cert)
		}
	}
	return r.current
}

func (r *tlsReloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked(r.stat())
}

func (r *tlsReloader) loadLocked(stamps [3]fileStamp) error {
	cert, err := tls.LoadX509KeyPair(r.files.Cert, r.files.Key)
	if err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// gRPC clients require ALPN h2.
		NextProtos: []string{"h2"},
	}
	if r.files.ClientCA != "" {
		pem, err := os.ReadFile(r.files.ClientCA)
		if err != nil {
			return fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("--tls-client-ca: no PEM certificate in " + r.files.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	r.current = cfg
	r.stamps = stamps
	return nil
}
