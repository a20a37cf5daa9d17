package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/server"
)

// adminAPI is serve's admin listener, ready for server.Options. The zero
// value (--admin-addr "") disables the admin API.
type adminAPI struct {
	listener net.Listener
	opts     []grpc.ServerOption
	register func(*grpc.Server)
}

// listenAdmin builds the admin API (ory_ext_authz.admin.v1.Admin) of cache
// and ory and opens its listener: --admin-addr, with TLS when
// --admin-tls-cert is set and mTLS when --admin-tls-client-ca is. pkg/server
// serves it on a gRPC server of its own, never on --grpc-addr.
func listenAdmin(ctx context.Context, cfg config.Config, cache admin.Cache, ory admin.OryStats, obs admin.Observer, log *slog.Logger) (adminAPI, error) {
	if cfg.AdminAddr == "" {
		return adminAPI{}, nil
	}
	api, err := admin.New(admin.Options{Cache: cache, Ory: ory, Logger: log, Observer: obs})
	if err != nil {
		return adminAPI{}, err
	}
	var opts []grpc.ServerOption
	if cfg.AdminTLSCert != "" {
		tc, err := server.NewTLSConfig(server.TLSFiles{Cert: cfg.AdminTLSCert, Key: cfg.AdminTLSKey, ClientCA: cfg.AdminTLSClientCA}, log)
		if err != nil {
			// NewTLSConfig names the ext_authz listener's flags.
			return adminAPI{}, fmt.Errorf("admin listener (--admin-tls-cert, --admin-tls-key, --admin-tls-client-ca): %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		return adminAPI{}, fmt.Errorf("--admin-addr: %w", err)
	}
	if cfg.AdminTLSClientCA == "" && !isLoopback(l.Addr()) {
		log.Warn("the admin API listens beyond loopback without mTLS: whoever reaches it can end cached sessions; set --admin-tls-client-ca or keep --admin-addr on 127.0.0.1",
			"admin_addr", l.Addr().String())
	}
	return adminAPI{listener: l, opts: opts, register: func(gs *grpc.Server) { api.Register(gs) }}, nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
