package sessions

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"
)

// User is an account from the password database that a session is started for.
type User struct {
	Name     string
	UID, GID int
	Groups   []int // supplementary group ids (may include GID)
	Home     string
	Shell    string
}

// Errors a caller may need to tell apart (test with errors.Is).
var (
	// ErrRoot: sessions are never started for uid 0 or gid 0.
	ErrRoot = errors.New("sessions cannot be started as root")
	// ErrUnknownUser: the name or uid is not in the password database.
	ErrUnknownUser = errors.New("unknown user")
)

// LookupUser finds a user by name or numeric uid in the password database
// (NSS when built with cgo). Root (uid 0 or gid 0) is refused with ErrRoot;
// an unknown name or uid is ErrUnknownUser — there is no fallback to the
// current user.
func LookupUser(nameOrUID string) (User, error) {
	key := strings.TrimSpace(nameOrUID)
	if key == "" || strings.ContainsAny(key, ":\n\x00") {
		return User{}, fmt.Errorf("lookup user %q: %w", key, ErrUnknownUser)
	}
	var (
		pu  *user.User
		err error
	)
	if isDigits(key) {
		pu, err = user.LookupId(key)
	} else {
		pu, err = user.Lookup(key)
	}
	if err != nil {
		var unknownName user.UnknownUserError
		var unknownID user.UnknownUserIdError
		if errors.As(err, &unknownName) || errors.As(err, &unknownID) {
			return User{}, fmt.Errorf("lookup user %q: %w", key, ErrUnknownUser)
		}
		return User{}, fmt.Errorf("lookup user %q: %w", key, err)
	}
	uid, err1 := strconv.Atoi(pu.Uid)
	gid, err2 := strconv.Atoi(pu.Gid)
	if err1 != nil || err2 != nil {
		return User{}, fmt.Errorf("lookup user %q: non-numeric ids: %w", key, ErrUnknownUser)
	}
	u := User{Name: pu.Username, UID: uid, GID: gid, Home: pu.HomeDir}
	if u.UID == 0 || u.GID == 0 {
		return User{}, fmt.Errorf("lookup user %q: %w", key, ErrRoot)
	}
	gids, err := pu.GroupIds()
	if err != nil {
		return User{}, fmt.Errorf("lookup groups of %q: %w", u.Name, err)
	}
	for _, g := range gids {
		n, err := strconv.Atoi(g)
		if err != nil {
			continue
		}
		if n == 0 {
			// Membership of group root is not passed on to a session.
			continue
		}
		u.Groups = append(u.Groups, n)
	}
	u.Shell = lookupShell(u.Name)
	return u, nil
}

// lookupShell returns the login shell of name: /etc/passwd first, then
// `getent passwd` (NSS), then /bin/sh.
func lookupShell(name string) string {
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		if sh := shellFromPasswd(b, name); sh != "" {
			return sh
		}
	}
	if path, err := exec.LookPath("getent"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, path, "passwd", name).Output(); err == nil {
			if sh := shellFromPasswd(out, name); sh != "" {
				return sh
			}
		}
	}
	return "/bin/sh"
}

// shellFromPasswd returns the 7th field of name's line in passwd(5) text.
func shellFromPasswd(b []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) == 7 && f[0] == name {
			return f[6]
		}
	}
	return ""
}

func isDigits(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
