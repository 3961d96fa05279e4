package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
)

// SaltSize is the length of the server salt in every challenge (xpra's
// digest.get_salt default).
const SaltSize = 64

// Digest names as they appear in the challenge packet.
const (
	DigestXOR = "xor"
	// DigestHMAC is xpra 3.1's legacy name for hmac+md5.
	DigestHMAC = "hmac"
)

// hmacPreference is xpra's order, strongest first; "hmac" is md5.
var hmacPreference = []string{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5", DigestHMAC}

// ErrDigest is wrapped when a digest is unknown or not allowed.
var ErrDigest = errors.New("unsupported digest")

func hashFor(digest string) func() hash.Hash {
	switch digest {
	case "hmac+sha512":
		return sha512.New
	case "hmac+sha384":
		return sha512.New384
	case "hmac+sha256":
		return sha256.New
	case "hmac+sha224":
		return sha256.New224
	case "hmac+sha1":
		return sha1.New
	case "hmac+md5", DigestHMAC:
		return md5.New
	}
	return nil
}

// weakDigests allows hmac+sha1 and hmac+md5 ("hmac"): off by default.
var weakDigests atomic.Bool

// AllowWeakDigests lets logins use hmac+sha1 and hmac+md5 (xpra's "hmac")
// when a client offers nothing stronger: for old clients only. xpra 3.1.3,
// xpra 6.x and their HTML5 clients all offer the sha2 family.
func AllowWeakDigests(on bool) { weakDigests.Store(on) }

// weak reports whether a digest is one AllowWeakDigests governs.
func weak(d string) bool { return d == "hmac+sha1" || d == "hmac+md5" || d == DigestHMAC }

// chooseHMAC returns the strongest hmac digest in offered, or "" (md5 and
// sha1 only with AllowWeakDigests).
func chooseHMAC(offered []string) string {
	for _, d := range hmacPreference {
		if weak(d) && !weakDigests.Load() {
			continue
		}
		for _, o := range offered {
			if strings.TrimSpace(o) == d {
				return d
			}
		}
	}
	return ""
}

func offers(offered []string, d string) bool {
	for _, o := range offered {
		if strings.TrimSpace(o) == d {
			return true
		}
	}
	return false
}

// hmacHex is xpra's gendigest for hmac digests: lowercase hex of
// HMAC-H(key, msg), as ASCII bytes.
func hmacHex(digest string, key, msg []byte) ([]byte, error) {
	h := hashFor(digest)
	if h == nil {
		return nil, fmt.Errorf("%w: %q", ErrDigest, digest)
	}
	m := hmac.New(h, key)
	m.Write(msg)
	sum := m.Sum(nil)
	out := make([]byte, hex.EncodedLen(len(sum)))
	hex.Encode(out, sum)
	return out, nil
}

// xorPad is xpra's gendigest("xor", a, b): a XOR b, b padded with zeros
// or cut to the length of a.
func xorPad(a, b []byte) []byte {
	out := make([]byte, len(a))
	for i := range a {
		if i < len(b) {
			out[i] = a[i] ^ b[i]
		} else {
			out[i] = a[i]
		}
	}
	return out
}

// combineSalt is the salt both sides derive from the server and client
// salts with the salt digest. Only hmac salt digests are accepted.
func combineSalt(saltDigest string, clientSalt, serverSalt []byte) ([]byte, error) {
	if hashFor(saltDigest) == nil {
		return nil, fmt.Errorf("%w: salt digest %q", ErrDigest, saltDigest)
	}
	return hmacHex(saltDigest, clientSalt, serverSalt)
}

// equalHex compares a client's response with the expected lowercase hex
// in constant time (for equal lengths).
func equalHex(expected, response []byte) bool {
	return subtle.ConstantTimeCompare(expected, response) == 1
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand.Read never fails on supported platforms (Go 1.24+).
		panic("auth: crypto/rand failed: " + err.Error())
	}
	return b
}

// FakeChallenge is sent when the client asked for a challenge but no
// module needs one: a fresh salt and the digests the client would get
// from a real hmac module.
func FakeChallenge(digests, saltDigests []string) *Challenge {
	d := chooseHMAC(digests)
	if d == "" {
		d = "hmac+sha512"
	}
	sd := chooseHMAC(saltDigests)
	if sd == "" {
		sd = d
	}
	return &Challenge{Salt: randomBytes(SaltSize), Digest: d, SaltDigest: sd, Prompt: "password"}
}

// Respond computes a client's answer to c (used when the proxy answers a
// backend's challenge, and by test clients): a fresh client salt, the
// combined salt and the digest of the password with it, as xpra's
// client_base.send_challenge_reply. allowXOR must be false on unencrypted
// connections (then an xor digest is an error). xor and des salt digests
// are refused, as xpra clients do.
func Respond(password []byte, c Challenge, allowXOR bool) (response, clientSalt []byte, err error) {
	if len(c.Salt) == 0 {
		return nil, nil, errors.New("challenge without a salt")
	}
	if len(password) == 0 {
		return nil, nil, errors.New("no password to answer the challenge with")
	}
	sd := c.SaltDigest
	if sd == "" {
		sd = DigestXOR // what a server without a salt digest means
	}
	if hashFor(sd) == nil {
		return nil, nil, fmt.Errorf("%w: salt digest %q is not allowed", ErrDigest, sd)
	}
	clientSalt = randomBytes(32)
	salt, err := combineSalt(sd, clientSalt, c.Salt)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case c.Digest == DigestXOR:
		if !allowXOR {
			return nil, nil, fmt.Errorf("%w: xor digest on an unencrypted connection would expose the password", ErrDigest)
		}
		return xorPad(password, salt), clientSalt, nil
	case hashFor(c.Digest) != nil:
		r, err := hmacHex(c.Digest, password, salt)
		return r, clientSalt, err
	}
	return nil, nil, fmt.Errorf("%w: %q", ErrDigest, c.Digest)
}

// usedSalts remembers the combined salts already verified, so one
// (response, client salt) pair can never authenticate twice, even across
// Logins and modules (like xpra's USED_SALT deque). It is bounded: the
// oldest entries go first.
type usedSalts struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

const usedSaltsMax = 1 << 16

var globalUsedSalts = &usedSalts{set: map[string]struct{}{}, ring: make([]string, usedSaltsMax)}

// add records salt and reports whether it was new.
func (u *usedSalts) add(salt []byte) bool {
	k := string(salt)
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.set[k]; ok {
		return false
	}
	if old := u.ring[u.next]; old != "" {
		delete(u.set, old)
	}
	u.ring[u.next] = k
	u.next = (u.next + 1) % len(u.ring)
	u.set[k] = struct{}{}
	return true
}
