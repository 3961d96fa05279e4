package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/fleet"
	"github.com/xpra-edge/xpra-edge/internal/config"
	"github.com/xpra-edge/xpra-edge/internal/wsconn"
	"github.com/xpra-edge/xpra-edge/portal"
)

// newPortal builds the browser portal of [portal]: password logins with
// the listener's own module (unless password_login = false), and single
// sign-on with [portal.oidc].
func newPortal(c config.Portal, log *slog.Logger) (*portal.Portal, error) {
	var methods []portal.Method
	if c.PasswordLogin == nil || *c.PasswordLogin {
		methods = append(methods, &portal.ModuleLogin{})
	}
	if o := c.OIDC; o != nil {
		m, err := portal.NewOIDC(portal.OIDCConfig{
			Issuer: o.Issuer, ClientID: o.ClientID,
			ClientSecretFile: o.ClientSecretFile, ClientSecretEnv: o.ClientSecretEnv,
			RedirectURL: o.RedirectURL, Scopes: o.Scopes,
			UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim,
			AllowedGroups: o.AllowedGroups, GroupDisplays: o.GroupDisplays, LocalSessions: o.LocalSessions,
			CAFile: o.CAFile, Label: o.Label, Timeout: o.Timeout.Std(),
		})
		if err != nil {
			return nil, fmt.Errorf("portal.oidc: %w", err)
		}
		methods = append(methods, m)
	}
	return portal.New(portal.Config{
		Methods:    methods,
		AdminGroup: c.AdminGroup, AdminUsers: c.AdminUsers,
		LoginTTL: c.LoginTTL.Std(), IdleTTL: c.IdleTimeout.Std(), TicketTTL: c.TicketTTL.Std(),
		Logger: log,
	}), nil
}

// proxy is a running `xpra-edge proxy` with what it needs to reload.
type proxy struct {
	srv    *edge.Server
	log    *slog.Logger
	certs  *certs
	admin  *http.Server
	fleet  *fleet.Store  // nil on a standalone node
	store  config.Store  // what fleet was opened with
	member *fleet.Member // the fleet's live state (bans, sessions); nil standalone
}

// users is the fleet's users table, or nil on a standalone node.
func (p *proxy) users() auth.UserSource {
	if p.fleet == nil {
		return nil
	}
	return p.fleet.Users()
}

func newBackendDialer(b config.Backend) (*edge.BackendDialer, error) {
	d := &edge.BackendDialer{Timeout: b.DialTimeout.Std(), WebSocket: wsconn.Dial}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, fmt.Errorf("backend.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend.ca_file: no certificates in %s", b.CAFile)
		}
		d.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return d, nil
}

func startProxy(ctx context.Context, cfg *config.Config, log *slog.Logger) (*proxy, error) {
	p := &proxy{log: log}
	fl, err := openFleet(ctx, cfg.Store, log.With("component", "fleet"))
	if err != nil {
		return nil, err
	}
	p.fleet, p.store = fl, cfg.Store
	if fl != nil {
		m, err := fleet.NewMember(ctx, fl, fleet.MemberOptions{Address: cfg.Store.Address,
			Heartbeat: cfg.Store.Heartbeat.Std(), DeadAfter: cfg.Store.DeadAfter.Std()})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("store.postgres: %w", err)
		}
		p.member = m
	}
	var tlsCfg *tls.Config
	if cfg.TLS.Mode != "" {
		c, err := newCerts(cfg.TLS, p.fleet, log.With("component", "tls"))
		if err != nil {
			p.close()
			return nil, err
		}
		p.certs = c
		tlsCfg = c.tlsConfig()
	}
	st, err := buildState(cfg, tlsCfg != nil, p.users(), log)
	if err == nil {
		err = adoptActivatedSockets(&st, log)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	web := edge.Web{Root: webRoot(cfg), Disable: cfg.Web.Disable, AllowedOrigins: cfg.Web.AllowedOrigins}
	var pt *portal.Portal
	if cfg.Portal.Enable {
		if pt, err = newPortal(cfg.Portal, log); err != nil {
			p.close()
			return nil, err
		}
		web.Portal = pt
	}
	ecfg := edge.Config{
		Display:   cfg.Display,
		SocketDir: cfg.SocketDir,
		State:     st,
		Logger:    log,
		TLS:       tlsCfg,
		Web:       web,
	}
	if p.member != nil {
		ecfg.BanStore, ecfg.Registry = p.member, p.member
	}
	srv, err := edge.New(ecfg)
	if err != nil {
		p.close()
		return nil, err
	}
	if pt != nil {
		pt.Attach(srv)
	}
	p.srv = srv
	// Certificates first: once the port is bound a client may connect
	// (the kernel queues it), and the development CA is on disk by then.
	if p.certs != nil {
		if err := p.certs.start(ctx, srv.Registry()); err != nil {
			p.close()
			return nil, err
		}
	}
	if err := srv.Bind(); err != nil {
		p.close()
		return nil, err
	}
	if cfg.Admin.Bind != "" {
		if err := p.startAdmin(cfg.Admin); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// webRoot is where the HTML5 client is served from: the configured
// directory, else the one Debian's xpra package installs, when present.
func webRoot(cfg *config.Config) string {
	if cfg.Web.Disable {
		return ""
	}
	if cfg.Web.Root != "" {
		return cfg.Web.Root
	}
	if fi, err := os.Stat("/usr/share/xpra/www"); err == nil && fi.IsDir() && !cfg.Web.Disable {
		return "/usr/share/xpra/www"
	}
	return ""
}

func (p *proxy) startAdmin(a config.Admin) error {
	ln, err := net.Listen("tcp", a.Bind)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(p.srv.Registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := p.srv.Health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("store unreachable\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if a.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	p.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := p.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("admin listener", "err", err)
		}
	}()
	p.log.Info("admin listener", "addr", ln.Addr().String(), "pprof", a.Pprof)
	return nil
}

// reload re-reads the configuration; on any error the old one stays.
// Either way it ends by telling systemd READY=1 again.
func (p *proxy) reload(f *proxyFlags) {
	notify(p.log, daemon.SdNotifyReloading)
	defer notify(p.log, daemon.SdNotifyReady)
	cfg, err := effectiveConfig(f)
	if err == nil {
		err = cfg.Validate()
	}
	var st edge.State
	if err == nil && cfg.Store != p.store {
		err = errors.New("[store] (and --postgres) cannot change on reload: restart the node")
	}
	if err == nil {
		st, err = buildState(cfg, p.certs != nil, p.users(), p.log)
	}
	if err == nil && p.certs != nil {
		err = p.certs.reload(cfg.TLS)
	}
	if err == nil {
		err = p.srv.Reload(st)
	}
	if err != nil {
		p.log.Error("reload rejected; the previous configuration stays in force", "err", err)
		return
	}
	p.log.Info("configuration reloaded", "sessions", p.srv.SessionCount())
}

func (p *proxy) close() {
	if p.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = p.admin.Shutdown(ctx)
		cancel()
	}
	if p.certs != nil {
		p.certs.stop()
	}
	if p.fleet != nil {
		p.fleet.Close()
	}
}
