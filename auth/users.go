package auth

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Users checks the users declared in the TOML config. A user with a
// plaintext password is checked with hmac on every transport; a user with
// an argon2id or bcrypt password_hash needs the plain password, so it is
// offered the xor digest, on encrypted transports only. An unknown user
// gets a normal hmac challenge and then fails. Options: prompt.
type Users struct {
	base
	users map[string]User
}

var _ Authenticator = (*Users)(nil)

func newUsers(o *optionReader, users []User) (*Users, error) {
	u := &Users{base: readBase(o, "toml", false), users: map[string]User{}}
	for i, x := range users {
		if x.Name == "" {
			return nil, fmt.Errorf("toml users: user #%d has no name", i+1)
		}
		if _, dup := u.users[x.Name]; dup {
			return nil, fmt.Errorf("toml users: user %q is declared twice", x.Name)
		}
		switch {
		case x.Password != "" && x.PasswordHash != "":
			return nil, fmt.Errorf("toml users: user %q has both password and password_hash", x.Name)
		case x.Password == "" && x.PasswordHash == "":
			return nil, fmt.Errorf("toml users: user %q has neither password nor password_hash", x.Name)
		case x.PasswordHash != "":
			if err := checkHashSyntax(x.PasswordHash); err != nil {
				return nil, fmt.Errorf("toml users: user %q: password_hash: %w", x.Name, err)
			}
		}
		x.Displays = slices.Clone(x.Displays)
		x.Env = maps.Clone(x.Env)
		x.SessionOptions = maps.Clone(x.SessionOptions)
		u.users[x.Name] = x
	}
	return u, nil
}

// Begin implements Authenticator.
func (u *Users) Begin(username string, t Transport) Login { return newLogin(u, username, t) }

func (u *Users) mode(username string, t Transport) (mode, error) {
	x, ok := u.users[username]
	if !ok || x.PasswordHash == "" {
		return modeHMAC, nil
	}
	if !t.Encrypted {
		return modeHMAC, &RefusedError{Reason: "this user's password is stored hashed and can only be checked over an encrypted connection (TLS or wss)"}
	}
	return modeXOR, nil
}

func (u *Users) verify(ctx context.Context, username string, p *proof) (Identity, error) {
	x, ok := u.users[username]
	if !ok {
		p.dummyCheck()
		return Identity{}, failed(u.name)
	}
	c := credential{plain: x.Password, hash: x.PasswordHash}
	if ok, err := p.checkStoredCtx(ctx, c); err != nil {
		return Identity{}, fmt.Errorf("%s: %w", u.name, err)
	} else if !ok {
		return Identity{}, failed(u.name)
	}
	return Identity{
		Username:       x.Name,
		UID:            x.UID,
		GID:            x.GID,
		Displays:       slices.Clone(x.Displays),
		Env:            maps.Clone(x.Env),
		SessionOptions: maps.Clone(x.SessionOptions),
	}, nil
}
