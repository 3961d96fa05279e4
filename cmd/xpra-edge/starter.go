package main

import (
	"context"
	"log/slog"

	"github.com/xpra-edge/xpra-edge/internal/config"
	"github.com/xpra-edge/xpra-edge/internal/sessions"
	"github.com/xpra-edge/xpra-edge/router"
)

// starter adapts sessions.Starter to the edge's SessionStarter.
type starter struct{ s *sessions.Starter }

func newStarter(c config.Sessions, log *slog.Logger) *starter {
	s := &sessions.Starter{XpraPath: c.Xpra, Timeout: c.Timeout.Std(), MaxPerUser: c.MaxPerUser, Log: log}
	if len(c.Env) > 0 { // empty: the starter's default list, as documented
		s.EnvWhitelist = c.Env
	}
	if len(c.AllowedOptions) > 0 {
		s.AllowedOptions = map[string]bool{}
		for _, o := range c.AllowedOptions {
			s.AllowedOptions[o] = true
		}
	}
	return &starter{s: s}
}

func (a *starter) StartSession(ctx context.Context, user string, req map[string]any) (router.Session, error) {
	u, err := sessions.LookupUser(user)
	if err != nil {
		return router.Session{}, err
	}
	var r sessions.Request
	if req != nil {
		if r, err = a.s.RequestFromCaps(req); err != nil {
			return router.Session{}, err
		}
	}
	st, err := a.s.Start(ctx, u, r)
	if err != nil {
		return router.Session{}, err
	}
	return router.Session{Display: st.Display, Socket: st.Socket}, nil
}
