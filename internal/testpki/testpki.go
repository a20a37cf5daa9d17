// Package testpki makes throwaway certificate authorities and certificates
// for TLS and mTLS tests, and JWK Sets for the JWKS tests, and writes them
// as a reloading server expects. Certificates are valid for 127.0.0.1 and
// localhost.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/jwks"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, for a trust pool or a CA file.
	PEM    []byte
	serial atomic.Int64
}

// NewCA makes a CA named name, valid for an hour either side of now.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	c.serial.Store(1)
	return c
}

// Issue returns a PEM certificate and key signed by c, for a server or,
// with client, a client; serials count up.
func (c *CA) Issue(t testing.TB, cn string, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	return c.IssueSerial(t, cn, c.serial.Add(1), client)
}

// IssueSerial is Issue with a chosen serial number, for telling certificates apart.
func (c *CA) IssueSerial(t testing.TB, cn string, serial int64, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, &key.PublicKey, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// Pool is a certificate pool that trusts c, for a tls.Config's RootCAs or ClientCAs.
func (c *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	return pool
}

// KeyPair is Issue as a tls.Certificate, for an in-process server or client.
func (c *CA) KeyPair(t testing.TB, cn string, client bool) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(c.Issue(t, cn, client))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// WriteFile writes data (a PEM certificate, key or CA) to dir/name and
// returns the path, for what reads PEM files: flags, TLS file options.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ReplaceFile replaces path with data atomically, by a write and a rename
// (as a secret mount, a ConfigMap update, cert-manager or an editor does),
// so that a reloading reader never sees half a file.
func ReplaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// KeySet is jwks.Generate(alg, kid), a private JWKS of one new key, and
// its public JWKS.
func KeySet(t testing.TB, alg, kid string) (private, public []byte) {
	t.Helper()
	private, err := jwks.Generate(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	public, err = jwks.Public(private)
	if err != nil {
		t.Fatal(err)
	}
	return private, public
}
