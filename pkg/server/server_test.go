package server_test

import (
	"context"
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
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *ca {
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
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key signed by c.
func (c *ca) issue(t *testing.T, cn string, serial int64, client bool) (certPEM, keyPEM []byte) {
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	// Write and rename, as a secret mount or cert-manager does, so the
	// server never reads a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

// start runs server.Run with TLS from files on loopback; it returns the
// gRPC address.
func start(t *testing.T, files server.TLSFiles) string {
	t.Helper()
	tc, err := server.NewTLSConfig(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{GRPC: gl, HTTP: hl, Authz: noopAuthz{}, ShutdownTimeout: time.Second,
			GRPCOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return gl.Addr().String()
}

// probe makes one health call over a new connection and returns the
// server certificate's serial, or the error.
func probe(t *testing.T, addr string, cfg *tls.Config) (int64, error) {
	t.Helper()
	var serial int64
	cfg = cfg.Clone()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		serial = cs.PeerCertificates[0].SerialNumber.Int64()
		return nil
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return serial, err
}

func TestTLSAndRotation(t *testing.T) {
	dir := t.TempDir()
	root := newCA(t, "root")
	files := server.TLSFiles{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")}
	c, k := root.issue(t, "ory-ext-authz", 100, false)
	write(t, files.Cert, c)
	write(t, files.Key, k)
	addr := start(t, files)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root.pem)
	client := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if serial, err := probe(t, addr, client); err != nil || serial != 100 {
		t.Fatalf("TLS probe: serial %d, err %v", serial, err)
	}
	// A client that does not trust the CA is refused.
	if _, err := probe(t, addr, &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a client without the CA connected")
	}

	// Rotation: new files, no restart; the next connection gets them.
	c2, k2 := root.issue(t, "ory-ext-authz", 200, false)
	write(t, files.Key, k2)
	write(t, files.Cert, c2)
	if serial, err := probe(t, addr, client); err != nil || serial != 200 {
		t.Fatalf("after rotation: serial %d, err %v; want 200", serial, err)
	}
	// A broken file keeps the last good certificate.
	write(t, files.Cert, []byte("not a certificate"))
	if serial, err := probe(t, addr, client); err != nil || serial != 200 {
		t.Fatalf("after a broken write: serial %d, err %v; want the previous 200", serial, err)
	}
}

func TestMTLS(t *testing.T) {
	dir := t.TempDir()
	root, clients, other := newCA(t, "root"), newCA(t, "clients"), newCA(t, "other")
	files := server.TLSFiles{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), ClientCA: filepath.Join(dir, "ca.crt")}
	c, k := root.issue(t, "ory-ext-authz", 1, false)
	write(t, files.Cert, c)
	write(t, files.Key, k)
	write(t, files.ClientCA, clients.pem)
	addr := start(t, files)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root.pem)
	withCert := func(a *ca, serial int64) *tls.Config {
		cp, kp := a.issue(t, "envoy", serial, true)
		pair, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if _, err := probe(t, addr, withCert(clients, 2)); err != nil {
		t.Fatalf("client with a valid certificate: %v", err)
	}
	if _, err := probe(t, addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a client without a certificate connected")
	}
	if _, err := probe(t, addr, withCert(other, 3)); err == nil {
		t.Fatal("a client with a certificate of another CA connected")
	}
	// Rotating the client CA: the other CA's clients get in, the old ones not.
	write(t, files.ClientCA, other.pem)
	if _, err := probe(t, addr, withCert(other, 4)); err != nil {
		t.Fatalf("after CA rotation, client of the new CA: %v", err)
	}
	if _, err := probe(t, addr, withCert(clients, 5)); err == nil {
		t.Fatal("after CA rotation, a client of the old CA connected")
	}
}
