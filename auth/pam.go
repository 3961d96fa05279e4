package auth

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// PAM checks the plain password with PAM (service= option, default the
// configured PAMService or "login") and the account (check-account=,
// default yes). PAM needs the plain password, so it uses the xor digest
// and is offered only on encrypted transports or unix sockets; the
// sessions are the user's local ones, with UID/GID (numbers as strings)
// from the password database. Options: service, check-account, prompt.
type PAM struct {
	base
	service      string
	checkAccount bool
}

var _ Authenticator = (*PAM)(nil)

// pamSlots bounds the PAM checks running at once.
var pamSlots = make(chan struct{}, 8)

// pamCheckFunc is pamCheck (a variable for tests).
var pamCheckFunc = pamCheck

func newPAM(o *optionReader, defService string) (*PAM, error) {
	if defService == "" {
		defService = "login"
	}
	p := &PAM{base: readBase(o, "pam", false)}
	p.service = o.str("service", defService)
	if p.service == "" {
		return nil, fmt.Errorf("%w: module pam needs a non-empty service", ErrSpec)
	}
	var err error
	if p.checkAccount, err = o.boolean("check-account", true); err != nil {
		return nil, err
	}
	if !pamAvailable {
		return nil, fmt.Errorf("pam: this binary was built without PAM support (cgo)")
	}
	if err := pamLoad(); err != nil {
		return nil, fmt.Errorf("pam: %w", err)
	}
	return p, nil
}

// Begin implements Authenticator.
func (p *PAM) Begin(username string, t Transport) Login { return newLogin(p, username, t) }

func (p *PAM) mode(_ string, t Transport) (mode, error) {
	if !t.Encrypted {
		return modeXOR, &RefusedError{Reason: "pam authentication requires an encrypted connection (TLS or wss)"}
	}
	return modeXOR, nil
}

func (p *PAM) verify(ctx context.Context, username string, pr *proof) (Identity, error) {
	if pr.kind != modeXOR || len(pr.plain) == 0 || username == "" {
		return Identity{}, failed(p.name)
	}
	if err := ctx.Err(); err != nil {
		return Identity{}, fmt.Errorf("pam: %w", err)
	}
	// Root and, for a proxy running as root, system accounts (below
	// UID_MIN) never log in: refused before PAM is asked, with the answer
	// a wrong password gets (a right root password must not tell more).
	// An unknown name still goes to PAM, which fails it as slowly as a
	// wrong password.
	u, lookupErr := user.Lookup(username)
	if lookupErr == nil {
		if uid, err := strconv.Atoi(u.Uid); err != nil || Unreachable(uid, os.Geteuid() == 0) {
			return Identity{}, fmt.Errorf("pam: %w: uid %s is root or a system account", ErrFailed, u.Uid)
		}
	}
	// At most len(pamSlots) PAM conversations at once (modules may fork
	// helpers or sleep seconds on a failure); a login waits for one at most
	// SlotWait. The slot is held until PAM returns, even when the login
	// gave up waiting for it.
	if err := acquireSlot(ctx, pamSlots); err != nil {
		return Identity{}, fmt.Errorf("pam: %w", err)
	}
	// PAM may sleep seconds on a failure; give up waiting with ctx.
	pw := append([]byte(nil), pr.plain...)
	done := make(chan error, 1)
	go func() {
		defer func() { <-pamSlots }()
		defer clear(pw)
		done <- pamCheckFunc(p.service, username, pw, p.checkAccount)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("pam: %w", ctx.Err())
	}
	if err != nil {
		return Identity{}, fmt.Errorf("pam: %w: %w", ErrFailed, err)
	}
	if lookupErr != nil {
		return Identity{}, fmt.Errorf("pam: %w: user not in the password database", ErrFailed)
	}
	return Identity{Username: username, UID: u.Uid, GID: u.Gid, LocalSessions: true}, nil
}
