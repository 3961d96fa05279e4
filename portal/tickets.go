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
// carries the portal's login cookie, whose login holds a pending ticket,
// logs in with the ticket; any other keeps the listener's module.
func (p *Portal) TicketAuth(r *http.Request) (auth.Authenticator, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" || !p.store.pending(c.Value, p.cfg.LoginTTL, p.cfg.IdleTTL) {
		return nil, false
	}
	return &ticketAuth{p: p, cookie: c.Value}, true
}

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
		tk, ok := a.p.store.consume(a.cookie, user, match, a.p.cfg.LoginTTL, a.p.cfg.IdleTTL)
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
