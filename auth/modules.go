package auth

import (
	"context"
	"fmt"
)

// base holds what the simple modules share: the name, the prompt and the
// uid=/gid= options.
type base struct {
	name     string
	promptS  string
	uid, gid string
}

func readBase(o *optionReader, name string, ids bool) base {
	b := base{name: name, promptS: o.str("prompt", "password")}
	if ids {
		b.uid = o.str("uid", "")
		b.gid = o.str("gid", "")
	}
	return b
}

func (b *base) moduleName() string { return b.name }
func (b *base) prompt() string     { return b.promptS }

// Name implements Authenticator.
func (b *base) Name() string { return b.name }

// local is the identity of a module whose sessions are the user's own.
func (b *base) local(username string) Identity {
	return Identity{Username: username, UID: b.uid, GID: b.gid, LocalSessions: true}
}

// Allow sends a challenge and accepts any response; the sessions are the
// user's local ones. Options: uid, gid, prompt.
type Allow struct{ base }

var _ Authenticator = (*Allow)(nil)

func newAllow(o *optionReader) *Allow { return &Allow{readBase(o, "allow", true)} }

// Begin implements Authenticator.
func (a *Allow) Begin(username string, t Transport) Login { return newLogin(a, username, t) }

func (a *Allow) mode(string, Transport) (mode, error) { return modeHMAC, nil }

func (a *Allow) verify(_ context.Context, username string, _ *proof) (Identity, error) {
	return a.local(username), nil
}

// None needs no challenge and accepts everyone; the sessions are the
// user's local ones. Options: uid, gid.
type None struct{ base }

var _ Authenticator = (*None)(nil)

func newNone(o *optionReader) *None {
	n := &None{readBase(o, "none", true)}
	return n
}

// Begin implements Authenticator.
func (n *None) Begin(username string, t Transport) Login { return newLogin(n, username, t) }

func (n *None) mode(string, Transport) (mode, error) { return modeNone, nil }

func (n *None) verify(_ context.Context, username string, _ *proof) (Identity, error) {
	return n.local(username), nil
}

// Reject sends a challenge and always fails. Options: prompt.
type Reject struct{ base }

var _ Authenticator = (*Reject)(nil)

func newReject(o *optionReader) *Reject { return &Reject{readBase(o, "reject", false)} }

// Begin implements Authenticator.
func (r *Reject) Begin(username string, t Transport) Login { return newLogin(r, username, t) }

func (r *Reject) mode(string, Transport) (mode, error) { return modeHMAC, nil }

func (r *Reject) verify(_ context.Context, _ string, p *proof) (Identity, error) {
	p.dummyCheck()
	return Identity{}, failed(r.name)
}

// Password checks every user against one password (option value=); the
// sessions are the user's local ones. Options: value (required), uid,
// gid, prompt.
type Password struct {
	base
	password string
}

var _ Authenticator = (*Password)(nil)

func newPassword(o *optionReader) (*Password, error) {
	p := &Password{base: readBase(o, "password", true)}
	v, ok := o.get("value")
	if !ok || v == "" {
		return nil, fmt.Errorf("%w: module password needs a non-empty value= option", ErrSpec)
	}
	p.password = v
	return p, nil
}

// Begin implements Authenticator.
func (p *Password) Begin(username string, t Transport) Login { return newLogin(p, username, t) }

func (p *Password) mode(string, Transport) (mode, error) { return modeHMAC, nil }

func (p *Password) verify(_ context.Context, username string, pr *proof) (Identity, error) {
	if !pr.checkStored(credential{plain: p.password}) {
		return Identity{}, failed(p.name)
	}
	return p.local(username), nil
}
