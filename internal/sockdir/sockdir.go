// Package sockdir knows xpra's socket directory conventions: how a
// session's unix socket is named (<hostname>-<display>), where a user's
// sockets live, and which of them are live. It is used to find a user's
// local sessions and to place the proxy's own control sockets where the
// real `xpra list` looks.
//
// It only reads directories and probes sockets; it never starts sessions.
package sockdir

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Hostname is the host name xpra puts in socket names.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// SocketName returns the socket file name for a display (":100" →
// "<host>-100", ":proxy-7" → "<host>-proxy-7").
func SocketName(display string) string {
	return Hostname() + "-" + strings.TrimPrefix(display, ":")
}

// Session is a live socket found in a socket directory.
type Session struct {
	Display string // ":100"
	Path    string
	UID     int
}

// Lister finds sessions.
type Lister struct {
	// Dirs are searched for every user ("/run/xpra", --socket-dirs).
	Dirs []string
	// UserDirs adds the per-user defaults ($XDG_RUNTIME_DIR/xpra of the uid,
	// i.e. /run/user/UID/xpra, and ~/.xpra) when set.
	UserDirs bool
	// ProbeTimeout bounds the liveness probe of each socket.
	ProbeTimeout time.Duration
}

// DirsFor returns the directories searched for uid, without duplicates.
func (l *Lister) DirsFor(uid int) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d == "" {
			return
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range l.Dirs {
		add(ExpandUser(d, uid))
	}
	if l.UserDirs && uid >= 0 {
		add(fmt.Sprintf("/run/user/%d/xpra", uid))
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.HomeDir != "" {
			add(filepath.Join(u.HomeDir, ".xpra"))
		}
	}
	return dirs
}

// ExpandUser expands "~" and "$XDG_RUNTIME_DIR" for uid in a directory.
func ExpandUser(dir string, uid int) string {
	if uid < 0 {
		return dir
	}
	if strings.HasPrefix(dir, "~") {
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			dir = u.HomeDir + dir[1:]
		}
	}
	return strings.ReplaceAll(dir, "$XDG_RUNTIME_DIR", fmt.Sprintf("/run/user/%d", uid))
}

// LiveSessions returns the live sessions owned by uid (uid < 0: any owner),
// sorted by display. Dead sockets, the proxy's instance sockets and sockets
// of other hosts are skipped.
func (l *Lister) LiveSessions(uid int) ([]Session, error) {
	prefix := Hostname() + "-"
	var out []Session
	seen := map[string]bool{}
	for _, dir := range l.DirsFor(uid) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
				continue
			}
			return nil, fmt.Errorf("read socket dir: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, prefix) || e.Type()&os.ModeSocket == 0 {
				continue
			}
			display := ":" + strings.TrimPrefix(name, prefix)
			if strings.HasPrefix(display, ":proxy-") || seen[display] {
				continue
			}
			path := filepath.Join(dir, name)
			owner, ok := socketOwner(path)
			if !ok || (uid >= 0 && owner != uid) {
				continue
			}
			if !l.live(path) {
				continue
			}
			seen[display] = true
			out = append(out, Session{Display: display, Path: path, UID: owner})
		}
	}
	sort.Slice(out, func(i, j int) bool { return displayLess(out[i].Display, out[j].Display) })
	return out, nil
}

func displayLess(a, b string) bool {
	na, ea := strconv.Atoi(strings.TrimPrefix(a, ":"))
	nb, eb := strconv.Atoi(strings.TrimPrefix(b, ":"))
	if ea == nil && eb == nil {
		return na < nb
	}
	return a < b
}

func socketOwner(path string) (int, bool) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

func (l *Lister) live(path string) bool {
	return Probe(path, l.ProbeTimeout) == StateLive
}

// State is what a connect to a socket tells.
type State int

// Socket states, as `xpra list` reports them.
const (
	StateLive State = iota
	StateDead
	StateUnknown
)

// Probe connects to a unix socket and closes it again.
func Probe(path string, timeout time.Duration) State {
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return StateLive
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
		return StateDead
	}
	return StateUnknown
}
