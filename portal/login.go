package portal

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
)

// Result is who a login method says logged in.
type Result struct {
	// Identity is what an xpra login of the same user yields: the user
	// name, the module (for logs and metrics: "portal:sqlite", "oidc"),
	// the sessions (Displays, LocalSessions) and the uid for system-wide
	// mode. The portal lists and opens exactly the sessions the router
	// finds for it.
	Identity auth.Identity
	// Groups the user is in (the admin view needs Config.AdminGroup among
	// them); a method fills what it knows (OIDC's group claim). When the
	// login starts, the portal adds the groups the module vouched for
	// (Identity.Groups: LDAP's directory groups with groups-base=) and,
	// for names that are system users', the system groups of that user.
	Groups []string
}

// Method is one way of logging in to the portal. Implement FormMethod
// (a user name and password typed in the login form) or RedirectMethod
// (the browser is sent to an identity provider and comes back).
type Method interface {
	// Name names the method in URLs (/login/NAME) and logs: lower case
	// letters, digits and '-'.
	Name() string
	// Label is the text of its button or form heading on the login page.
	Label() string
}

// FormMethod checks a user name and password typed in the login form.
// The portal bounds the request, checks its CSRF token, refuses banned
// addresses first, and counts a failure (an error wrapping
// auth.ErrFailed) toward the address's ban, as an xpra login does.
type FormMethod interface {
	Method
	CheckPassword(ctx context.Context, r *http.Request, username, password string) (Result, error)
}

// RedirectMethod logs in through an identity provider (OIDC).
//
// GET /login/NAME calls Begin and redirects the browser to the URL it
// returns; the portal keeps the returned Flow server-side for FlowTTL,
// bound to this browser by a cookie of its own (SameSite=Lax: the
// provider's redirect back is a cross-site navigation, which a Strict
// cookie would not survive). GET /login/NAME/callback calls Finish with
// that Flow (at most once: it is deleted first); on success the portal
// starts the login, sets its session cookie and sends the browser to "/"
// through a same-site page (a Strict cookie set in the answer to a
// cross-site navigation is not sent on the redirect that follows it).
type RedirectMethod interface {
	Method
	// Begin returns where to send the browser and what the callback needs
	// (state, nonce, PKCE verifier). callbackURL is this method's
	// absolute callback address as the browser sees it.
	Begin(ctx context.Context, callbackURL string) (redirectURL string, flow Flow, err error)
	// Finish checks the callback request (its state, code...) against
	// flow and returns who logged in. An error wrapping auth.ErrFailed is
	// a refused login (counted toward bans); others are the method's own
	// trouble.
	Finish(ctx context.Context, r *http.Request, callbackURL string, flow Flow) (Result, error)
}

// Flow is what a RedirectMethod keeps between Begin and Finish.
type Flow map[string]string

// FlowTTL bounds a redirect login from Begin to Finish.
const FlowTTL = 10 * time.Minute

// ModuleLogin is the FormMethod of the listener's own authentication
// module (sqlite, toml users, pam, multifile, ldap...): the password is
// checked by the module exactly as an xpra login's would be, over an
// encrypted transport (the portal answers only over TLS).
type ModuleLogin struct {
	// Module, when set, is used instead of the request's listener's.
	Module auth.Authenticator
	// ModuleOf finds the listener's module of a request (edge's
	// RequestInfoOf); used when Module is nil.
	ModuleOf func(r *http.Request) (auth.Authenticator, string)
}

// Name implements Method.
func (m *ModuleLogin) Name() string { return "password" }

// Label implements Method.
func (m *ModuleLogin) Label() string { return "Sign in" }

// CheckPassword implements FormMethod.
func (m *ModuleLogin) CheckPassword(ctx context.Context, r *http.Request, username, password string) (Result, error) {
	a, remote := m.Module, ""
	if m.ModuleOf != nil {
		var la auth.Authenticator
		la, remote = m.ModuleOf(r)
		if a == nil {
			a = la
		}
	}
	if a == nil {
		return Result{}, &auth.RefusedError{Reason: "no authentication module on this listener"}
	}
	id, err := PasswordLogin(ctx, a, username, password, auth.Transport{Kind: "https", Encrypted: true, Remote: remote})
	if err != nil {
		return Result{}, err
	}
	return Result{Identity: id}, nil
}

// PasswordLogin runs one login of a module with a known password, as an
// xpra client answering the module's challenge would (hmac or xor: the
// transport is encrypted).
func PasswordLogin(ctx context.Context, a auth.Authenticator, username, password string, t auth.Transport) (auth.Identity, error) {
	if username == "" || password == "" {
		return auth.Identity{}, errEmptyCredentials
	}
	l := a.Begin(username, t)
	offered := []string{"hmac+sha512", "hmac+sha384", "hmac+sha256", auth.DigestXOR}
	ch, err := l.Challenge(offered, offered[:3])
	if err != nil {
		return auth.Identity{}, err
	}
	if ch == nil {
		return l.Verify(ctx, nil, nil)
	}
	resp, salt, err := auth.Respond([]byte(password), *ch, true)
	if err != nil {
		return auth.Identity{}, err
	}
	return l.Verify(ctx, resp, salt)
}

var errEmptyCredentials = errors.Join(auth.ErrFailed, errors.New("empty user name or password"))
