package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/internal/config"
	"github.com/xpra-edge/xpra-edge/internal/sockdir"
	"github.com/xpra-edge/xpra-edge/router"
)

//go:embed dev.toml
var devConfig []byte

// proxyFlags are the command-line settings of `xpra-edge proxy`.
type proxyFlags struct {
	display    string
	binds      []config.Listener
	tcpAuth    string
	unixAuth   string
	socketDir  string
	socketDirs string
	sslCert    string
	sslKey     string
	ssl        string
	configFile string
	adminBind  string
	drain      string
	logLevel   string
	logFormat  string
	dev        bool
	startSess  string
	postgres   string
}

// xpra options that make no sense for xpra-edge but appear in existing
// `xpra proxy` command lines; they are accepted and ignored with a note.
var ignoredXpraFlags = map[string]bool{
	"daemon": true, "mdns": true, "pulseaudio": true, "notifications": true, "dbus-launch": true,
	"dbus-proxy": true, "webcam": true, "speaker": true, "microphone": true, "printing": true,
	"file-transfer": true, "systemd-run": true, "start-via-proxy": true, "html": true, "log-file": true,
	"pidfile": true, "uid": true, "gid": true, "chdir": true,
}

func parseProxyArgs(args []string) (*proxyFlags, []string, error) {
	f := &proxyFlags{}
	var ignored []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			if f.display != "" {
				return nil, nil, fmt.Errorf("unexpected argument %q (the display is already %s)", a, f.display)
			}
			if !strings.HasPrefix(a, ":") {
				return nil, nil, fmt.Errorf("unexpected argument %q (a display looks like :100)", a)
			}
			f.display = a
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takeValue := func() (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("--%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "h", "help":
			return nil, nil, errHelp
		case "dev":
			f.dev = true
		case "bind-tcp", "bind-ssl", "bind-ws", "bind-wss", "bind":
			var v string
			if v, err = takeValue(); err == nil {
				var l config.Listener
				l, err = parseBind(v)
				if name == "bind" && !strings.HasPrefix(l.Bind, "/") {
					err = fmt.Errorf("--bind=%s: give an absolute socket path", l.Bind)
				}
				f.binds = append(f.binds, l)
			}
		case "tcp-auth", "ssl-auth", "ws-auth", "wss-auth":
			f.tcpAuth, err = takeValue()
		case "auth":
			f.unixAuth, err = takeValue()
		case "socket-dir":
			f.socketDir, err = takeValue()
		case "socket-dirs":
			f.socketDirs, err = takeValue()
		case "ssl-cert":
			f.sslCert, err = takeValue()
		case "ssl-key":
			f.sslKey, err = takeValue()
		case "ssl":
			f.ssl, err = takeValue()
		case "config":
			f.configFile, err = takeValue()
		case "admin-bind":
			f.adminBind, err = takeValue()
		case "drain":
			f.drain, err = takeValue()
		case "log-level":
			f.logLevel, err = takeValue()
		case "log-format":
			f.logFormat, err = takeValue()
		case "proxy-start-sessions":
			f.startSess, err = takeValue()
		case "postgres":
			f.postgres, err = takeValue()
		default:
			if _, ok := ignoredXpraFlags[name]; ok {
				if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !strings.HasPrefix(args[i+1], ":") {
					i++
				}
				ignored = append(ignored, "--"+name)
				continue
			}
			return nil, nil, fmt.Errorf("unknown option --%s (see xpra-edge --help)", name)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return f, ignored, nil
}

var errHelp = errors.New("help requested")

// parseBind reads "ADDR[,auth=MODULE,k=v...]" and "ADDR[,plain=no]".
// Options after auth= that are not listener options belong to the module:
// "0.0.0.0:14501,auth=sqlite,filename=x.sdb".
func parseBind(s string) (config.Listener, error) {
	parts := strings.Split(s, ",")
	l := config.Listener{Bind: strings.TrimSpace(parts[0])}
	if l.Bind == "" {
		return l, fmt.Errorf("--bind-tcp=%q: missing address", s)
	}
	if strings.HasPrefix(l.Bind, ":") {
		l.Bind = "0.0.0.0" + l.Bind
	}
	var authParts []string
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch {
		case k == "auth":
			authParts = append(authParts, v)
		case k == "plain" && len(authParts) == 0:
			b := v == "yes" || v == "true" || v == "on" || v == "1"
			l.Plain = &b
		case len(authParts) > 0:
			authParts = append(authParts, p)
		default:
			return l, fmt.Errorf("--bind-tcp=%s: unknown socket option %q (supported: auth=, plain=)", s, k)
		}
	}
	l.Auth = strings.Join(authParts, ",")
	return l, nil
}

// effectiveConfig merges the file (or the embedded dev defaults) and the
// flags: flags override scalar settings, --bind-tcp adds listeners.
func effectiveConfig(f *proxyFlags) (*config.Config, error) {
	var cfg *config.Config
	var err error
	switch {
	case f.configFile != "":
		cfg, err = config.Load(f.configFile)
	case f.dev:
		cfg, err = config.Parse(devConfig)
	default:
		cfg = &config.Config{}
	}
	if err != nil {
		return nil, err
	}
	if f.display != "" {
		cfg.Display = f.display
	}
	if f.socketDir != "" {
		cfg.SocketDir = f.socketDir
	}
	if f.socketDirs != "" {
		cfg.SocketDirs = strings.Split(f.socketDirs, ":")
	}
	for _, b := range f.binds {
		if b.Auth == "" {
			if strings.HasPrefix(b.Bind, "/") {
				b.Auth = f.unixAuth
			} else {
				b.Auth = f.tcpAuth
			}
		}
		cfg.Listeners = append(cfg.Listeners, b)
	}
	if cfg.Auth == "" && f.tcpAuth != "" && len(f.binds) == 0 {
		cfg.Auth = f.tcpAuth
	}
	if f.sslCert != "" || f.sslKey != "" {
		cfg.TLS.Mode, cfg.TLS.CertFile, cfg.TLS.KeyFile = "static", f.sslCert, f.sslKey
		if cfg.TLS.KeyFile == "" {
			cfg.TLS.KeyFile = f.sslCert // xpra accepts a PEM with both
		}
	} else if f.ssl == "on" && cfg.TLS.Mode == "" {
		cfg.TLS.Mode = "self-signed"
	}
	if f.adminBind != "" {
		cfg.Admin.Bind = f.adminBind
	}
	if f.drain != "" {
		if err := cfg.Shutdown.Drain.UnmarshalText([]byte(f.drain)); err != nil {
			return nil, fmt.Errorf("--drain: %w", err)
		}
	}
	if f.postgres != "" {
		cfg.Store.Postgres = f.postgres
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	if f.logFormat != "" {
		cfg.Log.Format = f.logFormat
	}
	switch strings.ToLower(f.startSess) {
	case "":
	case "yes", "true", "on", "1":
		yes := true
		cfg.Sessions.Start = &yes
	case "no", "false", "off", "0":
		no := false
		cfg.Sessions.Start = &no
	default:
		return nil, fmt.Errorf("--proxy-start-sessions=%s: want yes or no", f.startSess)
	}
	if cfg.Display == "" {
		cfg.Display = ":14500"
	}
	cfg.FillDefaults()
	return cfg, nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.ToLower(c.Format) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// checkAnySystemUser refuses, for a proxy running as root, a network
// listener on a non-loopback address whose module lets the client name any
// system user (allow, none, password), unless any_system_user says so.
func checkAnySystemUser(isRoot bool, l config.Listener, module string) error {
	switch module {
	case "allow", "none", "password":
	default:
		return nil
	}
	if !isRoot || l.AnySystemUser || strings.HasPrefix(l.Bind, "/") || loopbackBind(l.Bind) {
		return nil
	}
	return fmt.Errorf("listener %s: auth %q as root on a non-loopback address lets any client act as any system user "+
		"(its sessions, and sessions started as them); bind a loopback address, use pam/sqlite/toml/multifile, "+
		"or set any_system_user = true on the listener", l.Bind, module)
}

// loopbackBind reports whether a "host:port" listens on loopback only.
func loopbackBind(bind string) bool {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// buildState turns a validated config into the edge's reloadable state.
// users is the fleet's users table (nil on a standalone node).
func buildState(cfg *config.Config, tlsOn bool, users auth.UserSource, log *slog.Logger) (edge.State, error) {
	var st edge.State
	opts := auth.Options{Users: cfg.Users, PAMService: cfg.PAM.Service, Postgres: users}
	for _, l := range cfg.Listeners {
		spec := l.Auth
		if spec == "" {
			spec = cfg.Auth
		}
		sp, err := auth.ParseSpec(spec)
		if err != nil {
			return st, fmt.Errorf("listener %s: %w", l.Bind, err)
		}
		if err := checkAnySystemUser(os.Geteuid() == 0, l, sp.Name); err != nil {
			return st, err
		}
		a, err := auth.New(sp, opts)
		if err != nil {
			return st, fmt.Errorf("listener %s: %w", l.Bind, err)
		}
		plain := true
		if l.Plain != nil {
			plain = *l.Plain
		}
		el := &edge.Listener{Name: l.Bind, Address: l.Bind, Auth: a, AllowPlain: plain, AllowTLS: tlsOn, Accept: l.Accept}
		for _, p := range l.ProxyProtocolFrom {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return st, fmt.Errorf("listener %s: proxy_protocol_from: %w", l.Bind, err)
			}
			el.ProxyFrom = append(el.ProxyFrom, pfx)
		}
		if strings.HasPrefix(l.Bind, "/") {
			el.Network = "unix"
		}
		st.Listeners = append(st.Listeners, el)
	}
	exclude := []string{cfg.Display}
	st.Router = &router.Router{
		Routes:   &router.Table{Routes: cfg.Routes, Strict: cfg.Routing.Strict},
		Sessions: sessionLister{&sockdir.Lister{Dirs: cfg.SocketDirs, UserDirs: true}},
		Exclude:  exclude,
	}
	if cfg.Sessions.StartEnabled(os.Geteuid() == 0) {
		st.Starter = newStarter(cfg.Sessions, log.With("component", "sessions"))
	}
	dialer, err := newBackendDialer(cfg.Backend)
	if err != nil {
		return st, err
	}
	st.Dialer = dialer
	l := cfg.Limits
	st.Limits = edge.Limits{
		SniffTimeout: l.SniffTimeout.Std(), LoginTimeout: l.LoginTimeout.Std(), ChallengeTimeout: l.ChallengeTimeout.Std(),
		BackendHandshakeTimeout: l.BackendTimeout.Std(), IdleTimeout: l.IdleTimeout.Std(), WriteTimeout: l.WriteTimeout.Std(),
		MaxHelloSize: l.MaxHelloSize, MaxPacketSize: l.MaxPacketSize, AuthFailDelay: l.AuthFailDelay.Std(),
		MaxSessions: l.MaxSessions, MaxSessionsPerIP: l.MaxSessionsPerIP, MaxUnauthenticated: l.MaxUnauthenticated,
		MaxUnauthenticatedPerIP: l.MaxUnauthenticatedPerIP, MaxSessionsPerUser: l.MaxSessionsPerUser,
	}
	st.Bans = edge.DefaultBanPolicy
	if cfg.Bans.MaxFailures != nil {
		st.Bans.MaxFailures = *cfg.Bans.MaxFailures
	}
	if cfg.Bans.Window != 0 {
		st.Bans.Window = cfg.Bans.Window.Std()
	}
	if cfg.Bans.BanTime != 0 {
		st.Bans.BanTime = cfg.Bans.BanTime.Std()
	}
	// Process-wide, so set only once the state is sure to be used (a
	// refused reload leaves it as it was).
	auth.AllowWeakDigests(cfg.WeakDigests)
	return st, nil
}

// sessionLister adapts sockdir to the router's interface.
type sessionLister struct{ l *sockdir.Lister }

func (s sessionLister) LiveSessions(uid int) ([]router.Session, error) {
	found, err := s.l.LiveSessions(uid)
	if err != nil {
		return nil, err
	}
	out := make([]router.Session, len(found))
	for i, f := range found {
		out[i] = router.Session{Display: f.Display, Socket: f.Path}
	}
	return out, nil
}

func runProxy(args []string, stdout, stderr io.Writer) int {
	f, ignored, err := parseProxyArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge proxy: %v\n", err)
		return 2
	}
	cfg, err := effectiveConfig(f)
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge proxy: %v\n", err)
		return 1
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "xpra-edge proxy: invalid configuration:\n%v\n", indent(err.Error()))
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	raiseFileLimit(log)
	for _, name := range ignored {
		log.Info("ignoring xpra option that does not apply to xpra-edge", "option", name)
	}
	if f.dev {
		if err := prepareDev(cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "xpra-edge proxy: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p, err := startProxy(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer p.close()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			p.reload(f)
		}
	}()
	drain := 10 * time.Second
	if cfg.Shutdown.Drain != 0 {
		drain = cfg.Shutdown.Drain.Std()
	}
	go func() {
		<-ctx.Done()
		notify(log, daemon.SdNotifyStopping)
	}()
	notify(log, daemon.SdNotifyReady)
	if err := p.srv.Serve(ctx, drain); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// prepareDev creates the dev user database on first run and prints how to
// use the proxy.
func prepareDev(cfg *config.Config, stdout io.Writer) error {
	spec, _ := auth.ParseSpec(cfg.Auth)
	db := spec.Options["filename"]
	if db != "" {
		if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
			return err
		}
		if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
			if code := auth.SQLiteCLI([]string{db, "create"}, io.Discard, os.Stderr); code != 0 {
				return fmt.Errorf("cannot create %s", db)
			}
		}
	}
	addr := cfg.Listeners[0].Bind
	fmt.Fprintf(stdout, `xpra-edge development proxy on %s (plain xpra, TLS, ws and wss on one port)
  users:   %s
  add one: ./bin/xpra-edge sqlite %s add USER PASSWORD nobody nobody tcp://HOST:PORT/
  connect: xpra attach tcp://USER:PASSWORD@%s/
           xpra attach ssl://USER:PASSWORD@%s/ --ssl-ca-certs=%s
  browser: https://%s/ (the portal: sign in, open a session in the HTML5 client)
`, addr, db, db, addr, addr, filepath.Join(cfg.TLS.StateDir, "ca.pem"), addr)
	return nil
}
