// Package config is xpra-edge's TOML configuration: the schema, strict
// decoding (unknown keys are errors), and validation whose errors name the
// element at fault. A zero value means the default of the package that
// uses the setting (edge.DefaultLimits, edge.DefaultBanPolicy,
// fleet.DefaultHeartbeat, sessions.DefaultMaxPerUser, portal.DefaultLoginTTL,
// ...); config.example.toml documents each one. Only tls.state_dir is filled
// in here (FillDefaults).
//
// It only describes configuration; building servers from it is cmd's job.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/router"
	"github.com/xpra-edge/xpra-edge/tlsconf"
)

// Duration is a time.Duration written as "30s", "5m".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"5m\")", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Config is the whole file.
type Config struct {
	// Display is the proxy's own display; its control socket is
	// <socket_dir>/<hostname>-<display without colon>.
	Display string `toml:"display"`
	// SocketDir is where control sockets are created.
	SocketDir string `toml:"socket_dir"`
	// SocketDirs are searched for users' local sessions, in addition to
	// each user's $XDG_RUNTIME_DIR/xpra and ~/.xpra.
	SocketDirs []string `toml:"socket_dirs"`
	// Auth is the default authentication module of every listener, in
	// xpra's syntax: "sqlite,filename=users.sdb".
	Auth string `toml:"auth"`
	// WeakDigests lets logins use hmac+sha1 and hmac+md5 ("hmac") when a
	// client offers nothing stronger (old clients only; off by default).
	WeakDigests bool `toml:"weak_digests"`

	Listeners []Listener     `toml:"listener"`
	TLS       TLS            `toml:"tls"`
	Backend   Backend        `toml:"backend"`
	Users     []auth.User    `toml:"user"`
	Routing   Routing        `toml:"routing"`
	Routes    []router.Route `toml:"route"`
	Limits    Limits         `toml:"limits"`
	Bans      Bans           `toml:"bans"`
	Log       Log            `toml:"log"`
	Admin     Admin          `toml:"admin"`
	Shutdown  Shutdown       `toml:"shutdown"`
	PAM       PAM            `toml:"pam"`
	Web       Web            `toml:"web"`
	Sessions  Sessions       `toml:"sessions"`
	Store     Store          `toml:"store"`
	Portal    Portal         `toml:"portal"`
}

// Portal configures the browser portal at "/" of the listeners that serve
// https (the HTML5 client files move to /client/; their other paths keep
// working).
type Portal struct {
	// Enable serves the portal. It needs [tls]: the portal answers over
	// https only (plain http is redirected to https, or refused).
	Enable bool `toml:"enable"`
	// AdminGroup: users in this group (their system groups, or those
	// their login method reports) see the admin view at /admin/.
	AdminGroup string `toml:"admin_group"`
	// AdminUsers see the admin view too.
	AdminUsers []string `toml:"admin_users"`
	// LoginTTL bounds a portal login (default 12h).
	LoginTTL Duration `toml:"login_ttl"`
	// IdleTimeout ends a portal login unused that long (default 1h).
	IdleTimeout Duration `toml:"idle_timeout"`
	// TicketTTL bounds an "open" ticket until the HTML5 client uses it
	// (default 60s).
	TicketTTL Duration `toml:"ticket_ttl"`
	// PasswordLogin shows the password form (the listener's own module)
	// on the login page; default true. false with [portal.oidc]: single
	// sign-on only.
	PasswordLogin *bool `toml:"password_login"`
	// OIDC adds single sign-on with an OpenID provider.
	OIDC *PortalOIDC `toml:"oidc"`
}

// PortalOIDC configures the portal's OpenID Connect login: the
// authorization code flow with PKCE; state, nonce and verifier bound to
// the browser; the ID token verified (signature, issuer, audience,
// expiry, nonce).
type PortalOIDC struct {
	Issuer   string `toml:"issuer"`    // https URL of the provider
	ClientID string `toml:"client_id"` // required
	// The client secret: first line of ClientSecretFile, or the variable
	// ClientSecretEnv; neither: a public client (PKCE only).
	ClientSecretFile string `toml:"client_secret_file"`
	ClientSecretEnv  string `toml:"client_secret_env"`
	// RedirectURL is the callback registered at the provider
	// (https://HOST/login/oidc/callback); default: from the request's host.
	RedirectURL string   `toml:"redirect_url"`
	Scopes      []string `toml:"scopes"` // default ["openid", "profile", "email"]
	// UsernameClaim names the user (default "preferred_username");
	// GroupsClaim lists their groups (default "groups").
	UsernameClaim string `toml:"username_claim"`
	GroupsClaim   string `toml:"groups_claim"`
	// AllowedGroups: only members of one of these log in (empty: anyone
	// the provider signs in).
	AllowedGroups []string `toml:"allowed_groups"`
	// GroupDisplays maps a group to the sessions its members may open
	// (display entries as in a [[user]]'s displays).
	GroupDisplays map[string][]string `toml:"group_displays"`
	// LocalSessions: the user's sessions include the local system user's
	// of the same name (system-wide mode).
	LocalSessions bool     `toml:"local_sessions"`
	CAFile        string   `toml:"ca_file"` // PEM CAs for the provider (default: the system's)
	Label         string   `toml:"label"`   // the login button's text
	Timeout       Duration `toml:"timeout"` // each request to the provider, default 10s
}

// Store makes the node a member of a fleet sharing PostgreSQL
// (docs/FLEET.md). Empty Postgres: a standalone node, nothing changes.
type Store struct {
	// Postgres is a libpq URL ("postgres://user@host:5432/db") or
	// key/value string; its password may instead come from the
	// XPRA_EDGE_PG_PASSWORD environment variable.
	Postgres string `toml:"postgres"`
	// Node names this node in the fleet; default: the host name.
	Node string `toml:"node"`
	// Address is what `xpra-edge list --fleet` shows for this node
	// (informative: its host:port behind the load balancer).
	Address string `toml:"address"`
	// Heartbeat is how often the node records it is alive and its
	// sessions' byte counts (default 5s).
	Heartbeat Duration `toml:"heartbeat"`
	// DeadAfter: the sessions of a node whose heartbeat is older are
	// marked ended by the live nodes (default 30s).
	DeadAfter Duration `toml:"dead_after"`
}

// Enabled reports whether the node is a fleet member.
func (s Store) Enabled() bool { return s.Postgres != "" }

// Sessions configures starting new sessions for users of local-session
// modules (allow, none, password, pam, ldap): system-wide mode.
type Sessions struct {
	// Start starts a session as the user when they have none or ask for
	// one (xpra's --proxy-start-sessions). It needs the proxy to run as
	// root. Unset: on when the proxy runs as root, as xpra's own default
	// (yes, /etc/xpra/conf.d/65_proxy.conf) applies; StartEnabled decides.
	Start *bool `toml:"start"`
	// Xpra is the xpra program used to start sessions.
	Xpra string `toml:"xpra"`
	// Timeout bounds the wait for a started session's socket.
	Timeout Duration `toml:"timeout"`
	// MaxPerUser bounds the live sessions a user may have before the
	// proxy refuses to start another (0: 4; negative: no bound).
	MaxPerUser int `toml:"max_per_user"`
	// AllowedOptions are the start options a client may set in its
	// start-new-session request; empty: the built-in safe list.
	AllowedOptions []string `toml:"allowed_options"`
	// Env names variables passed from the proxy's environment to started
	// sessions ("LC_*" is a prefix); empty: LANG, LANGUAGE, LC_*, TZ.
	Env []string `toml:"env"`
}

// StartEnabled is whether sessions are started: the configured start, else
// on for a proxy running as root (only logins of the modules whose sessions
// are a system user's own, allow, none, password, pam and ldap, ever start one).
func (s Sessions) StartEnabled(isRoot bool) bool {
	if s.Start != nil {
		return *s.Start
	}
	return isRoot
}

// Web configures what listeners serve over HTTP(S).
type Web struct {
	// Root is served at / (xpra's HTML5 client). Default: Debian's
	// /usr/share/xpra/www when it exists.
	Root string `toml:"root"`
	// Disable serves no files (WebSocket connections still work), even
	// when Root is set.
	Disable bool `toml:"disable"`
	// AllowedOrigins may open WebSockets besides the proxy's own pages
	// (an Origin matching the Host); requests without Origin always may.
	AllowedOrigins []string `toml:"allowed_origins"`
}

// Listener is one bound port.
type Listener struct {
	// Bind is "host:port" (TCP) or an absolute path (a unix socket).
	Bind string `toml:"bind"`
	// Auth overrides the default module for this listener.
	Auth string `toml:"auth"`
	// Plain accepts unencrypted xpra and ws; false makes the port TLS-only.
	Plain *bool `toml:"plain"`
	// Accept lists exactly what the port takes, among xpra, ssl, ws, wss,
	// http, https; it overrides plain.
	Accept []string `toml:"accept"`
	// ProxyProtocolFrom are the networks (CIDR) of load balancers whose
	// connections may start with a PROXY protocol v1/v2 header.
	ProxyProtocolFrom []string `toml:"proxy_protocol_from"`
	// AnySystemUser lets the modules that do not check who the user is
	// (allow, none, password: the client names any system user) serve a
	// non-loopback address of a proxy running as root. Off, such a
	// listener is refused: anyone reaching it could use any user's
	// sessions and start commands as them.
	AnySystemUser bool `toml:"any_system_user"`
}

// TLS selects certificates for listeners that accept TLS: tlsconf's own
// configuration (mode "self-signed", "static" or "acme"); an empty mode
// means no TLS.
type TLS = tlsconf.Config

// Backend configures connections to sessions over ssl and wss.
type Backend struct {
	// CAFile is a PEM file of roots to verify ssl/wss backends against;
	// empty means the system roots. There is no way to skip verification.
	CAFile      string   `toml:"ca_file"`
	DialTimeout Duration `toml:"dial_timeout"`
}

// Routing holds route table settings.
type Routing struct {
	// Strict refuses connections that match no route instead of falling
	// back to the user's own sessions.
	Strict bool `toml:"strict"`
}

// Limits, each with the default that applies when it is not set.
type Limits struct {
	MaxSessions      int `toml:"max_sessions"`        // 0: unlimited
	MaxSessionsPerIP int `toml:"max_sessions_per_ip"` // 0: unlimited
	// MaxSessionsPerUser bounds a user's live sessions (in a fleet, on
	// every node together); 0: unlimited.
	MaxSessionsPerUser int `toml:"max_sessions_per_user"`
	MaxUnauthenticated int `toml:"max_unauthenticated"` // default 1024
	// MaxUnauthenticatedPerIP: the same from one client address, default 8.
	MaxUnauthenticatedPerIP int      `toml:"max_unauthenticated_per_ip"`
	MaxHelloSize            int      `toml:"max_hello_size"`    // default 1 MiB
	MaxPacketSize           int      `toml:"max_packet_size"`   // default 16 MiB
	SniffTimeout            Duration `toml:"sniff_timeout"`     // default 3s
	LoginTimeout            Duration `toml:"login_timeout"`     // default 31s
	ChallengeTimeout        Duration `toml:"challenge_timeout"` // default 120s
	BackendTimeout          Duration `toml:"backend_timeout"`   // default 20s
	IdleTimeout             Duration `toml:"idle_timeout"`      // default none
	WriteTimeout            Duration `toml:"write_timeout"`     // default 30s
	AuthFailDelay           Duration `toml:"auth_fail_delay"`   // default 1s
}

// Bans configure brute-force protection.
type Bans struct {
	MaxFailures *int     `toml:"max_failures"` // default 10; 0 disables
	Window      Duration `toml:"window"`       // default 5m
	BanTime     Duration `toml:"ban_time"`     // default 15m
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug, info (default), warn, error
	Format string `toml:"format"` // text (default) or json
}

// Admin is the metrics and profiling listener.
type Admin struct {
	Bind  string `toml:"bind"` // e.g. "127.0.0.1:9100"; empty: none
	Pprof bool   `toml:"pprof"`
}

// Shutdown configures graceful stop.
type Shutdown struct {
	// Drain is how long live sessions may continue after SIGTERM before
	// they are told "server shutdown". Default 10s.
	Drain Duration `toml:"drain"`
}

// PAM configures the pam auth module.
type PAM struct {
	Service string `toml:"service"` // default "login"
}

// Parse decodes TOML strictly.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			var keys []string
			for _, e := range sm.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return nil, fmt.Errorf("unknown key(s): %s", strings.Join(keys, ", "))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("line %d, column %d: %s", row, col, de.Error())
		}
		return nil, err
	}
	return &c, nil
}

// Load reads and parses a file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ErrNoListener is the problem of a configuration with no [[listener]]:
// a file may leave them to the command line (--bind-tcp and friends), so
// check-config reports it as a note, and a start refuses it.
var ErrNoListener = errors.New("listener: at least one [[listener]] (or --bind-tcp) is required")

// DefaultStateDir is where TLS state (the self-signed development CA, ACME
// accounts and certificates) lives when tls.state_dir is not set:
// /var/lib/xpra-edge/tls for root, else $XDG_STATE_HOME/xpra-edge/tls
// (~/.local/state/xpra-edge/tls).
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/xpra-edge/tls"
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "xpra-edge", "tls")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "xpra-edge", "tls")
	}
	return ""
}

// FillDefaults sets what has a default that depends on other settings:
// tls.state_dir for the modes that keep state (self-signed, and acme
// without its own storage).
func (c *Config) FillDefaults() {
	if c.TLS.StateDir == "" && (c.TLS.Mode == "self-signed" || (c.TLS.Mode == "acme" && c.TLS.Storage == "")) {
		c.TLS.StateDir = DefaultStateDir()
	}
}

// Problems lists every validation problem, each naming its element.
func (c *Config) Problems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Display != "" && !strings.HasPrefix(c.Display, ":") {
		add("display: %q must look like \":100\"", c.Display)
	}
	if len(c.Listeners) == 0 {
		errs = append(errs, ErrNoListener)
	}
	for i, l := range c.Listeners {
		name := fmt.Sprintf("listener[%d]", i)
		if l.Bind == "" {
			add("%s.bind: missing", name)
		} else if !strings.HasPrefix(l.Bind, "/") {
			if _, _, err := net.SplitHostPort(l.Bind); err != nil {
				add("%s.bind: %q is not host:port or a socket path", name, l.Bind)
			}
		}
		spec := l.Auth
		if spec == "" {
			spec = c.Auth
		}
		if spec == "" {
			add("%s.auth: no authentication module (set auth here or at the top level; use \"none\" to disable authentication)", name)
		} else if _, err := auth.ParseSpec(spec); err != nil {
			add("%s.auth: %v", name, err)
		}
		for _, a := range l.Accept {
			switch a {
			case "xpra", "ws", "http":
			case "ssl", "wss", "https":
				if c.TLS.Mode == "" {
					add("%s.accept: %q needs [tls]", name, a)
				}
			default:
				add("%s.accept: %q is not one of xpra, ssl, ws, wss, http, https", name, a)
			}
		}
		for _, p := range l.ProxyProtocolFrom {
			if _, err := netip.ParsePrefix(p); err != nil {
				add("%s.proxy_protocol_from: %q is not a CIDR network", name, p)
			}
		}
		if l.Plain != nil && !*l.Plain && c.TLS.Mode == "" && !strings.HasPrefix(l.Bind, "/") {
			add("%s.plain: false needs [tls] (the port would accept nothing)", name)
		}
	}
	if c.TLS.Mode != "" {
		if err := c.TLS.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for i, u := range c.Users {
		name := fmt.Sprintf("user[%d]", i)
		if u.Name == "" {
			add("%s.name: missing", name)
		}
		if u.Password == "" && u.PasswordHash == "" {
			add("%s (%s): password or password_hash is required", name, u.Name)
		}
		if u.Password != "" && u.PasswordHash != "" {
			add("%s (%s): set password or password_hash, not both", name, u.Name)
		}
		rt := &router.Router{}
		for _, d := range u.Displays {
			if _, err := rt.ParseTarget(d); err != nil {
				add("%s (%s).displays: %v", name, u.Name, err)
			}
		}
	}
	t := router.Table{Routes: c.Routes, Strict: c.Routing.Strict}
	if err := t.Validate(); err != nil {
		add("route: %v", err)
	}
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		add("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "", "text", "json":
	default:
		add("log.format: %q is not text or json", c.Log.Format)
	}
	if c.Admin.Bind != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Bind); err != nil {
			add("admin.bind: %q is not host:port", c.Admin.Bind)
		}
	}
	if c.Limits.MaxHelloSize < 0 || c.Limits.MaxPacketSize < 0 || c.Limits.MaxSessions < 0 || c.Limits.MaxSessionsPerIP < 0 || c.Limits.MaxSessionsPerUser < 0 || c.Limits.MaxUnauthenticated < 0 || c.Limits.MaxUnauthenticatedPerIP < 0 {
		add("limits: sizes and counts cannot be negative")
	}
	if p := c.Store.Postgres; p != "" && !strings.HasPrefix(p, "postgres://") && !strings.HasPrefix(p, "postgresql://") && !strings.Contains(p, "=") {
		add("store.postgres: want a postgres:// URL or a key=value connection string")
	}
	if n := c.Store.Node; n != "" && (len(n) > 63 || strings.ContainsAny(n, " \t\n@/:")) {
		add("store.node: %q must be at most 63 characters without blanks, '@', '/' or ':'", n)
	}
	if c.Store.Heartbeat < 0 || c.Store.DeadAfter < 0 {
		add("store.heartbeat, store.dead_after: cannot be negative")
	}
	hb, dead := c.Store.Heartbeat.Std(), c.Store.DeadAfter.Std()
	if hb == 0 {
		hb = 5 * time.Second // fleet.DefaultHeartbeat
	}
	if dead == 0 {
		dead = 30 * time.Second // fleet.DefaultDeadAfter
	}
	if dead < 2*hb {
		add("store.dead_after: must be at least twice store.heartbeat (%v)", hb)
	}
	if c.Portal.Enable && c.TLS.Mode == "" {
		add("portal.enable: the portal needs [tls] (it is served over https only)")
	}
	if c.Portal.Enable && c.Web.Disable {
		add("portal.enable: the portal opens sessions in the HTML5 client, whose files [web] disable = true does not serve")
	}
	if c.Portal.LoginTTL < 0 || c.Portal.IdleTimeout < 0 || c.Portal.TicketTTL < 0 {
		add("portal: durations cannot be negative")
	}
	if o := c.Portal.OIDC; o != nil {
		if !c.Portal.Enable {
			add("portal.oidc: needs portal.enable = true")
		}
		if u, err := url.Parse(o.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			add("portal.oidc.issuer: an https URL is required, got %q", o.Issuer)
		}
		if o.ClientID == "" {
			add("portal.oidc.client_id: required")
		}
		if o.ClientSecretFile != "" && o.ClientSecretEnv != "" {
			add("portal.oidc: client_secret_file and client_secret_env are exclusive")
		}
		if o.Timeout < 0 {
			add("portal.oidc.timeout: cannot be negative")
		}
	}
	if c.Portal.PasswordLogin != nil && !*c.Portal.PasswordLogin && c.Portal.OIDC == nil && c.Portal.Enable {
		add("portal.password_login = false leaves no way to log in without [portal.oidc]")
	}
	if c.Portal.TicketTTL.Std() > 10*time.Minute {
		add("portal.ticket_ttl: at most 10m (a ticket is meant to be used at once)")
	}
	if c.Limits.MaxPacketSize > 256<<20 {
		add("limits.max_packet_size: at most 268435456 (256 MiB)")
	}
	return errs
}

// Validate returns all problems joined, or nil.
func (c *Config) Validate() error {
	return errors.Join(c.Problems()...)
}
