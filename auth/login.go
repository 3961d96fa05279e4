package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"unicode/utf8"
)

// mode is how a Login checks its user.
type mode int

const (
	modeNone mode = iota // no challenge (none)
	modeHMAC             // hmac digest: the module holds the plaintext
	modeXOR              // xor digest: the module needs the plain password (pam, hashes)
)

// checker is what a module gives the shared Login machinery.
type checker interface {
	// moduleName is the module's name for Identity.Module and reasons.
	moduleName() string
	prompt() string
	// mode decides, at challenge time, how username is checked on t. It
	// returns a *RefusedError when the user cannot log in over t.
	mode(username string, t Transport) (mode, error)
	// verify checks the proof and returns the identity.
	verify(ctx context.Context, username string, p *proof) (Identity, error)
}

// proof is what a client showed: for hmac a way to test a candidate
// password against the response, for xor the plain password.
type proof struct {
	kind  mode
	match func(password []byte) bool
	plain []byte
}

// check reports whether password is the one the client proved.
func (p *proof) check(password []byte) bool {
	switch p.kind {
	case modeHMAC:
		return p.match(password)
	case modeXOR:
		return subtle.ConstantTimeCompare(p.plain, password) == 1 && len(password) > 0
	}
	return false
}

// checkStored checks a stored credential: a plaintext password works with
// both hmac and xor, a hash only with xor (the plain password).
func (p *proof) checkStored(c credential) bool {
	if c.hash == "" {
		for _, form := range passwordForms(c.plain) {
			if p.check(form) {
				return true
			}
		}
		return false
	}
	if p.kind != modeXOR || len(p.plain) == 0 {
		return false
	}
	return verifyHash(c.hash, p.plain)
}

// checkStoredCtx is checkStored for modules whose credentials may be
// hashed: waiting for a hash slot is bounded (ErrBusy, or ctx's error).
func (p *proof) checkStoredCtx(ctx context.Context, c credential) (bool, error) {
	if c.hash == "" || p.kind != modeXOR || len(p.plain) == 0 {
		return p.checkStored(c), nil
	}
	return verifyHashCtx(ctx, c.hash, p.plain)
}

// passwordForms are the byte forms a client may key its digest with for
// a stored password: UTF-8 (xpra 6, password files), and latin1 when the
// password is not ASCII but fits latin1 (xpra 3.1 encodes a str password
// as latin1).
func passwordForms(s string) [][]byte {
	forms := [][]byte{[]byte(s)}
	ascii, latin := true, true
	for _, r := range s {
		if r >= 0x80 {
			ascii = false
		}
		if r > 0xff {
			latin = false
		}
	}
	if ascii || !latin || !utf8.ValidString(s) {
		return forms
	}
	l := make([]byte, 0, len(s))
	for _, r := range s {
		l = append(l, byte(r))
	}
	return append(forms, l)
}

// dummyCheck spends about the time of one real check, for users that do
// not exist, and always fails.
func (p *proof) dummyCheck() bool {
	p.check([]byte("\x00no-such-user-password\x00"))
	return false
}

// login is the Login shared by all modules.
type login struct {
	c          checker
	username   string
	t          Transport
	mode       mode
	challenged bool
	finished   bool
	salt       []byte
	digest     string
	saltDigest string
}

var _ Login = (*login)(nil)

func newLogin(c checker, username string, t Transport) *login {
	return &login{c: c, username: username, t: t}
}

// Challenge implements Login.
func (l *login) Challenge(digests, saltDigests []string) (*Challenge, error) {
	if l.challenged || l.finished {
		return nil, errors.New("challenge already sent for this login")
	}
	m, err := l.c.mode(l.username, l.t)
	if err != nil {
		return nil, err
	}
	l.challenged = true
	l.mode = m
	if m == modeNone {
		return nil, nil
	}
	name := l.c.moduleName()
	switch m {
	case modeHMAC:
		l.digest = chooseHMAC(digests)
		if l.digest == "" {
			return nil, &RefusedError{Reason: name + " authentication requires an hmac digest the client does not offer"}
		}
	case modeXOR:
		if !l.t.Encrypted {
			return nil, &RefusedError{Reason: name + " authentication requires an encrypted connection (TLS or wss)"}
		}
		if !offers(digests, DigestXOR) {
			return nil, &RefusedError{Reason: name + " authentication requires the xor digest, which the client does not offer"}
		}
		l.digest = DigestXOR
	default:
		return nil, fmt.Errorf("%s: invalid authentication mode %d", name, m)
	}
	l.saltDigest = chooseHMAC(saltDigests)
	if l.saltDigest == "" {
		return nil, &RefusedError{Reason: "the client offers no hmac salt digest (xor and des salt digests are not accepted)"}
	}
	l.salt = randomBytes(SaltSize)
	p := l.c.prompt()
	if p == "" {
		p = "password"
	}
	return &Challenge{Salt: append([]byte(nil), l.salt...), Digest: l.digest, SaltDigest: l.saltDigest, Prompt: p}, nil
}

// Verify implements Login. response and clientSalt are the client's
// challenge_response and challenge_client_salt, whether they came as str
// or bytes; an empty client salt means the server salt is used alone, as
// xpra 3.1 servers allow.
func (l *login) Verify(ctx context.Context, response, clientSalt []byte) (Identity, error) {
	if l.finished {
		return Identity{}, fmt.Errorf("%w: this login was already verified", ErrFailed)
	}
	if !l.challenged {
		return Identity{}, fmt.Errorf("%w: verify before challenge", ErrFailed)
	}
	l.finished = true
	serverSalt := l.salt
	l.salt = nil
	if l.mode == modeNone {
		return l.finish(l.c.verify(ctx, l.username, &proof{kind: modeNone}))
	}
	if len(response) == 0 {
		return Identity{}, fmt.Errorf("%w: empty challenge response", ErrFailed)
	}
	salt := serverSalt
	if len(clientSalt) > 0 {
		var err error
		salt, err = combineSalt(l.saltDigest, clientSalt, serverSalt)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %w", ErrFailed, err)
		}
	}
	if !globalUsedSalts.add(salt) {
		return Identity{}, fmt.Errorf("%w: a salt was used twice", ErrFailed)
	}
	p := &proof{kind: l.mode}
	switch l.mode {
	case modeHMAC:
		digest := l.digest
		p.match = func(password []byte) bool {
			if len(password) == 0 {
				return false
			}
			want, err := hmacHex(digest, password, salt)
			return err == nil && equalHex(want, response)
		}
	case modeXOR:
		p.plain = xorPad(response, salt)
		defer clear(p.plain)
	}
	return l.finish(l.c.verify(ctx, l.username, p))
}

func (l *login) finish(id Identity, err error) (Identity, error) {
	if err != nil {
		return Identity{}, err
	}
	if id.Username == "" {
		id.Username = l.username
	}
	id.Module = l.c.moduleName()
	return id, nil
}

// failed is the error for a credential that does not match.
func failed(module string) error {
	return fmt.Errorf("%s: %w", module, ErrFailed)
}
