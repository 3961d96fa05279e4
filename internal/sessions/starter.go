package sessions

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/sockdir"
)

// Starter starts xpra sessions as other users. The zero value is usable:
// every field has a default. It must run as root.
type Starter struct {
	// XpraPath is the xpra script, an absolute path (default "/usr/bin/xpra").
	XpraPath string
	// SocketDir is where the new session's socket goes (default
	// /run/user/UID/xpra). A missing directory is created 0700 owned by the
	// user; an existing one is used as it is.
	SocketDir func(u User) string
	// EnvWhitelist names the variables passed on from the proxy's own
	// environment; an entry ending in "*" is a prefix (default LANG,
	// LANGUAGE, LC_*, TZ). PATH is DefaultPath unless "PATH" is listed.
	// HOME, USER, LOGNAME, SHELL and XDG_RUNTIME_DIR are always the user's.
	EnvWhitelist []string
	// AllowedOptions are the start options a client may override
	// (default DefaultAllowedOptions()); everything else is refused.
	AllowedOptions map[string]bool
	// BaseArgs are passed to every `xpra start` before the client's options
	// (nil: DefaultBaseArgs; empty non-nil: none).
	BaseArgs []string
	// Timeout bounds the wait for the new live socket (default 30s).
	Timeout time.Duration
	// MaxPerUser bounds the live sessions (each an X server) a user may
	// have in the socket directory before Start refuses another
	// (default DefaultMaxPerUser; negative: no bound).
	MaxPerUser int
	// Log receives debug and summary lines (nil: discarded).
	Log *slog.Logger

	versionOnce sync.Once
	major       int // of XpraPath's `xpra --version`; 0 unknown
}

// Started describes a session that is up: its socket answers.
type Started struct {
	Display string // ":N" as in the socket name
	Socket  string // path of the live unix socket, owned by the user
	PID     int    // the xpra server process (from SO_PEERCRED), 0 if unknown
}

// DefaultMaxPerUser is Starter.MaxPerUser's default.
const DefaultMaxPerUser = 4

// DefaultPath is the PATH of a started session unless "PATH" is whitelisted.
const DefaultPath = "/usr/local/bin:/usr/bin:/bin"

// DefaultBaseArgs make `xpra start` fast and container-friendly. They are
// command-line flags, so they win over /etc/xpra and the user's own
// ~/.config/xpra for these few settings only; everything else comes from
// the configuration files as usual (no --no-config style flag is used).
//
//   - --mdns=no: no avahi/zeroconf publishing; there is rarely an avahi
//     daemon in a container and a system proxy must not announce per-user
//     sessions on the LAN.
//   - --pulseaudio=no, --speaker=off, --microphone=off: no pulseaudio
//     daemon per session and no gstreamer sound probe subprocess at start
//     (both slow, and pointless without a sound device).
//   - --notifications=no, --dbus-launch= (empty: do not run dbus-launch),
//     --dbus-proxy=no, --dbus-control=no: no session bus is started or
//     required; without one these features only log errors.
//   - --webcam=no: no v4l2 device probing.
//   - --printing=no: no cups/lpadmin probing (slow, needs cupsd, and adds
//     printers system-wide).
//
// Not changed: Debian's /etc/xpra/conf.d/60_server.conf has
// start=/etc/X11/Xsession true, which in a container without a session
// bus pops up an xmessage about dbus in every new session. A command-line
// --start only appends to the configured list, it cannot remove an entry,
// so an operator who does not want it edits that file.
//
// Start always adds, after the client's options so they cannot be
// overridden: --daemon=yes, --systemd-run=no (no systemd user scope; there
// is no user bus for a session started by a service), --start-via-proxy=no
// (else xpra would ask the system proxy, i.e. us, to start it),
// --attach=no, --socket-dir=<SocketDir> and, when xpra chooses the display,
// --displayfd=3.
var DefaultBaseArgs = []string{
	"--mdns=no",
	"--pulseaudio=no",
	"--speaker=off",
	"--microphone=off",
	"--notifications=no",
	"--dbus-launch=",
	"--dbus-proxy=no",
	"--dbus-control=no",
	"--webcam=no",
	"--printing=no",
}

// DefaultBaseArgs6 are DefaultBaseArgs for xpra 6.x, which has no
// --dbus-proxy (it refuses to start: "no such option") and turns the
// whole session bus off with --dbus=no.
var DefaultBaseArgs6 = []string{
	"--mdns=no",
	"--pulseaudio=no",
	"--speaker=off",
	"--microphone=off",
	"--notifications=no",
	"--dbus-launch=",
	"--dbus=no",
	"--dbus-control=no",
	"--webcam=no",
	"--printing=no",
}

// xpraMajor is the major version of the xpra program, asked once with a
// bounded `xpra --version`; 0 when it cannot be told.
func (s *Starter) xpraMajor(xpra string) int {
	s.versionOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, xpra, "--version")
		cmd.Env = []string{"PATH=" + DefaultPath, "HOME=/nonexistent", "LANG=C.UTF-8"}
		cmd.WaitDelay = time.Second
		out, err := cmd.Output()
		if err != nil {
			s.log().Warn("cannot tell the xpra version; starting sessions with xpra 3 options", "xpra", xpra, "err", err)
			return
		}
		s.major = parseXpraMajor(string(out))
	})
	return s.major
}

// parseXpraMajor reads "xpra v6.5.5-r0" (or "xpra v3.1.3").
func parseXpraMajor(out string) int {
	f := strings.Fields(out)
	if len(f) < 2 || f[0] != "xpra" {
		return 0
	}
	v := strings.TrimPrefix(f[1], "v")
	if i := strings.IndexByte(v, '.'); i > 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// DefaultEnvWhitelist is the environment passed on when EnvWhitelist is nil.
var DefaultEnvWhitelist = []string{"LANG", "LANGUAGE", "LC_*", "TZ"}

// Errors of Start (test with errors.Is; the error is a *StartError).
var (
	// ErrStartFailed: xpra could not start a session.
	ErrStartFailed = errors.New("failed to start a new session")
	// ErrTimeout: no live socket appeared within Starter.Timeout.
	ErrTimeout = errors.New("timed out waiting for the session socket")
	// ErrDisplayInUse: the requested display already has a live session.
	ErrDisplayInUse = errors.New("display already has a live session")
	// ErrTooMany: the user has MaxPerUser live sessions already.
	ErrTooMany = errors.New("too many sessions for this user")
)

// StartError is the error of a failed Start. Its message is safe for logs
// (no environment, no credentials); Output holds the tail of what xpra
// printed for a fuller report.
type StartError struct {
	UID    int
	Mode   string
	Stage  string // "prepare", "exec", "exit", "wait"
	Output string // tail of xpra's stdout+stderr (bounded)
	Err    error
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("start %s session for uid %d: %s: %v", e.Mode, e.UID, e.Stage, e.Err)
	if l := lastLine(e.Output); l != "" {
		msg += "; xpra: " + printable(l, 200)
	}
	return msg
}

// Unwrap gives both ErrStartFailed and the cause.
func (e *StartError) Unwrap() []error { return []error{ErrStartFailed, e.Err} }

const (
	markerVar    = "XPRA_EDGE_START_ID"
	outputLimit  = 64 << 10
	pollInterval = 50 * time.Millisecond
)

func (s *Starter) allowed() map[string]bool {
	if s.AllowedOptions != nil {
		return s.AllowedOptions
	}
	return DefaultAllowedOptions()
}

func (s *Starter) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (s *Starter) socketDir(u User) string {
	if s.SocketDir != nil {
		return s.SocketDir(u)
	}
	return filepath.Join(runtimeDir(u), "xpra")
}

func runtimeDir(u User) string { return "/run/user/" + strconv.Itoa(u.UID) }

// Start runs `xpra start|start-desktop|shadow [display] --daemon=yes ...`
// as u and waits (bounded by Timeout and ctx) for the new live socket owned
// by u.UID. On failure every process it started is killed.
func (s *Starter) Start(ctx context.Context, u User, r Request) (Started, error) {
	mode := r.Mode
	if mode == "" {
		mode = ModeStart
	}
	// logPath is the daemon's log file, a name chosen here (never a path
	// taken from xpra's output, which the user controls); "" until chosen.
	var logPath string
	fail := func(stage string, out string, err error) (Started, error) {
		if tail := daemonLogTail(logPath, u.UID); tail != "" {
			out += "\n--- xpra log tail ---\n" + tail
		}
		return Started{}, &StartError{UID: u.UID, Mode: printable(mode, 32), Stage: stage, Output: out, Err: err}
	}
	if err := checkUser(u); err != nil {
		return fail("prepare", "", err)
	}
	r, err := validate(r, s.allowed())
	if err != nil {
		return fail("prepare", "", err)
	}
	if os.Geteuid() != 0 {
		return fail("prepare", "", errors.New("the proxy is not running as root"))
	}
	xpra := s.XpraPath
	if xpra == "" {
		xpra = "/usr/bin/xpra"
	}
	if !filepath.IsAbs(xpra) {
		return fail("prepare", "", fmt.Errorf("xpra path %q is not absolute", xpra))
	}
	// One start at a time per user: xpra's own start (Xauthority, log
	// files) is not safe against itself, and the new socket must be ours.
	unlock, err := lockUID(ctx, u.UID)
	if err != nil {
		return fail("prepare", "", err)
	}
	defer unlock()
	rundir := runtimeDir(u)
	if err := ensureDir(rundir, u, true); err != nil {
		return fail("prepare", "", err)
	}
	sdir := filepath.Clean(s.socketDir(u))
	if err := ensureDir(sdir, u, sdir == filepath.Join(rundir, "xpra")); err != nil {
		return fail("prepare", "", err)
	}
	before := liveSockets(sdir, u.UID)
	max := s.MaxPerUser
	if max == 0 {
		max = DefaultMaxPerUser
	}
	if max > 0 && len(before) >= max {
		return fail("prepare", "", fmt.Errorf("%w: %d live, at most %d", ErrTooMany, len(before), max))
	}
	if r.Display != "" {
		if _, ok := before[filepath.Join(sdir, sockdir.SocketName(r.Display))]; ok {
			return fail("prepare", "", fmt.Errorf("%w: %s", ErrDisplayInUse, r.Display))
		}
	}
	marker, err := newMarker()
	if err != nil {
		return fail("prepare", "", err)
	}

	args := []string{r.Mode}
	if r.Display != "" {
		args = append(args, r.Display)
	}
	base := s.BaseArgs
	if base == nil {
		base = DefaultBaseArgs
		if s.xpraMajor(xpra) >= 6 {
			base = DefaultBaseArgs6
		}
	}
	args = append(args, base...)
	args = append(args, optionArgs(r.Options)...)
	logName := "xpra-edge-start-" + marker[:16] + ".log"
	args = append(args, "--daemon=yes", "--systemd-run=no", "--start-via-proxy=no",
		"--attach=no", "--socket-dir="+sdir, "--log-dir="+rundir, "--log-file="+logName)
	logPath = filepath.Join(rundir, logName)
	useDisplayFD := r.Display == "" && r.Mode != ModeShadow
	var dfdR, dfdW *os.File
	if useDisplayFD {
		dfdR, dfdW, err = os.Pipe()
		if err != nil {
			return fail("prepare", "", fmt.Errorf("displayfd pipe: %w", err))
		}
		defer dfdR.Close()
		args = append(args, "--displayfd=3")
	}

	out := &tailBuffer{max: outputLimit}
	cmd := exec.Command(xpra, args...)
	cmd.Env = s.environ(u, rundir, marker)
	cmd.Dir = "/"
	if fi, err := os.Stat(u.Home); err == nil && fi.IsDir() {
		cmd.Dir = u.Home
	}
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 2 * time.Second // daemon children may keep the pipe open
	if dfdW != nil {
		cmd.ExtraFiles = []*os.File{dfdW}
	}
	groups := make([]uint32, 0, len(u.Groups))
	for _, g := range u.Groups {
		if g > 0 {
			groups = append(groups, uint32(g))
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: groups},
	}
	log := s.log().With("uid", u.UID, "user", u.Name, "mode", r.Mode)
	log.Debug("starting xpra session", "argv", append([]string{xpra}, args...), "dir", cmd.Dir)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		if dfdW != nil {
			dfdW.Close()
		}
		return fail("exec", "", err)
	}
	if dfdW != nil {
		dfdW.Close()
	}

	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	displays := make(chan string, 1)
	if dfdR != nil {
		go readDisplayFD(dfdR, displays)
	}

	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()

	exitCh := exited // set to nil once seen, so the loop does not spin
	cleanup := func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
		}
		killMarked(marker, u.UID)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
		}
	}
	want := r.Display
	var (
		exitedOK    bool
		lastCheck   time.Time
		processGone bool
	)
	for {
		select {
		case <-wctx.Done():
			cleanup()
			cause := ErrTimeout
			if ctx.Err() != nil {
				cause = ctx.Err()
			}
			return fail("wait", out.String(), fmt.Errorf("%w after %s", cause, time.Since(t0).Round(time.Millisecond)))
		case <-exitCh:
			exitCh = nil
			err := waitErr
			if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
				if cmd.ProcessState == nil || !cmd.ProcessState.Success() {
					cleanup()
					return fail("exit", out.String(), fmt.Errorf("xpra %s", describeExit(cmd, err)))
				}
			}
			exitedOK = true
		case d := <-displays:
			if d != "" && want == "" {
				want = d
			}
		case <-ticker.C:
		}
		if st, ok := found(sdir, u.UID, want, before, marker); ok {
			log.Info("xpra session started", "display", st.Display, "socket", st.Socket,
				"pid", st.PID, "duration", time.Since(t0).Round(time.Millisecond))
			return st, nil
		}
		// Once the first xpra process has exited, a daemon must be left.
		if exitedOK && time.Since(lastCheck) > 500*time.Millisecond {
			lastCheck = time.Now()
			if len(markedPIDs(marker, u.UID)) == 0 {
				if processGone {
					cleanup()
					return fail("exit", out.String(), errors.New("xpra exited without leaving a server running"))
				}
				processGone = true // look twice: the daemon may be between forks
			} else {
				processGone = false
			}
		}
	}
}

// found reports the session socket once it is live, owned by uid and
// served by a process of this start (its marker): the one for display
// want, or, when want is empty, any new one.
func found(dir string, uid int, want string, before map[string]bool, marker string) (Started, bool) {
	if want != "" {
		p := filepath.Join(dir, sockdir.SocketName(want))
		if pid, ok := liveOwned(p, uid); ok && ours(pid, marker) {
			return Started{Display: want, Socket: p, PID: pid}, true
		}
		return Started{}, false
	}
	for p := range liveSockets(dir, uid) {
		if before[p] {
			continue
		}
		if pid, ok := liveOwned(p, uid); ok && ours(pid, marker) {
			return Started{Display: displayOf(p), Socket: p, PID: pid}, true
		}
	}
	return Started{}, false
}

func displayOf(path string) string {
	return ":" + strings.TrimPrefix(filepath.Base(path), sockdir.Hostname()+"-")
}

// liveSockets lists the sockets in dir named for this host, owned by uid,
// that answer a connect.
func liveSockets(dir string, uid int) map[string]bool {
	out := map[string]bool{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	prefix := sockdir.Hostname() + "-"
	for _, e := range entries {
		if e.Type()&os.ModeSocket == 0 || !strings.HasPrefix(e.Name(), prefix) ||
			strings.HasPrefix(e.Name(), prefix+"proxy-") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if _, ok := liveOwned(p, uid); ok {
			out[p] = true
		}
	}
	return out
}

// liveOwned reports whether path is a socket file owned by uid whose
// listener runs as uid, and the listener's pid.
func liveOwned(path string, uid int) (int, bool) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != uid {
		return 0, false
	}
	pid, puid, err := peerCred(path, time.Second)
	if err != nil {
		return 0, false
	}
	if puid >= 0 && puid != uid {
		return 0, false
	}
	return pid, true
}

func checkUser(u User) error {
	if u.UID == 0 || u.GID == 0 {
		return ErrRoot
	}
	if u.UID < 0 || u.GID < 0 || u.UID > 1<<31-2 || u.GID > 1<<31-2 {
		return fmt.Errorf("%w: invalid ids", ErrUnknownUser)
	}
	if u.Name == "" || strings.ContainsAny(u.Name, "\x00\n=/") {
		return fmt.Errorf("%w: invalid name", ErrUnknownUser)
	}
	if !filepath.IsAbs(u.Home) {
		return fmt.Errorf("%w: home directory %q is not absolute", ErrUnknownUser, printable(u.Home, 64))
	}
	return nil
}

// ensureDir creates dir 0700 owned by u when missing (parents 0755 owned
// by root). When strict, an existing dir must be owned by u, else it only
// has to be a directory. Symbolic links are refused.
func ensureDir(dir string, u User, strict bool) error {
	dirMu.Lock() // create-then-chown must not be seen half done
	defer dirMu.Unlock()
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Lchown(dir, u.UID, u.GID); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if strict {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || int(st.Uid) != u.UID {
			return fmt.Errorf("%s is not owned by uid %d", dir, u.UID)
		}
	}
	return nil
}

// environ builds the session's environment: the whitelist only, then the
// user's own identity variables and the start marker.
func (s *Starter) environ(u User, rundir, marker string) []string {
	wl := s.EnvWhitelist
	if wl == nil {
		wl = DefaultEnvWhitelist
	}
	fixed := map[string]string{
		"HOME":            u.Home,
		"USER":            u.Name,
		"LOGNAME":         u.Name,
		"SHELL":           u.Shell,
		"XDG_RUNTIME_DIR": rundir,
		markerVar:         marker,
	}
	if fixed["SHELL"] == "" {
		fixed["SHELL"] = "/bin/sh"
	}
	var env []string
	havePath := false
	for _, kv := range os.Environ() {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if _, isFixed := fixed[k]; isFixed || !whitelisted(k, wl) {
			continue
		}
		if k == "PATH" {
			havePath = true
		}
		env = append(env, kv)
	}
	if !havePath {
		env = append(env, "PATH="+DefaultPath)
	}
	for _, k := range []string{"HOME", "USER", "LOGNAME", "SHELL", "XDG_RUNTIME_DIR", markerVar} {
		env = append(env, k+"="+fixed[k])
	}
	return env
}

func whitelisted(k string, wl []string) bool {
	for _, w := range wl {
		if p, ok := strings.CutSuffix(w, "*"); ok {
			if strings.HasPrefix(k, p) {
				return true
			}
		} else if k == w {
			return true
		}
	}
	return false
}

func newMarker() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random marker: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// readDisplayFD reads what xpra writes to --displayfd: the display number
// and a newline. It sends "" on EOF or garbage.
func readDisplayFD(r io.Reader, out chan<- string) {
	var buf []byte
	b := make([]byte, 32)
	for len(buf) < 64 {
		n, err := r.Read(b)
		buf = append(buf, b[:n]...)
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[:i]
			break
		}
		if err != nil {
			break
		}
	}
	d, ok := normDisplay(strings.TrimSpace(string(buf)))
	if !ok {
		d = ""
	}
	out <- d
}

var dirMu sync.Mutex

var (
	uidMu    sync.Mutex
	uidLocks = map[int]chan struct{}{}
)

// lockUID takes the start lock of uid, giving up when ctx ends.
func lockUID(ctx context.Context, uid int) (func(), error) {
	uidMu.Lock()
	ch, ok := uidLocks[uid]
	if !ok {
		ch = make(chan struct{}, 1)
		uidLocks[uid] = ch
	}
	uidMu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another start of the same user: %w", ctx.Err())
	}
}

// ours reports whether pid carries the marker of this start. Without a
// pid (no SO_PEERCRED) it cannot tell and trusts the socket.
func ours(pid int, marker string) bool {
	if pid <= 0 {
		return true
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && bytes.Contains(env, []byte(markerVar+"="+marker+"\x00"))
}

// markedPIDs lists the processes of uid whose initial environment holds
// the marker of one Start: the xpra it ran and everything that inherited
// its environment (the daemon, Xvfb, start commands).
func markedPIDs(marker string, uid int) []int {
	needle := []byte(markerVar + "=" + marker + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		fi, err := os.Stat("/proc/" + e.Name())
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, needle) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// killMarked SIGKILLs the marked processes until none is left (bounded).
func killMarked(marker string, uid int) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		pids := markedPIDs(marker, uid)
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func describeExit(cmd *exec.Cmd, err error) string {
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return "exited with status " + strconv.Itoa(ps.ExitCode())
	}
	return err.Error()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

// daemonLogTail returns the end of the daemon's log file, the path Start
// chose with --log-dir/--log-file, if it is a regular file owned by uid. It
// is opened without following a symlink, without blocking (a fifo) and
// without becoming the proxy's controlling terminal (a tty put there by
// the user). At most 4 KiB.
func daemonLogTail(path string, uid int) string {
	if !filepath.IsAbs(path) {
		return ""
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
		return ""
	}
	const max = 4 << 10
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	b := make([]byte, max)
	n, _ := f.ReadAt(b, off)
	return string(b[:n])
}

// StartUser is what the edge calls for an authenticated user: it looks up
// nameOrUID (root and unknown users refused), parses the client's
// start-new-session dict (nil: a default "start" request) against
// s.AllowedOptions, and starts the session. It fits edge.SessionStarter
// with a two-line adapter to router.Session.
func (s *Starter) StartUser(ctx context.Context, nameOrUID string, sns map[string]any) (Started, error) {
	u, err := LookupUser(nameOrUID)
	if err != nil {
		return Started{}, err
	}
	r, err := s.RequestFromCaps(sns)
	if err != nil {
		return Started{}, err
	}
	return s.Start(ctx, u, r)
}
