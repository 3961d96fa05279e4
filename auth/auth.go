package auth

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Transport describes the connection a client arrived on.
type Transport struct {
	Kind      string // "tcp", "ssl", "ws", "wss", "unix"
	Encrypted bool   // TLS (ssl, wss) or a local unix socket: a password may be sent xor-ed
	Remote    string // client address, for the module and logs
}

// Identity is what a successful login yields.
type Identity struct {
	Username       string
	Module         string            // module name, for logs and metrics
	UID, GID       string            // as declared (name or number); "" when not declared
	Displays       []string          // declared sessions (sqlite, multifile, toml users): ":N", "tcp://u:p@h:p/", "socket:///p"
	LocalSessions  bool              // the sessions are this system user's live local sessions (allow, none, password, pam, ldap)
	Env            map[string]string // env_options
	SessionOptions map[string]string // session_options, raw strings
	// Groups are the groups the module vouches for: the directory groups
	// of this user that it looked up during this login (ldap with
	// groups-base=). The portal counts them toward admin_group. Empty for
	// modules that know no groups (allow, password, sqlite, toml, pam,
	// multifile, postgres): a system user's groups are not the module's
	// to claim. Each login gets its own slice.
	Groups []string
}

// Challenge is the content of xpra's challenge packet:
// ["challenge", Salt, auth_caps, Digest, SaltDigest, Prompt].
type Challenge struct {
	Salt       []byte // 64 fresh random bytes
	Digest     string // "hmac+sha512", ..., or "xor"
	SaltDigest string
	Prompt     string // "password"
}

// Authenticator is one configured module; safe for concurrent use.
type Authenticator interface {
	Name() string
	Begin(username string, t Transport) Login
}

// Login is one attempt on one connection; not for concurrent use.
type Login interface {
	// Challenge returns the challenge to send, or (nil, nil) when this
	// module needs none (none), in which case the edge calls
	// Verify(ctx, nil, nil). digests/saltDigests are the client hello's
	// "digest" and "salt-digest" lists.
	Challenge(digests, saltDigests []string) (*Challenge, error)
	// Verify checks the response from the client's next hello. Only one
	// call succeeds per Login.
	Verify(ctx context.Context, response, clientSalt []byte) (Identity, error)
}

// ErrFailed is wrapped by every credential failure; callers tell the
// client only "authentication failed".
var ErrFailed = errors.New("authentication failed")

// ErrUnavailable is wrapped by the error of a module whose user store
// cannot be reached (the fleet's PostgreSQL is down): the login fails
// closed with "authentication error" and is not counted as a failed
// password (no ban). fleet.ErrUnavailable is the same value.
var ErrUnavailable = errors.New("authentication store unavailable")

// RefusedError is a refusal whose Reason may be shown to the client; it
// never holds a secret.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "authentication refused: " + e.Reason }

// Spec names a module and its options, as in xpra's --tcp-auth values.
type Spec struct {
	Name    string
	Options map[string]string
}

// String gives the spec back in the "name,k=v" form with the options
// sorted; values of secret options are masked.
func (s Spec) String() string {
	keys := make([]string, 0, len(s.Options))
	for k := range s.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(s.Name)
	for _, k := range keys {
		v := s.Options[k]
		if k == "value" || k == "password" {
			v = "***"
		}
		b.WriteString("," + k + "=" + v)
	}
	return b.String()
}

// ErrSpec is wrapped by every error about a module spec: bad syntax,
// unknown module names and unknown or missing options.
var ErrSpec = errors.New("bad authentication spec")

// ParseSpec parses "sqlite,filename=x", "sqlite:filename=x",
// "password:value=x,foo=bar", "allow". The module name ends at the first
// ',' or ':'; options are k=v pairs separated by ',' (as xpra's
// parse_simple_dict, so a value cannot hold a comma). Empty pairs are
// skipped; a pair without '=', an empty key or a repeated key is an error.
func ParseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	name, rest := s, ""
	if i := strings.IndexAny(s, ",:"); i >= 0 {
		name, rest = s[:i], s[i+1:]
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return Spec{}, fmt.Errorf("%w: no module name", ErrSpec)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return Spec{}, fmt.Errorf("%w: invalid module name %q", ErrSpec, name)
		}
	}
	sp := Spec{Name: name, Options: map[string]string{}}
	for _, el := range strings.Split(rest, ",") {
		if strings.TrimSpace(el) == "" {
			continue
		}
		k, v, ok := strings.Cut(el, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return Spec{}, fmt.Errorf("%w: option %q of module %s has no '='", ErrSpec, k, name)
		}
		if k == "" {
			return Spec{}, fmt.Errorf("%w: empty option name in module %s", ErrSpec, name)
		}
		if _, dup := sp.Options[k]; dup {
			return Spec{}, fmt.Errorf("%w: option %q of module %s given twice", ErrSpec, k, name)
		}
		sp.Options[k] = v
	}
	return sp, nil
}

// User is a user declared in the TOML config.
type User struct {
	Name           string            `toml:"name"`
	Password       string            `toml:"password"`      // plaintext (hmac everywhere)
	PasswordHash   string            `toml:"password_hash"` // argon2id or bcrypt (xor, encrypted transports only)
	UID            string            `toml:"uid"`
	GID            string            `toml:"gid"`
	Displays       []string          `toml:"displays"`
	Env            map[string]string `toml:"env"`
	SessionOptions map[string]string `toml:"session_options"`
}

// Options is what cmd/config passes to New.
type Options struct {
	Users      []User
	PAMService string
	// Postgres is the fleet's users table ([store] postgres), for the
	// postgres module; nil on a standalone node.
	Postgres UserSource
}

// refusedModules would let one shared password reach every user's sessions.
var refusedModules = map[string]bool{"file": true, "env": true, "exec": true}

// New builds a module from a spec: allow, none, reject, password,
// multifile, sqlite, postgres (uses Options.Postgres), toml (uses
// Options.Users), pam (alias sys), ldap.
// file, env and exec give a *RefusedError; unknown names and options give
// an error wrapping ErrSpec. New has no side effects: it opens no file.
func New(spec Spec, opts Options) (Authenticator, error) {
	name := strings.ToLower(spec.Name)
	if refusedModules[name] {
		return nil, &RefusedError{Reason: name + " authentication is refused for the proxy: one password would reach every user's sessions"}
	}
	o := optionReader{module: name, opts: spec.Options, seen: map[string]bool{}}
	var a Authenticator
	var err error
	switch name {
	case "allow":
		a = newAllow(&o)
	case "none":
		a = newNone(&o)
	case "reject":
		a = newReject(&o)
	case "password":
		a, err = newPassword(&o)
	case "multifile":
		a, err = newMultifile(&o)
	case "sqlite":
		a, err = newSQLite(&o)
	case "postgres", "postgresql":
		a, err = newPostgres(&o, opts.Postgres)
	case "toml", "users":
		a, err = newUsers(&o, opts.Users)
	case "pam", "sys":
		a, err = newPAM(&o, opts.PAMService)
	case "ldap":
		a, err = newLDAP(&o)
	default:
		return nil, fmt.Errorf("%w: unknown authentication module %q", ErrSpec, spec.Name)
	}
	if err != nil {
		return nil, err
	}
	if err := o.done(); err != nil {
		return nil, err
	}
	return a, nil
}

// optionReader hands out a spec's options and reports the unused ones.
type optionReader struct {
	module string
	opts   map[string]string
	seen   map[string]bool
}

func (o *optionReader) get(k string) (string, bool) {
	o.seen[k] = true
	v, ok := o.opts[k]
	return v, ok
}

func (o *optionReader) str(k, def string) string {
	if v, ok := o.get(k); ok {
		return v
	}
	return def
}

func (o *optionReader) boolean(k string, def bool) (bool, error) {
	v, ok := o.get(k)
	if !ok {
		return def, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("%w: option %s of module %s must be yes or no", ErrSpec, k, o.module)
}

func (o *optionReader) done() error {
	var unknown []string
	for k := range o.opts {
		if !o.seen[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("%w: unknown option(s) %s for module %s", ErrSpec, strings.Join(unknown, ", "), o.module)
}
