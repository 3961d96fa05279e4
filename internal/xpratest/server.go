package xpratest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ServerOptions configures StartServer. The zero value is a root-less
// (current user) server on a free display with only a unix socket, running
// xterm.
type ServerOptions struct {
	Gen       Gen      // the xpra generation (default Xpra3, Debian's 3.1.3)
	Display   int      // :N; 0 = FreeDisplay
	BindTCP   string   // "127.0.0.1:PORT" for --bind-tcp, "" for none (unix socket only)
	User      string   // system user to run as ("" = current user); needs root; the socket is then owned by that user
	SocketDir string   // "" = a private directory (owned by User); otherwise used as is
	Start     string   // command started in the session (--start), default "xterm"; "-" for none
	Args      []string // extra `xpra start` arguments, e.g. "--tcp-auth=password:value=secret"; later ones win

	// StartTimeout bounds the wait for "xpra is ready." (default 30s).
	StartTimeout time.Duration
	// Lifetime bounds the whole server; it is killed after it (default 10m).
	Lifetime time.Duration
}

// Server is a running `xpra start --daemon=no` with its own Xvfb.
type Server struct {
	Gen        Gen    // the xpra generation it runs
	Display    string // ":N"
	DisplayNum int
	SocketDir  string // the --socket-dir and --socket-dirs of the server
	SocketPath string // its unix socket, SocketDir/HOSTNAME-N
	TCPAddr    string // "" unless BindTCP was set
	PID        int    // the xpra server process
	UID, GID   int    // the credentials it runs with
	LogPath    string // its stdout+stderr (and those of its Xvfb and session commands)
	Home       string // its HOME
	RuntimeDir string // its XDG_RUNTIME_DIR

	// Started is how long exec → "xpra is ready." took.
	Started time.Duration

	p *proc
	w workDir
}

// ServerQuietArgs are the `xpra start` options the harness always passes:
// no mDNS, sound, dbus, notifications, printing, webcam, systemd-run, ssh
// upgrades, HTML5 or xsettings, so the server starts fast and quietly in a
// container. Args of ServerOptions come after them and may override any.
var ServerQuietArgs = []string{
	"--mdns=no", "--pulseaudio=no", "--speaker=off", "--microphone=off", "--av-sync=no",
	"--notifications=no", "--dbus-proxy=no", "--dbus-control=no", "--dbus-launch=",
	"--printing=no", "--webcam=no", "--systemd-run=no", "--ssh-upgrade=no",
	"--file-transfer=no", "--open-files=no", "--open-url=no", "--forward-xdg-open=no",
	"--start-via-proxy=no", "--html=off", "--xsettings=no", "--input-method=none",
	"--exit-with-children=no", "--terminate-children=yes", "--sharing=no",
}

// serverXvfb is the --xvfb command: a smaller screen than Debian's default
// 5760x2560 (memory, start-up time).
const serverXvfb = "Xvfb +extension Composite -screen 0 1920x1080x24+32 -dpi 96 -nolisten tcp -noreset -auth $XAUTHORITY"

// ReadyLine is what the xpra 3.1.3 server prints once it accepts clients.
const ReadyLine = "xpra is ready."

// StartServer runs `xpra start :N --daemon=no` and waits until it is live:
// ReadyLine printed and its unix socket (and tcp socket, if any) accepting.
// t.Cleanup stops it (SIGTERM, then SIGKILL of every process it started,
// Xvfb included) and removes its files.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	RequirePeers(t, o.Gen.String(), "Xvfb")
	if o.Start == "" {
		o.Start = "xterm"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.Lifetime == 0 {
		o.Lifetime = 10 * time.Minute
	}
	uid, gid := -1, -1
	var cred *syscall.Credential
	if o.User != "" {
		RequirePeers(t, "root")
		var err error
		cred, err = userCredential(o.User)
		if err != nil {
			t.Fatalf("xpratest: %v", err)
		}
		uid, gid = int(cred.Uid), int(cred.Gid)
	}
	w := newWorkDir(t, "srv", uid, gid)
	if o.Display == 0 {
		o.Display = FreeDisplay(t)
	}
	sockDir := o.SocketDir
	if sockDir == "" {
		sockDir = filepath.Join(w.root, "sock")
		if err := os.Mkdir(sockDir, 0o755); err != nil {
			t.Fatalf("xpratest: %v", err)
		}
		if uid >= 0 {
			if err := os.Chown(sockDir, uid, gid); err != nil {
				t.Fatalf("xpratest: %v", err)
			}
		}
	}
	disp := ":" + strconv.Itoa(o.Display)
	args := []string{"start", disp, "--daemon=no",
		"--socket-dir=" + sockDir, "--socket-dirs=" + sockDir,
		"--log-dir=" + w.root, "--xvfb=" + serverXvfb,
	}
	if o.BindTCP != "" {
		args = append(args, "--bind-tcp="+o.BindTCP)
	}
	if o.Start != "-" {
		args = append(args, "--start="+o.Start)
	}
	args = append(args, o.Gen.serverQuietArgs()...)
	args = append(args, o.Args...)

	cmd := exec.Command(o.Gen.Bin(), args...)
	cmd.Dir = w.home
	cmd.Env = w.env()
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(cmd.Env, "USER="+o.User, "LOGNAME="+o.User)
	}
	logPath := filepath.Join(w.root, "server.log")
	began := time.Now()
	p, err := startProc("xpra server "+disp, cmd, logPath, o.Lifetime)
	if err != nil {
		t.Fatalf("xpratest: %v", err)
	}
	s := &Server{
		Gen: o.Gen, Display: disp, DisplayNum: o.Display, SocketDir: sockDir, TCPAddr: o.BindTCP,
		PID: p.pid(), UID: os.Getuid(), GID: os.Getgid(), LogPath: logPath,
		Home: w.home, RuntimeDir: w.runtime, p: p, w: w,
	}
	if cred != nil {
		s.UID, s.GID = uid, gid
	}
	t.Cleanup(s.Stop)

	if err := p.waitOutput(ReadyLine, o.StartTimeout); err != nil {
		t.Fatalf("xpratest: server %s not ready: %v\n--- server log ---\n%s", disp, err, tail(s.Log(), 60))
	}
	deadline := time.Now().Add(o.StartTimeout)
	for {
		s.SocketPath = findSocket(sockDir, o.Display)
		ok := s.SocketPath != "" && canDial("unix", s.SocketPath)
		if ok && o.BindTCP != "" {
			ok = canDial("tcp", o.BindTCP)
		}
		if ok {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("xpratest: server %s sockets not accepting (socket %q)\n--- server log ---\n%s", disp, s.SocketPath, tail(s.Log(), 60))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Started = time.Since(began)
	return s
}

// findSocket returns DIR/HOSTNAME-N (the name xpra 3.1.3 gives the socket of
// display :N), or "".
func findSocket(dir string, display int) string {
	if h, err := os.Hostname(); err == nil {
		p := filepath.Join(dir, h+"-"+strconv.Itoa(display))
		if exists(p) {
			return p
		}
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*-"+strconv.Itoa(display)))
	if len(m) == 1 {
		return m[0]
	}
	return ""
}

func userCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				c.Groups = append(c.Groups, uint32(g))
			}
		}
	}
	return c, nil
}

// TCPURL is "tcp://ADDR/" (empty without BindTCP). A display path is not
// needed: the tcp socket belongs to one server.
func (s *Server) TCPURL() string {
	if s.TCPAddr == "" {
		return ""
	}
	return "tcp://" + s.TCPAddr + "/"
}

// SocketURL is "socket://PATH" for the unix socket.
func (s *Server) SocketURL() string { return "socket://" + s.SocketPath }

// Log is everything the server, its Xvfb and its session commands printed.
func (s *Server) Log() string { return s.p.output() }

// WaitLog waits up to d for substr to appear in the server log.
func (s *Server) WaitLog(substr string, d time.Duration) error { return s.p.waitOutput(substr, d) }

// Exited reports whether the xpra server process has ended.
func (s *Server) Exited() bool { return s.p.exited() }

// Wait waits up to d for the server to exit and returns its exit code
// (-1 when a signal killed it).
func (s *Server) Wait(d time.Duration) (int, error) { return s.p.wait(d) }

// Kill SIGKILLs the server and everything it started (its Xvfb and session
// commands): the backend dies mid-session without saying goodbye. The
// socket file stays behind: `xpra list` then reports it "UNKNOWN", spends
// about 10 s re-probing it and removes it ("(cleaned up)").
func (s *Server) Kill() { s.p.killAll() }

// Stop ends the server: SIGTERM to the xpra process (its clean shutdown:
// clients get a "server shutdown" disconnect, it removes its socket, kills
// its Xvfb, and exits 143 = 128+SIGTERM), up to 10 s grace, then SIGKILL of
// every remaining process. `xpra stop` instead makes it exit 0.
// Idempotent; also run by t.Cleanup.
func (s *Server) Stop() { s.p.stop(syscall.SIGTERM, 10*time.Second) }

// Processes lists the live processes the server started (xpra, Xvfb,
// session commands); empty once it is fully stopped.
func (s *Server) Processes() []int { return s.p.members() }

// Xpra runs `xpra SUBCOMMAND TARGET ARGS...` against this server's unix
// socket with --socket-dirs pointing at its socket dir, for example
// s.Xpra(t, 10*time.Second, "info") or s.Xpra(t, d, "stop").
func (s *Server) Xpra(t testing.TB, d time.Duration, subcommand string, args ...string) (out string, exitCode int) {
	t.Helper()
	a := append([]string{subcommand, s.SocketURL(), "--socket-dirs=" + s.SocketDir}, args...)
	return RunGen(t, s.Gen, d, a...)
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
