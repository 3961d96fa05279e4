package portal

import (
	"context"
	"fmt"
	"net/http"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/router"
)

// TicketModule is the module name a ticket login reports (logs, metrics).
const TicketModule = "portal-ticket"

// TicketAuth implements edge.Portal: a WebSocket upgrade request that
// carries the login cookie of a live portal login logs in with a ticket
// of that login; any other keeps the listener's module. A browser signed
// in to the portal opens sessions from it: when its login holds no live
// ticket (one used already, or expired, as when the HTML5 client's
// "Connect" retries the ticket it kept), the connection is refused with
// that reason and no failure is counted, since no password was guessed
// (a ticket is 256 random bits bound to this cookie). A ticket that does
// not match while one is pending is a failure, as any wrong password.
func (p *Portal) TicketAuth(r *http.Request) (auth.Authenticator, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" || !p.store.live(c.Value, p.cfg.LoginTTL, p.cfg.IdleTTL) {
		return nil, false
	}
	return &ticketAuth{p: p, cookie: c.Value}, true
}

// errNoTicket refuses a connection of a browser signed in to the portal
// whose login holds no live ticket.
var errNoTicket = &auth.RefusedError{Reason: "this browser is signed in to the portal and holds no ticket (used or expired): open the session from the portal again"}

// ticketAuth checks tickets of one browser login (the cookie the
// WebSocket upgrade carried).
type ticketAuth struct {
	p      *Portal
	cookie string
}

func (a *ticketAuth) Name() string { return TicketModule }

func (a *ticketAuth) Begin(username string, t auth.Transport) auth.Login {
	tl := &ticketLogin{}
	tl.Login = auth.NewSecretLogin(TicketModule, username, t, func(_ context.Context, user string, match func([]byte) bool) (auth.Identity, error) {
		tk, pending, ok := a.p.store.consume(a.cookie, user, match, a.p.cfg.LoginTTL, a.p.cfg.IdleTTL)
		if !ok && !pending {
			return auth.Identity{}, errNoTicket
		}
		if !ok {
			return auth.Identity{}, fmt.Errorf("%s: %w: no pending ticket of this portal login matches", TicketModule, auth.ErrFailed)
		}
		defer clear(tk.secret)
		tl.target, tl.ok = tk.target, true
		a.p.log.Info("ticket used", "user", tk.user, "display", displayName(tk.target))
		return auth.Identity{Username: tk.user, Module: TicketModule}, nil
	})
	return tl
}

// ticketLogin is an edge.BoundLogin: its success names the session.
type ticketLogin struct {
	auth.Login
	target router.Target
	ok     bool
}

var _ edge.BoundLogin = (*ticketLogin)(nil)

func (l *ticketLogin) Target() (router.Target, bool) { return l.target, l.ok }
