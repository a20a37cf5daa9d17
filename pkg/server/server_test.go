package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/internal/testpki"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// write replaces path as a secret mount or cert-manager does, so the
// server never reads a half-written file.
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	testpki.ReplaceFile(t, path, data)
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
	return servertest.Start(t, server.Options{Authz: noopAuthz{}, ShutdownTimeout: time.Second,
		GRPCOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}}).GRPC
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
	root := testpki.NewCA(t, "root")
	files := server.TLSFiles{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")}
	c, k := root.IssueSerial(t, "ory-ext-authz", 100, false)
	write(t, files.Cert, c)
	write(t, files.Key, k)
	addr := start(t, files)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root.PEM)
	client := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if serial, err := probe(t, addr, client); err != nil || serial != 100 {
		t.Fatalf("TLS probe: serial %d, err %v", serial, err)
	}
	// A client that does not trust the CA is refused.
	if _, err := probe(t, addr, &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a client without the CA connected")
	}

	// Rotation: new files, no restart; the next connection gets them.
	c2, k2 := root.IssueSerial(t, "ory-ext-authz", 200, false)
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
	root, clients, other := testpki.NewCA(t, "root"), testpki.NewCA(t, "clients"), testpki.NewCA(t, "other")
	files := server.TLSFiles{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), ClientCA: filepath.Join(dir, "ca.crt")}
	c, k := root.IssueSerial(t, "ory-ext-authz", 1, false)
	write(t, files.Cert, c)
	write(t, files.Key, k)
	write(t, files.ClientCA, clients.PEM)
	addr := start(t, files)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root.PEM)
	withCert := func(a *testpki.CA, serial int64) *tls.Config {
		cp, kp := a.IssueSerial(t, "envoy", serial, true)
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
	write(t, files.ClientCA, other.PEM)
	if _, err := probe(t, addr, withCert(other, 4)); err != nil {
		t.Fatalf("after CA rotation, client of the new CA: %v", err)
	}
	if _, err := probe(t, addr, withCert(clients, 5)); err == nil {
		t.Fatal("after CA rotation, a client of the old CA connected")
	}
}
