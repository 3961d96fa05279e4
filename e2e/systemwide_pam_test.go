package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// System-wide mode (issue #6): xpra-edge runs as root, users log in with
// their system password (PAM, over TLS only), reach their own local
// sessions and get a new one started as themselves. These tests create real
// system users and run the real xpra 3.1.3 servers as those users.

// swProxy is an xpra-edge configured from a TOML file the way
// docs/SYSTEMWIDE.md describes, with a self-signed TLS certificate.
type swProxy struct {
	*proxy
	addr    string // the pam listener: TLS, and plain xpra that PAM refuses
	allow   string // a second listener with the allow module ("" if none)
	caFile  string // the self-signed CA, for --ssl-ca-certs
	ctlDir  string // socket_dir: the proxy's and its sessions' control sockets
	display string
}

type swOptions struct {
	sessDir       string // socket_dirs entry searched for users' sessions
	startSessions bool   // [sessions] start
	allowListener bool   // add a listener with auth = "allow"
	pamService    string // [pam] service; "" = "login"
	auth          string // the main listener's module; "" = "pam"
	extra         string // appended to the configuration (TOML tables)
	addr          string // the main listener's address; "" = a free port
}

// startSystemwideProxy writes a system-wide configuration and runs the
// proxy with --config.
func startSystemwideProxy(t *testing.T, o swOptions) *swProxy {
	t.Helper()
	dir := t.TempDir()
	sp := &swProxy{
		addr:    xpratest.FreeTCPAddr(t),
		ctlDir:  filepath.Join(dir, "ctl"),
		display: fmt.Sprintf(":%d", xpratest.FreeDisplay(t)),
	}
	if o.addr != "" {
		sp.addr = o.addr
	}
	state := filepath.Join(dir, "tls")
	sp.caFile = filepath.Join(state, "ca.pem")
	var b strings.Builder
	fmt.Fprintf(&b, "display = %q\nsocket_dir = %q\n", sp.display, sp.ctlDir)
	if o.sessDir != "" {
		fmt.Fprintf(&b, "socket_dirs = [%q]\n", o.sessDir)
	}
	authSpec := o.auth
	if authSpec == "" {
		authSpec = "pam"
	}
	fmt.Fprintf(&b, "auth = %q\n\n[[listener]]\nbind = %q\n", authSpec, sp.addr)
	if o.allowListener {
		sp.allow = xpratest.FreeTCPAddr(t)
		fmt.Fprintf(&b, "\n[[listener]]\nbind = %q\nauth = \"allow\"\n", sp.allow)
	}
	fmt.Fprintf(&b, "\n[tls]\nmode = \"self-signed\"\nstate_dir = %q\n", state)
	service := o.pamService
	if service == "" {
		service = "login"
	}
	fmt.Fprintf(&b, "\n[pam]\nservice = %q\n", service)
	// Failed logins are part of the test; do not ban 127.0.0.1 for them.
	fmt.Fprintf(&b, "\n[bans]\nmax_failures = 0\n")
	fmt.Fprintf(&b, "\n[sessions]\nstart = %v\ntimeout = \"60s\"\n", o.startSessions)
	b.WriteString("\n" + o.extra)
	cfg := writeFile(t, filepath.Join(dir, "systemwide.toml"), b.String())
	sp.proxy = startProxy(t, sp.addr, "--config="+cfg)
	if _, err := os.Stat(sp.caFile); err != nil {
		t.Fatalf("self-signed CA not written: %v", err)
	}
	return sp
}

// pamServiceFile is the PAM service docs/SYSTEMWIDE.md suggests for
// xpra-edge on Debian: the system's password check and account rules, and
// no logins while /etc/nologin exists, without the terminal-login modules
// of "login" (its three-second pam_faildelay among them).
const pamServiceFile = `auth     requisite  pam_nologin.so
@include common-auth
@include common-account
`

// installPAMService writes /etc/pam.d/NAME for the test and removes it after.
func installPAMService(t *testing.T, name, content string) {
	t.Helper()
	path := filepath.Join("/etc/pam.d", name)
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s exists already", path)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(path) })
}

// sslURL is ssl://USER:PASSWORD@ADDR/DISPLAY (display without the colon).
func (sp *swProxy) sslURL(user, password, display string) string {
	return "ssl://" + user + ":" + password + "@" + sp.addr + "/" + strings.TrimPrefix(display, ":")
}

// attachTLS runs `xpra attach ssl://...` trusting the proxy's CA.
func (sp *swProxy) attachTLS(t *testing.T, user, password, display string) *xpratest.Client {
	t.Helper()
	return xpratest.Attach(t, sp.sslURL(user, password, display), xpratest.ClientOptions{
		Args: []string{"--ssl-ca-certs=" + sp.caFile},
	})
}

// proxyInfo runs `xpra info :proxy-N` on the proxy's control socket
// directory and returns its output.
func (sp *swProxy) proxyInfo(t *testing.T, id int) string {
	t.Helper()
	out, code := xpratest.Run(t, 30*time.Second, "info", fmt.Sprintf(":proxy-%d", id), "--socket-dirs="+sp.ctlDir)
	if code != 0 {
		t.Fatalf("xpra info :proxy-%d: exit %d\n%s", id, code, out)
	}
	return out
}

// wantInfo fails unless the info output has every key=value line.
func wantInfo(t *testing.T, info string, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		line := kv[i] + "=" + kv[i+1]
		found := false
		for _, l := range strings.Split(info, "\n") {
			if strings.TrimSpace(l) == line {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("info lacks %q:\n%s", line, info)
		}
	}
}

// refused waits for a client to fail and returns its output; it fails the
// test if the client attached or its output lacks want.
func refused(t *testing.T, what string, c *xpratest.Client, want string) string {
	t.Helper()
	code, err := c.Wait(45 * time.Second)
	out := c.Output()
	if err != nil || code == 0 || strings.Contains(out, xpratest.AttachedLine) || !strings.Contains(out, want) {
		t.Fatalf("%s: want a refusal with %q; exit %d (%s), %v\n%s", what, want, code, xpratest.ExitName(code), err, out)
	}
	return out
}

// randomPassword is a fresh password that no log may ever contain.
func randomPassword(t *testing.T) string {
	t.Helper()
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "Pw" + hex.EncodeToString(b[:])
}

// sharedSocketDir is a sticky world-writable directory (like /tmp) where
// every test user's session can put its socket and the proxy looks.
func sharedSocketDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "xpra-edge-sw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	return d
}

// userName is a short account name unique to this test process.
func userName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
}

// noSecrets fails if any of the secrets appears in the proxy's log.
func noSecrets(t *testing.T, p *proxy, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if lines := grepLines(p.log.String(), s); len(lines) > 0 {
			t.Errorf("the proxy log contains a password: %q", lines)
		}
	}
}

// TestSystemwidePAMLoginOverTLS: real PAM logins of a real system user over
// TLS and wss reach the user's own running session; a wrong password, an
// unknown user and unencrypted xpra or ws are refused, the latter two with
// the reason.
func TestSystemwidePAMLoginOverTLS(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root")
	pw := randomPassword(t)
	u := xpratest.CreateUser(t, userName("xpa"), pw)
	sessDir := sharedSocketDir(t)
	s := xpratest.StartServer(t, xpratest.ServerOptions{User: u.Name, SocketDir: sessDir, Start: "xterm -T edge-" + u.Name})
	service := fmt.Sprintf("xpra-edge-e2e-%d", os.Getpid())
	installPAMService(t, service, pamServiceFile)
	sp := startSystemwideProxy(t, swOptions{sessDir: sessDir, pamService: service})

	// The right password over TLS: attached to the user's own session,
	// whose xterm (titled with the user's name) reaches the client.
	c := sp.attachTLS(t, u.Name, pw, "")
	if err := c.WaitOutput(xpratest.AttachedLine, attachTimeout); err != nil {
		t.Fatalf("right password over TLS: %v\n%s\nproxy:\n%s", err, c.Output(), sp.log.String())
	}
	w, err := c.WaitWindowInfo("xterm", attachTimeout)
	if err != nil {
		t.Fatalf("xterm window: %v", err)
	}
	if !strings.Contains(w.Title, "edge-"+u.Name) {
		t.Fatalf("the window is %q, not the xterm of %s's session", w.Title, u.Name)
	}
	wantInfo(t, sp.proxyInfo(t, 1), "proxy.user", u.Name, "proxy.auth", "pam", "proxy.display", s.Display,
		"proxy.target", "socket://"+s.SocketPath)
	c.Stop()

	// The same over secure WebSocket, on the same port.
	ws := xpratest.Attach(t, "wss://"+u.Name+":"+pw+"@"+sp.addr+"/", xpratest.ClientOptions{
		Args: []string{"--ssl-ca-certs=" + sp.caFile},
	})
	if w, err := ws.WaitWindowInfo("xterm", attachTimeout); err != nil || !strings.Contains(w.Title, "edge-"+u.Name) {
		t.Fatalf("wss: window %q (%v)\n%s\nproxy:\n%s", w.Title, err, ws.Output(), sp.log.String())
	}
	wantInfo(t, sp.proxyInfo(t, 2), "proxy.user", u.Name, "proxy.auth", "pam", "proxy.display", s.Display)
	ws.Stop()

	// A wrong password fails as xpra fails it.
	bad := sp.attachTLS(t, u.Name, pw+"x", "")
	refused(t, "wrong password", bad, "authentication failed")

	// A name PAM does not know fails the same way (no hint that it is unknown).
	ghost := sp.attachTLS(t, "no-such-user-xe", pw, "")
	refused(t, "unknown user", ghost, "authentication failed")

	// Plain xpra on the same port: refused before any password is sent,
	// with the reason.
	plain := xpratest.Attach(t, "tcp://"+u.Name+":"+pw+"@"+sp.addr+"/", xpratest.ClientOptions{})
	out := refused(t, "plain tcp", plain, "encrypted connection")
	if strings.Contains(out, "authentication failed") {
		t.Fatalf("plain tcp was told the password is wrong instead of why:\n%s", out)
	}
	// Unencrypted WebSocket: refused the same way, with the reason.
	plainWS := xpratest.Attach(t, "ws://"+u.Name+":"+pw+"@"+sp.addr+"/", xpratest.ClientOptions{})
	refused(t, "plain ws", plainWS, "encrypted connection")
	if !sp.waitLog(`transport=ws user=`+u.Name+` reason="authentication error" detail="pam authentication requires an encrypted connection`, 5*time.Second) {
		t.Fatal("the proxy did not log why plain ws was refused")
	}
	if !sp.waitLog("pam authentication requires an encrypted connection", 5*time.Second) {
		t.Fatal("the proxy did not log why plain tcp was refused")
	}
	if n := strings.Count(sp.log.String(), "started a new session"); n != 0 {
		t.Fatalf("the proxy started %d sessions with [sessions] start = false", n)
	}
	noSecrets(t, sp.proxy, pw)
}

// TestSystemwideTwoUsersOwnSessions: two users, each with sessions running
// as themselves in the same socket directory, log in over TLS with PAM;
// each reaches only their own. With two sessions the display must be named.
func TestSystemwideTwoUsersOwnSessions(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root")
	pwA, pwB := randomPassword(t), randomPassword(t)
	a := xpratest.CreateUser(t, userName("xpb"), pwA)
	b := xpratest.CreateUser(t, userName("xpc"), pwB)
	sessDir := sharedSocketDir(t)
	a1 := xpratest.StartServer(t, xpratest.ServerOptions{User: a.Name, SocketDir: sessDir, Start: "xterm -T edge-a1"})
	a2 := xpratest.StartServer(t, xpratest.ServerOptions{User: a.Name, SocketDir: sessDir, Start: "xterm -T edge-a2"})
	b1 := xpratest.StartServer(t, xpratest.ServerOptions{User: b.Name, SocketDir: sessDir, Start: "xterm -T edge-b1"})
	for _, s := range []*xpratest.Server{a1, a2, b1} {
		if owner := socketUID(t, s.SocketPath); owner != s.UID {
			t.Fatalf("socket %s is owned by uid %d, want %d", s.SocketPath, owner, s.UID)
		}
	}
	sp := startSystemwideProxy(t, swOptions{sessDir: sessDir, startSessions: true})

	// b has one session: it is picked without naming it.
	cb := sp.attachTLS(t, b.Name, pwB, "")
	if err := cb.WaitOutput(xpratest.AttachedLine, attachTimeout); err != nil {
		t.Fatalf("%s: %v\n%s", b.Name, err, cb.Output())
	}
	if w, err := cb.WaitWindowInfo("xterm", attachTimeout); err != nil || !strings.Contains(w.Title, "edge-b1") {
		t.Fatalf("%s sees window %q (%v), want edge-b1", b.Name, w.Title, err)
	}
	wantInfo(t, sp.proxyInfo(t, 1), "proxy.user", b.Name, "proxy.display", b1.Display)

	// a has two: without a display, a is told to name one (and nothing
	// is started although [sessions] start is on).
	ca := sp.attachTLS(t, a.Name, pwA, "")
	out := refused(t, a.Name+" without a display", ca, "please specify a display")
	for _, d := range []string{a1.Display, a2.Display} {
		if !strings.Contains(out, d) {
			t.Fatalf("the refusal does not list %s:\n%s", d, out)
		}
	}
	if strings.Contains(out, b1.Display) {
		t.Fatalf("%s was shown %s's display %s:\n%s", a.Name, b.Name, b1.Display, out)
	}

	// a names each of their displays and gets that session; session ids
	// go on from 2 (1 is b's, still attached).
	for i, s := range []*xpratest.Server{a1, a2} {
		c := sp.attachTLS(t, a.Name, pwA, s.Display)
		if err := c.WaitOutput(xpratest.AttachedLine, attachTimeout); err != nil {
			t.Fatalf("%s %s: %v\n%s", a.Name, s.Display, err, c.Output())
		}
		title := []string{"edge-a1", "edge-a2"}[i]
		if w, err := c.WaitWindowInfo("xterm", attachTimeout); err != nil || !strings.Contains(w.Title, title) {
			t.Fatalf("%s on %s sees window %q (%v), want %s", a.Name, s.Display, w.Title, err, title)
		}
		wantInfo(t, sp.proxyInfo(t, 2+i), "proxy.user", a.Name, "proxy.display", s.Display, "proxy.target", "socket://"+s.SocketPath)
		c.Stop()
	}

	// Each user's display is out of reach of the other, with the right
	// password of their own: not found (as if it did not exist).
	cross := sp.attachTLS(t, a.Name, pwA, b1.Display)
	refused(t, a.Name+" asking for "+b.Name+"'s display", cross, "not found")
	cross = sp.attachTLS(t, b.Name, pwB, a1.Display)
	refused(t, b.Name+" asking for "+a.Name+"'s display", cross, "not found")
	// And one user's password does not open the other's account.
	swapped := sp.attachTLS(t, b.Name, pwA, "")
	refused(t, b.Name+" with "+a.Name+"'s password", swapped, "authentication failed")

	if !strings.Contains(cb.Output(), xpratest.AttachedLine) || cb.Exited() {
		t.Fatalf("%s's session ended meanwhile:\n%s", b.Name, cb.Output())
	}
	cb.Stop()
	if n := strings.Count(sp.log.String(), "started a new session"); n != 0 {
		t.Fatalf("the proxy started %d sessions for users who have some", n)
	}
	noSecrets(t, sp.proxy, pwA, pwB)
}

// socketUID is the owner of a socket file.
func socketUID(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// cleanUpUser kills, by pid, every process running as uid (what a session
// the proxy started leaves behind) and removes /run/user/UID, where the
// proxy put that session's socket, now and after the test. uid belongs to
// an account the test created (xpratest.CreateUser), so nothing there is
// anybody else's; an earlier account with the same uid must not leave it
// stale sockets either.
func cleanUpUser(t *testing.T, uid int) {
	t.Helper()
	if uid <= 0 {
		t.Fatalf("refusing to clean up uid %d", uid)
	}
	clean := func() {
		for range 3 {
			out, _ := exec.Command("pgrep", "-u", strconv.Itoa(uid)).Output()
			pids := strings.Fields(string(out))
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		_ = os.RemoveAll("/run/user/" + strconv.Itoa(uid))
	}
	clean()
	t.Cleanup(clean)
}

// processesOf lists the command lines of uid's processes that match the
// extended regular expression re (pgrep -f).
func processesOf(uid int, re string) []string {
	out, _ := exec.Command("pgrep", "-a", "-u", strconv.Itoa(uid), "-f", re).Output()
	var l []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" {
			l = append(l, line)
		}
	}
	return l
}

// xpraClient is an xpra client command other than `xpra attach` (which
// xpratest.Attach runs), for example `xpra start ssl://...`, on its own
// Xvfb with a private HOME, in its own process group.
type xpraClient struct {
	xvfb *xpratest.Xvfb
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{}
	err  error
}

// runXpraClient starts `xpra args... ClientQuietArgs...`; t.Cleanup stops
// it (SIGINT, then SIGKILL of its process group) and it is killed after
// lifetime regardless.
func runXpraClient(t *testing.T, lifetime time.Duration, args ...string) *xpraClient {
	t.Helper()
	x := xpratest.StartXvfb(t, 1280, 1024)
	home := t.TempDir()
	for _, d := range []string{"run", "sock", "xdg/xpra"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// As the harness does: an empty start list from the configuration.
	writeFile(t, filepath.Join(home, "xdg", "xpra", "xpra.conf"), "start =\n")
	sock := filepath.Join(home, "sock")
	args = append(args, "--socket-dirs="+sock, "--socket-dir="+sock)
	args = append(args, xpratest.ClientQuietArgs...)
	c := &xpraClient{xvfb: x, log: &logBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(xpratest.XpraBin, args...)
	c.cmd.Dir = home
	c.cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(home, "run"),
		"XDG_CONFIG_DIRS=" + filepath.Join(home, "xdg"), "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"DISPLAY=" + x.Display, "LANG=C.UTF-8", "NO_AT_BRIDGE=1", "GDK_BACKEND=x11", "PYTHONDONTWRITEBYTECODE=1",
	}
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.cmd.WaitDelay = 2 * time.Second
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	timer := time.AfterFunc(lifetime, func() { _ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) })
	t.Cleanup(func() { timer.Stop(); c.stop() })
	return c
}

// stop detaches the client (SIGINT to its group), then kills the group.
func (c *xpraClient) stop() {
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-c.done
}

func (c *xpraClient) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitWindow waits for a window whose title contains title on the
// client's display: proof that the session's window crossed the proxy.
func (c *xpraClient) waitWindow(title string, d time.Duration) (xpratest.Window, error) {
	deadline := time.Now().Add(d)
	for {
		if ws, err := c.xvfb.Windows(); err == nil {
			for _, w := range ws {
				if strings.Contains(w.Title, title) {
					return w, nil
				}
			}
		}
		if c.exited() {
			return xpratest.Window{}, fmt.Errorf("window %q: the client exited: %v", title, c.err)
		}
		if time.Now().After(deadline) {
			return xpratest.Window{}, fmt.Errorf("window %q: none after %v", title, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSystemwideStartsSessionOnRequestPAM: a user with no session runs
// `xpra start ssl://USER:PASSWORD@PROXY/ --start=...`, which is how the
// xpra 3.1.3 client asks a proxy for a new session (a "start-new-session"
// dict in its hello: mode "start", display "", start [...], with connect
// left true so it attaches). xpra-edge logs the user in with PAM over TLS,
// starts the session as that user (their uid runs the server and the
// requested command), and the client attaches to it. A later plain attach
// finds that session instead of starting another; a request naming a
// display starts a second session there; the sessions outlive the proxy,
// and a new proxy finds them.
func TestSystemwideStartsSessionOnRequestPAM(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "xterm", "pgrep", "root")
	pw := randomPassword(t)
	u := xpratest.CreateUser(t, userName("xpd"), pw)
	cleanUpUser(t, u.UID)
	sp := startSystemwideProxy(t, swOptions{sessDir: sharedSocketDir(t), startSessions: true})

	title := "edge-new-" + u.Name
	c := runXpraClient(t, 3*time.Minute, "start", sp.sslURL(u.Name, pw, ""), "--ssl-ca-certs="+sp.caFile, "--start=xterm -T "+title)
	stop := startedWindow(t, sp, c, u.Name, pw, title)
	if !sp.waitLog("started a new session", 5*time.Second) {
		t.Fatal("the proxy did not log the started session")
	}
	// The session and the command the client asked for run as the user.
	if p := processesOf(u.UID, "xpra start"); len(p) == 0 {
		t.Fatalf("no xpra server runs as %s (uid %d)", u.Name, u.UID)
	}
	if p := processesOf(u.UID, "^xterm -T "+title); len(p) == 0 {
		t.Fatalf("the requested xterm does not run as %s (uid %d)", u.Name, u.UID)
	}
	if p := processesOf(0, "^xterm -T "+title); len(p) != 0 {
		t.Fatalf("the requested xterm runs as root: %q", p)
	}
	info := sp.proxyInfo(t, lastSessionID(t, sp.proxy))
	wantInfo(t, info, "proxy.user", u.Name, "proxy.auth", "pam")
	sock := infoValue(info, "proxy.target")
	wantDir := "socket:///run/user/" + strconv.Itoa(u.UID) + "/xpra/"
	if !strings.HasPrefix(sock, wantDir) {
		t.Fatalf("the session socket is %q, want one in %s", sock, wantDir)
	}
	if owner := socketUID(t, strings.TrimPrefix(sock, "socket://")); owner != u.UID {
		t.Fatalf("the new session's socket belongs to uid %d, want %d", owner, u.UID)
	}
	display := infoValue(info, "proxy.display")
	stop()

	// Without a start request, the next login attaches to that session.
	a := sp.attachTLS(t, u.Name, pw, "")
	if err := a.WaitOutput(xpratest.AttachedLine, attachTimeout); err != nil {
		t.Fatalf("second login: %v\n%s", err, a.Output())
	}
	if w, err := a.WaitWindowInfo("xterm", attachTimeout); err != nil || !strings.Contains(w.Title, title) {
		t.Fatalf("second login sees %q (%v), want %s", w.Title, err, title)
	}
	wantInfo(t, sp.proxyInfo(t, lastSessionID(t, sp.proxy)), "proxy.display", display)
	a.Stop()
	if n := strings.Count(sp.log.String(), "started a new session"); n != 1 {
		t.Fatalf("started %d sessions, want 1", n)
	}

	// A start request naming a display: a second session on that display,
	// although the user has one already.
	n := xpratest.FreeDisplay(t)
	title2 := "edge-second-" + u.Name
	c = runXpraClient(t, 3*time.Minute, "start", sp.sslURL(u.Name, pw, strconv.Itoa(n)), "--ssl-ca-certs="+sp.caFile, "--start=xterm -T "+title2)
	stop = startedWindow(t, sp, c, u.Name, pw, title2)
	wantInfo(t, sp.proxyInfo(t, lastSessionID(t, sp.proxy)), "proxy.user", u.Name, "proxy.display", ":"+strconv.Itoa(n))
	stop()
	if n := strings.Count(sp.log.String(), "started a new session"); n != 2 {
		t.Fatalf("started %d sessions, want 2", n)
	}
	noSecrets(t, sp.proxy, pw)

	// The session outlives the proxy (a restart of the service), and the
	// next proxy finds it.
	if err := sp.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("proxy stop: %v", err)
	}
	if p := processesOf(u.UID, "xpra start"); len(p) == 0 {
		t.Fatal("stopping the proxy ended the session it started")
	}
	sp2 := startSystemwideProxy(t, swOptions{sessDir: sharedSocketDir(t), startSessions: true})
	a = sp2.attachTLS(t, u.Name, pw, display)
	if w, err := a.WaitWindowInfo("xterm", attachTimeout); err != nil || !strings.Contains(w.Title, title) {
		t.Fatalf("after a proxy restart: window %q (%v)\n%s", w.Title, err, a.Output())
	}
	wantInfo(t, sp2.proxyInfo(t, 1), "proxy.display", display)
	a.Stop()
	if strings.Contains(sp2.log.String(), "started a new session") {
		t.Fatal("the new proxy started another session instead of finding the running one")
	}
}

// startedWindow waits for the window titled title of the session the
// client c asked the proxy to start, and returns what stops the client
// showing it. (An xpra 3.1.3 server may announce that window before its
// hello; the proxy forwards such early packets after the hello.)
func startedWindow(t *testing.T, sp *swProxy, c *xpraClient, user, password, title string) (stop func()) {
	t.Helper()
	if _, err := c.waitWindow(title, 90*time.Second); err != nil {
		t.Fatalf("%v\nclient:\n%s\nproxy:\n%s", err, c.log.String(), sp.log.String())
	}
	return c.stop
}

// attachStarting attaches a user who has no session yet, so that the proxy
// starts one, and waits until the client is attached.
func attachStarting(t *testing.T, p *proxy, url string, o xpratest.ClientOptions) *xpratest.Client {
	t.Helper()
	c := xpratest.Attach(t, url, o)
	if err := c.WaitOutput(xpratest.AttachedLine, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s\nproxy:\n%s", err, c.Output(), p.log.String())
	}
	return c
}

// lastSessionID is the id of the proxy's latest relayed session (its
// control socket is :proxy-ID).
func lastSessionID(t *testing.T, p *proxy) int {
	t.Helper()
	lines := grepLines(p.log.String(), `msg="session started" session=`)
	if len(lines) == 0 {
		t.Fatalf("no relayed session in the proxy log:\n%s", p.log.String())
	}
	_, rest, _ := strings.Cut(lines[len(lines)-1], `msg="session started" session=`)
	id, err := strconv.Atoi(strings.Fields(rest + " ")[0])
	if err != nil {
		t.Fatalf("session id in %q: %v", lines[len(lines)-1], err)
	}
	return id
}

// infoValue returns the value of key in `xpra info` output ("" if absent).
func infoValue(info, key string) string {
	for _, l := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && k == key {
			return v
		}
	}
	return ""
}

// createRootAlias makes a second name for uid 0 (useradd -o -u 0) with a
// password, the way a careless administrator might, and removes it
// (userdel -f, by name: root's own entry stays) in t.Cleanup.
func createRootAlias(t *testing.T, name, password string) { createAccount(t, name, password, true) }

// createSystemAccount makes a system account (useradd -r: a uid below
// UID_MIN) with a password, removed in t.Cleanup.
func createSystemAccount(t *testing.T, name, password string) {
	createAccount(t, name, password, false)
}

func createAccount(t *testing.T, name, password string, uid0 bool) {
	t.Helper()
	xpratest.RequirePeers(t, "root", "useradd", "userdel", "chpasswd")
	run := func(stdin string, args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
		cmd.Stdin = strings.NewReader(stdin)
		cmd.WaitDelay = time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			// never the password: chpasswd does not echo it
			return fmt.Errorf("%s: %w\n%s", args[0], err, out)
		}
		return nil
	}
	del := func() error { return run("", "userdel", "-f", name) }
	if u, err := user.Lookup(name); err == nil {
		if (uid0 && u.Uid != "0") || !strings.Contains(u.Name, "xpratest temporary user") {
			t.Fatalf("user %q exists and is not a leftover of this test", name)
		}
		if err := del(); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"-o", "-u", "0", "-g", "0"}
	if !uid0 {
		ids = []string{"-r", "-U"}
	}
	if err := run("", append(append([]string{"useradd"}, ids...), "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
		"-c", "xpratest temporary user", name)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := del(); err != nil {
			t.Errorf("remove the uid 0 alias %q: %v", name, err)
		}
		if u, err := user.LookupId("0"); uid0 && (err != nil || u.Username != "root") {
			t.Errorf("uid 0 after the cleanup: %v %v", u, err)
		}
	})
	if err := run(name+":"+password+"\n", "chpasswd"); err != nil {
		t.Fatal(err)
	}
}

// TestSystemwideRefusesRootAndUnknownNames: uid 0 never gets a session
// through the proxy, not with the right system password of a uid-0 account
// (PAM over TLS), not by name with the allow module, not when asking for a
// new session; and a name that is not a system user is an error, never a
// fallback to some other account, although starting sessions is on.
func TestSystemwideRefusesRootAndUnknownNames(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root")
	pw := randomPassword(t)
	alias := userName("xpr")
	createRootAlias(t, alias, pw)
	sp := startSystemwideProxy(t, swOptions{sessDir: sharedSocketDir(t), startSessions: true, allowListener: true})

	// The right password of a uid-0 account: refused before PAM is asked,
	// with the answer of a wrong password (no hint that it was right).
	c := sp.attachTLS(t, alias, pw, "")
	refused(t, "uid-0 alias over TLS", c, "authentication failed")
	if !sp.waitLog("is root or a system account", 5*time.Second) {
		t.Fatal("the proxy did not log why uid 0 was refused")
	}
	// The same for a system account (uid below UID_MIN) and its right password.
	sysName := userName("xps")
	createSystemAccount(t, sysName, pw)
	c = sp.attachTLS(t, sysName, pw, "")
	refused(t, "system account over TLS", c, "authentication failed")
	// Nor when the client asks for a new session.
	s := runXpraClient(t, 2*time.Minute, "start", sp.sslURL(alias, pw, ""), "--ssl-ca-certs="+sp.caFile, "--start=xterm")
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the start request of uid 0 did not end:\n%s", s.log.String())
	}
	if out := s.log.String(); !strings.Contains(out, "authentication failed") {
		t.Fatalf("start request of uid 0: %v\n%s", s.err, out)
	}

	// The allow module takes any password, so only the name decides.
	for _, name := range []string{"root", "0", "daemon", "1", sysName} {
		c := xpratest.Attach(t, "tcp://"+name+":x@"+sp.allow+"/", xpratest.ClientOptions{})
		refused(t, "allow module as "+name, c, "cannot access sessions")
	}
	if !sp.waitLog("is a system account (below UID_MIN", 5*time.Second) {
		t.Fatal("the proxy did not log why a system account was refused")
	}
	c = xpratest.Attach(t, "tcp://no-such-user-xe:x@"+sp.allow+"/", xpratest.ClientOptions{})
	refused(t, "allow module, unknown user", c, "cannot access sessions")
	if !sp.waitLog(`unknown system user \"no-such-user-xe\"`, 5*time.Second) {
		t.Fatalf("the proxy did not log the unknown user:\n%s", sp.log.String())
	}

	if n := strings.Count(sp.log.String(), "started a new session"); n != 0 {
		t.Fatalf("the proxy started %d sessions", n)
	}
	if n := strings.Count(sp.log.String(), `msg="session started"`); n != 0 {
		t.Fatalf("the proxy relayed %d sessions", n)
	}
	noSecrets(t, sp.proxy, pw)
}

// TestSystemwideStartRequestWithoutAttach: `xpra start --attach=no
// ssl://USER:PASSWORD@PROXY/ --start=...` sends the start-new-session dict
// with connect=False: the proxy starts the session as the user and answers
// with a hello naming its display instead of connecting, as xpra's proxy
// does; the client exits 0 and the user then attaches to that session.
//
// The xpra 3.1.3 client never prints the "session now available on display
// :N" line it has for this: it looks the display up with a str key in a
// hello whose keys rencode and bencode decode as bytes. So the display is
// taken from the proxy's log line here.
func TestSystemwideStartRequestWithoutAttach(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "xterm", "pgrep", "root")
	pw := randomPassword(t)
	u := xpratest.CreateUser(t, userName("xpe"), pw)
	cleanUpUser(t, u.UID)
	sp := startSystemwideProxy(t, swOptions{sessDir: sharedSocketDir(t), startSessions: true})

	title := "edge-detached-" + u.Name
	c := runXpraClient(t, 2*time.Minute, "start", "--attach=no", sp.sslURL(u.Name, pw, ""),
		"--ssl-ca-certs="+sp.caFile, "--start=xterm -T "+title)
	select {
	case <-c.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("the start request did not end:\n%s\nproxy:\n%s", c.log.String(), sp.log.String())
	}
	if c.err != nil {
		t.Fatalf("start request: %v\n%s\nproxy:\n%s", c.err, c.log.String(), sp.log.String())
	}
	if !sp.waitLog("started a new session", 5*time.Second) {
		t.Fatalf("no session was started:\n%s", sp.log.String())
	}
	located := grepLines(sp.log.String(), "session located without connecting")
	if len(located) != 1 {
		t.Fatalf("want one 'session located without connecting' line:\n%s", sp.log.String())
	}
	_, display, _ := strings.Cut(located[0], " display=")
	display = strings.Fields(display + " ")[0]
	if !strings.HasPrefix(display, ":") {
		t.Fatalf("no display in %q", located[0])
	}
	if strings.Contains(sp.log.String(), `msg="session started"`) {
		t.Fatal("the proxy connected a client that asked it not to")
	}
	if p := processesOf(u.UID, "^xterm -T "+title); len(p) == 0 {
		t.Fatalf("the requested xterm does not run as %s (uid %d)", u.Name, u.UID)
	}
	a := sp.attachTLS(t, u.Name, pw, display)
	if w, err := a.WaitWindowInfo("xterm", attachTimeout); err != nil || !strings.Contains(w.Title, title) {
		t.Fatalf("attach to %s: window %q (%v)\n%s", display, w.Title, err, a.Output())
	}
	wantInfo(t, sp.proxyInfo(t, 1), "proxy.user", u.Name, "proxy.display", display)
	a.Stop()
	noSecrets(t, sp.proxy, pw)
}

// replaceLines replaces whole lines of text (each old line must occur
// exactly once, so the test notices when the file it adapts changes).
func replaceLines(t *testing.T, text string, oldNew ...string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(oldNew); i += 2 {
		n := 0
		for j, l := range lines {
			if l == oldNew[i] {
				lines[j] = oldNew[i+1]
				n++
			}
		}
		if n != 1 {
			t.Fatalf("line %q occurs %d times, want 1", oldNew[i], n)
		}
	}
	return strings.Join(lines, "\n")
}

// TestSystemwideExampleConfig runs deploy/systemwide.example.toml, changed
// only where a test must (ports, directories, a self-signed certificate
// instead of ACME): plain xpra is refused on its TLS-only port, and a user
// with no session who logs in with PAM over TLS gets one started as
// themselves, running what the user's own xpra.conf says, and attaches.
func TestSystemwideExampleConfig(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "pgrep", "root")
	const example = "../deploy/systemwide.example.toml"
	if out, code := edgeCmd(t, "check-config", example); code != 0 {
		t.Fatalf("check-config %s: exit %d\n%s", example, code, out)
	}
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := xpratest.FreeTCPAddr(t)
	state := filepath.Join(dir, "tls")
	ctl := filepath.Join(dir, "ctl")
	sessDir := sharedSocketDir(t)
	cfg := replaceLines(t, string(raw),
		`display = ":443"`, fmt.Sprintf("display = \":%d\"", xpratest.FreeDisplay(t)),
		`socket_dir = "/run/xpra-edge"`, fmt.Sprintf("socket_dir = %q", ctl),
		`socket_dirs = ["/run/xpra"]`, fmt.Sprintf("socket_dirs = [%q]", sessDir),
		`bind = "0.0.0.0:443"`, fmt.Sprintf("bind = %q", addr),
		`mode = "acme"`, `mode = "self-signed"`,
		`domains = ["desk.example.com"]`, ``,
		`email = "admin@example.com"`, ``,
		`state_dir = "/var/lib/xpra-edge/tls"`, fmt.Sprintf("state_dir = %q", state),
		`bind = "127.0.0.1:9100"`, fmt.Sprintf("bind = %q", xpratest.FreeTCPAddr(t)),
	)
	p := startProxy(t, addr, "--config="+writeFile(t, filepath.Join(dir, "systemwide.toml"), cfg))

	pw := randomPassword(t)
	u := xpratest.CreateUser(t, userName("xpf"), pw)
	cleanUpUser(t, u.UID)
	// What a started session runs comes from the user's own xpra.conf.
	title := "edge-conf-" + u.Name
	writeUserFile(t, u, ".config/xpra/xpra.conf", "start-child = xterm -T "+title+"\n")

	plain := xpratest.Attach(t, "tcp://"+u.Name+":"+pw+"@"+addr+"/", xpratest.ClientOptions{})
	refused(t, "plain xpra on the TLS-only port", plain, "this port requires TLS")

	c := attachStarting(t, p, "ssl://"+u.Name+":"+pw+"@"+addr+"/", xpratest.ClientOptions{
		Args: []string{"--ssl-ca-certs=" + filepath.Join(state, "ca.pem")},
	})
	if !p.waitLog("started a new session", 5*time.Second) {
		t.Fatal("the proxy did not log the started session")
	}
	if l := processesOf(u.UID, "xpra start"); len(l) == 0 {
		t.Fatalf("no xpra server runs as %s (uid %d)", u.Name, u.UID)
	}
	if _, err := c.WaitWindowInfo("xterm", attachTimeout); err != nil {
		t.Fatalf("the start-child of the user's xpra.conf: %v", err)
	}
	if l := processesOf(u.UID, "^xterm -T "+title); len(l) == 0 {
		t.Fatalf("the user's start-child does not run as %s", u.Name)
	}
	c.Stop()
	noSecrets(t, p, pw)
}

// writeUserFile writes a file under the user's home, owned by the user,
// creating the directories on the way (also owned by the user).
func writeUserFile(t *testing.T, u *xpratest.User, rel, content string) {
	t.Helper()
	path := filepath.Join(u.Home, rel)
	dir := u.Home
	for _, part := range strings.Split(filepath.Dir(rel), "/") {
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		if err := os.Chown(dir, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
}

// writeSelfSignedCert writes a PEM certificate (its own CA) for 127.0.0.1
// and its key, as an operator's --ssl-cert and --ssl-key files.
func writeSelfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return certFile, keyFile
}

// TestSystemwideCommandLineFlags: the xpra-style command line of
// docs/SYSTEMWIDE.md (no configuration file): --tcp-auth=pam, the
// operator's certificate with --ssl-cert/--ssl-key, --proxy-start-sessions,
// and a TLS-only port (--bind-tcp=ADDR,plain=no).
// A PAM user without a session logs in over TLS and gets one.
func TestSystemwideCommandLineFlags(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "pgrep", "root")
	dir := t.TempDir()
	cert, key := writeSelfSignedCert(t, dir)
	addr := xpratest.FreeTCPAddr(t)
	ctl := filepath.Join(dir, "ctl")
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--bind-tcp="+addr+",plain=no", "--tcp-auth=pam",
		"--ssl-cert="+cert, "--ssl-key="+key, "--proxy-start-sessions=yes",
		"--socket-dir="+ctl, "--socket-dirs="+sharedSocketDir(t))

	pw := randomPassword(t)
	u := xpratest.CreateUser(t, userName("xpg"), pw)
	cleanUpUser(t, u.UID)
	c := attachStarting(t, p, "ssl://"+u.Name+":"+pw+"@"+addr+"/", xpratest.ClientOptions{Args: []string{"--ssl-ca-certs=" + cert}})
	if !p.waitLog("started a new session", 5*time.Second) {
		t.Fatal("the proxy did not log the started session")
	}
	if l := processesOf(u.UID, "xpra start"); len(l) == 0 {
		t.Fatalf("no xpra server runs as %s (uid %d)", u.Name, u.UID)
	}
	c.Stop()
	// plain=no: TLS only.
	plain := xpratest.Attach(t, "tcp://"+u.Name+":"+pw+"@"+addr+"/", xpratest.ClientOptions{})
	refused(t, "plain tcp", plain, "this port requires TLS")
	noSecrets(t, p, pw)
}
