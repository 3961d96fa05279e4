// Package portal is xpra-edge's browser portal, served on the listeners'
// own port at "/": a login page (the listener's authentication modules,
// and any other login Method, such as OIDC), the user's sessions as the
// router sees them with "open" and "start a new session", logout, and an
// admin view of every live session. "Open" mints a short-lived,
// single-use ticket bound to the user, the chosen session and the
// browser's portal login; xpra's HTML5 client (under /client/) logs in
// with it as its password, and the edge accepts it as that connection's
// login (see edge.Portal).
//
// It imports edge for the types of the proxy it serves; edge never imports
// it: cmd gives the edge the portal as an edge.Portal, as it gives it a
// *tls.Config.
package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/router"
)

// Proxy is what the portal needs of the proxy it serves; *edge.Server
// implements it.
type Proxy interface {
	Banned(remote string) bool
	NoteLoginFailure(remote, listener string)
	NoteLoginOK(module string)
	AuthFailDelay() time.Duration
	UserTargets(id auth.Identity, sni string) ([]router.Target, error)
	CanStart(id auth.Identity) bool
	StartSession(ctx context.Context, id auth.Identity) (router.Target, error)
	Sessions() []edge.SessionInfo
	StopSessionID(id int, reason string) bool
}

var _ Proxy = (*edge.Server)(nil)

// Defaults.
const (
	DefaultLoginTTL  = 12 * time.Hour
	DefaultIdleTTL   = 1 * time.Hour
	DefaultTicketTTL = 60 * time.Second
	// MaxLogins bounds the portal logins held at once (the oldest go
	// first when full).
	MaxLogins = 10000
	// maxLoginsPerUser bounds one user's logins (their oldest go first),
	// so that no one account fills MaxLogins; generous for an account
	// many people share (a class, a kiosk), each browser a login.
	maxLoginsPerUser = 256
	// maxTicketsPerLogin bounds one login's pending tickets.
	maxTicketsPerLogin = 8
	// maxBody bounds every request body the portal reads.
	maxBody = 16 << 10
)

// Config configures a Portal.
type Config struct {
	// Methods are the ways to log in, in the order the login page shows
	// them. Empty: the listener's own module (ModuleLogin).
	Methods []Method
	// AdminGroup: members (Result.Groups: the method's groups, the
	// module's Identity.Groups such as ldap's directory groups, or the
	// system groups of a system user) see the admin view.
	AdminGroup string
	// AdminUsers see the admin view too.
	AdminUsers []string
	// LoginTTL bounds a portal login (default 12h); IdleTTL ends one not
	// used for that long (default 1h).
	LoginTTL, IdleTTL time.Duration
	// TicketTTL bounds a ticket from "open" to its use (default 60 s).
	TicketTTL time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Info tells what the edge knows of a request (edge.RequestInfoOf);
	// tests may replace it.
	Info func(r *http.Request) (edge.RequestInfo, bool)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// SystemGroups returns a system user's groups (default: os/user).
	SystemGroups func(username string) []string
}

// Portal is the portal's handler and ticket checker.
type Portal struct {
	cfg   Config
	log   *slog.Logger
	proxy Proxy
	mux   *http.ServeMux
	store *store
}

var _ edge.Portal = (*Portal)(nil)

// New builds a portal; Attach gives it the proxy before it serves.
func New(cfg Config) *Portal {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LoginTTL <= 0 {
		cfg.LoginTTL = DefaultLoginTTL
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = DefaultIdleTTL
	}
	if cfg.TicketTTL <= 0 {
		cfg.TicketTTL = DefaultTicketTTL
	}
	if cfg.Info == nil {
		cfg.Info = edge.RequestInfoOf
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SystemGroups == nil {
		cfg.SystemGroups = systemGroups
	}
	p := &Portal{cfg: cfg, log: cfg.Logger.With("component", "portal"), store: newStore(cfg.Now)}
	if len(p.cfg.Methods) == 0 {
		p.cfg.Methods = []Method{&ModuleLogin{}}
	}
	for _, m := range p.cfg.Methods {
		// A ModuleLogin told nothing uses the request's listener's module.
		if ml, ok := m.(*ModuleLogin); ok && ml.Module == nil && ml.ModuleOf == nil {
			ml.ModuleOf = p.moduleOf
		}
	}
	p.routes()
	return p
}

// Attach sets the proxy the portal serves (cmd: the *edge.Server built
// with this portal in its Web config).
func (p *Portal) Attach(px Proxy) { p.proxy = px }

func (p *Portal) moduleOf(r *http.Request) (auth.Authenticator, string) {
	info, _ := p.cfg.Info(r)
	return info.Auth, info.Remote
}

// Paths implements edge.Portal.
func (p *Portal) Paths() []string {
	return []string{"/{$}", "/login", "/login/", "/logout", "/open", "/start", "/admin/", "/portal-static/"}
}

// ServeHTTP implements http.Handler.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// randomToken is 32 random bytes, base64url.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// tokenKey is how a secret (a cookie value) is looked up: its SHA-256,
// so a map lookup's timing tells nothing about the secret.
func tokenKey(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }
