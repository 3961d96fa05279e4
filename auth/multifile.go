package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Multifile checks users against a file in xpra's multifile format, read
// again on every login. Each line is
//
//	username|password|uid|gid|displays(csv)|env_opts(k=v;...)|session_opts(k=v;...)
//
// with at least the first two fields; '#' starts a comment line, blank
// lines are skipped, a bad line is skipped and the first entry of a
// duplicated username wins. The sessions are the line's own. Options:
// filename (required), prompt.
type Multifile struct {
	base
	filename string
}

var _ Authenticator = (*Multifile)(nil)

func newMultifile(o *optionReader) (*Multifile, error) {
	m := &Multifile{base: readBase(o, "multifile", false)}
	f, ok := o.get("filename")
	if !ok || f == "" {
		return nil, fmt.Errorf("%w: module multifile needs a filename= option", ErrSpec)
	}
	abs, err := filepath.Abs(f)
	if err != nil {
		return nil, fmt.Errorf("multifile: %w", err)
	}
	m.filename = abs
	return m, nil
}

// Begin implements Authenticator.
func (m *Multifile) Begin(username string, t Transport) Login { return newLogin(m, username, t) }

func (m *Multifile) mode(string, Transport) (mode, error) { return modeHMAC, nil }

func (m *Multifile) verify(_ context.Context, username string, p *proof) (Identity, error) {
	data, err := os.ReadFile(m.filename)
	if err != nil {
		p.dummyCheck()
		return Identity{}, fmt.Errorf("multifile: %w", err)
	}
	entries, _ := ParseMultifile(data)
	e, ok := entries[username]
	if !ok {
		p.dummyCheck()
		return Identity{}, failed(m.name)
	}
	if !p.checkStored(credential{plain: e.Password}) {
		return Identity{}, failed(m.name)
	}
	return e.Identity, nil
}

// MultifileEntry is one user of a multifile password file.
type MultifileEntry struct {
	Password string
	Identity Identity // Username, UID, GID, Displays, Env, SessionOptions as declared
}

// MultifileLineError tells which line of a multifile could not be used.
type MultifileLineError struct {
	Line   int
	Reason string
}

func (e *MultifileLineError) Error() string {
	return fmt.Sprintf("multifile line %d: %s", e.Line, e.Reason)
}

// ParseMultifile parses xpra's multifile format. It returns the usable
// entries by username and one *MultifileLineError per skipped line
// (joined), which never quotes a password.
func ParseMultifile(data []byte) (map[string]MultifileEntry, error) {
	out := map[string]MultifileEntry{}
	var errs []error
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSpace(string(raw))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < 2 {
			errs = append(errs, &MultifileLineError{Line: i + 1, Reason: fmt.Sprintf("not enough fields: %d", len(f))})
			continue
		}
		name := f[0]
		if name == "" {
			errs = append(errs, &MultifileLineError{Line: i + 1, Reason: "empty username"})
			continue
		}
		if _, dup := out[name]; dup {
			errs = append(errs, &MultifileLineError{Line: i + 1, Reason: "duplicate entry for a username"})
			continue
		}
		e := MultifileEntry{Password: f[1], Identity: Identity{Username: name}}
		if len(f) >= 5 {
			e.Identity.UID = strings.TrimSpace(f[2])
			e.Identity.GID = strings.TrimSpace(f[3])
			e.Identity.Displays = splitDisplays(f[4])
		}
		if len(f) >= 6 {
			e.Identity.Env = parseSimpleDict(f[5], ";")
		}
		if len(f) >= 7 {
			e.Identity.SessionOptions = parseSimpleDict(f[6], ";")
		}
		out[name] = e
	}
	return out, errors.Join(errs...)
}

// splitDisplays splits a comma-separated display list, trimming entries
// and dropping empty ones.
func splitDisplays(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// parseSimpleDict is xpra's parse_simple_dict: "k=v<sep>k=v", entries
// without '=' skipped, the last duplicate wins. It returns nil when empty.
func parseSimpleDict(s, sep string) map[string]string {
	var out map[string]string
	for _, el := range strings.Split(s, sep) {
		if el == "" {
			continue
		}
		k, v, ok := strings.Cut(el, "=")
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}
