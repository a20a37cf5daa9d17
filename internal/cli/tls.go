package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLS is how a gRPC client subcommand (check, admin) connects: plaintext,
// TLS or mTLS, as its --tls-* flags say.
type TLS struct {
	Enabled    bool
	CA         string
	Cert, Key  string
	ServerName string
}

// AddFlags defines --tls, --tls-ca, --tls-cert, --tls-key and
// --tls-server-name on fs. serverCert names the certificate the server
// presents ("the server certificate"), addrFlag the flag of its address.
func (t *TLS) AddFlags(fs *flag.FlagSet, serverCert, addrFlag string) {
	fs.BoolVar(&t.Enabled, "tls", false,
		"connect with TLS, verifying the server against the system roots (implied by any other --tls-* flag)")
	fs.StringVar(&t.CA, "tls-ca", "", "PEM `file` of the CA(s) that signed "+serverCert)
	fs.StringVar(&t.Cert, "tls-cert", "", "PEM client certificate `file` for mTLS (with --tls-key)")
	fs.StringVar(&t.Key, "tls-key", "", "PEM client key `file` for mTLS (with --tls-cert)")
	fs.StringVar(&t.ServerName, "tls-server-name", "",
		"`name` to verify the server certificate against (and send as SNI), if not the host of --"+addrFlag)
}

// Validate checks the flags together and turns TLS on when any --tls-* flag
// but --tls is set.
func (t *TLS) Validate() error {
	if (t.Cert == "") != (t.Key == "") {
		return errors.New("--tls-cert and --tls-key: give both for mTLS, or neither")
	}
	if t.CA != "" || t.Cert != "" || t.ServerName != "" {
		t.Enabled = true
	}
	return nil
}

// Credentials reads the files and returns the transport credentials.
func (t *TLS) Credentials() (credentials.TransportCredentials, error) {
	if !t.Enabled {
		return insecure.NewCredentials(), nil
	}
	// An empty ServerName: gRPC verifies the host of the address.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate found", t.CA)
		}
		cfg.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	// Without --tls-ca, RootCAs stays nil and Go verifies against the system roots.
	return credentials.NewTLS(cfg), nil
}
