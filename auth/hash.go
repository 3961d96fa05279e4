package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// credential is a stored password: plaintext or a hash, never both.
type credential struct {
	plain string
	hash  string
}

// storedCredential classifies a stored password string: an argon2id PHC
// string or a bcrypt hash is a hash, anything else is plaintext.
func storedCredential(s string) credential {
	if isHash(s) {
		return credential{hash: s}
	}
	return credential{plain: s}
}

// isHash reports whether s is an argon2id PHC string or a bcrypt hash.
func isHash(s string) bool {
	return strings.HasPrefix(s, "$argon2id$") || strings.HasPrefix(s, "$2a$") ||
		strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// Limits on argon2id parameters read from a config or database, so a
// stored hash cannot make a login cost unbounded memory or time.
const (
	argonMaxMemoryKiB = 1 << 20 // 1 GiB
	argonMaxTime      = 64
	argonMaxThreads   = 64
)

// Parameters of the argon2id hashes HashPassword makes (RFC 9106's second
// recommended option).
const (
	argonMemoryKiB = 64 * 1024
	argonTime      = 3
	argonThreads   = 4
	argonKeyLen    = 32
	argonSaltLen   = 16
)

// hashSlots bounds the hash checks running at once (argon2id takes tens
// of MiB each).
var hashSlots = make(chan struct{}, max(2, runtime.NumCPU()))

// SlotWait bounds how long a login waits for a hash or PAM check slot;
// past it the login ends with ErrBusy (an "authentication error", which
// bans nobody) instead of queueing for as long as a flood lasts.
var SlotWait = 10 * time.Second

// ErrBusy: every slot stayed taken for SlotWait.
var ErrBusy = errors.New("too many password checks at once, try again later")

// acquireSlot takes a slot of slots, waiting at most SlotWait or until ctx
// ends.
func acquireSlot(ctx context.Context, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(SlotWait)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrBusy
	}
}

// errHash is wrapped by errors about malformed stored hashes.
var errHash = errors.New("malformed password hash")

type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseArgon2id parses "$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>"
// (base64 without padding; padding is tolerated).
func parseArgon2id(s string) (argonParams, error) {
	var p argonParams
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, fmt.Errorf("%w: not an argon2id PHC string", errHash)
	}
	if parts[2] != "v=19" {
		return p, fmt.Errorf("%w: unsupported argon2 version", errHash)
	}
	var seen [3]bool
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, fmt.Errorf("%w: bad argon2 parameter", errHash)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, fmt.Errorf("%w: bad argon2 parameter %s", errHash, k)
		}
		switch k {
		case "m":
			p.memory, seen[0] = uint32(n), true
		case "t":
			p.time, seen[1] = uint32(n), true
		case "p":
			if n > 255 {
				return p, fmt.Errorf("%w: argon2 parallelism too large", errHash)
			}
			p.threads, seen[2] = uint8(n), true
		default:
			return p, fmt.Errorf("%w: unknown argon2 parameter %s", errHash, k)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return p, fmt.Errorf("%w: missing argon2 parameter", errHash)
	}
	if p.time < 1 || p.time > argonMaxTime || p.threads < 1 || p.threads > argonMaxThreads ||
		p.memory < 8*uint32(p.threads) || p.memory > argonMaxMemoryKiB {
		return p, fmt.Errorf("%w: argon2 parameters out of range", errHash)
	}
	dec := func(x string) ([]byte, error) { return base64.RawStdEncoding.DecodeString(strings.TrimRight(x, "=")) }
	var err error
	if p.salt, err = dec(parts[4]); err != nil || len(p.salt) < 8 || len(p.salt) > 1024 {
		return p, fmt.Errorf("%w: bad argon2 salt", errHash)
	}
	if p.key, err = dec(parts[5]); err != nil || len(p.key) < 4 || len(p.key) > 1024 {
		return p, fmt.Errorf("%w: bad argon2 hash", errHash)
	}
	return p, nil
}

// checkHashSyntax tells whether a stored hash can ever be verified.
func checkHashSyntax(h string) error {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		_, err := parseArgon2id(h)
		return err
	case isHash(h):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return fmt.Errorf("%w: %w", errHash, err)
		}
		return nil
	}
	return fmt.Errorf("%w: neither argon2id nor bcrypt", errHash)
}

// verifyHash checks a plain password against an argon2id or bcrypt hash.
// A malformed hash never matches.
func verifyHash(h string, plain []byte) bool {
	ok, _ := verifyHashCtx(context.Background(), h, plain)
	return ok
}

// verifyHashCtx is verifyHash waiting for a slot at most SlotWait (or
// until ctx ends): an error then, not a mismatch.
func verifyHashCtx(ctx context.Context, h string, plain []byte) (bool, error) {
	if err := acquireSlot(ctx, hashSlots); err != nil {
		return false, err
	}
	defer func() { <-hashSlots }()
	return checkHash(h, plain), nil
}

func checkHash(h string, plain []byte) bool {
	if strings.HasPrefix(h, "$argon2id$") {
		p, err := parseArgon2id(h)
		if err != nil {
			return false
		}
		got := argon2.IDKey(plain, p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(got, p.key) == 1
	}
	if isHash(h) {
		return bcrypt.CompareHashAndPassword([]byte(h), plain) == nil
	}
	return false
}

// HashPassword returns an argon2id PHC string for password
// ("$argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>"), as stored by
// `xpra-edge sqlite FILE add --hash` and accepted in password_hash.
func HashPassword(password []byte) string {
	salt := randomBytes(argonSaltLen)
	key := argon2.IDKey(password, salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}
