package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// TestStartsSessionForUserWithoutOne: a user with no session logs in; the
// proxy, running as root, starts one as that user and the client attaches.
//
// It also proves the default: running as root, the proxy starts sessions
// without being told (xpra's proxy-start-sessions defaults to yes).
func TestStartsSessionForUserWithoutOne(t *testing.T) {
	startsSessionForUserWithoutOne(t, xpratest.Xpra3, "xs")
}

// TestStartsXpra6SessionForUserWithoutOne: the same when the users' xpra is
// 6.x ([sessions] xpra), with a 6.x client.
func TestStartsXpra6SessionForUserWithoutOne(t *testing.T) {
	startsSessionForUserWithoutOne(t, xpratest.Xpra6, "xs6")
}

func startsSessionForUserWithoutOne(t *testing.T, gen xpratest.Gen, prefix string) {
	xpratest.RequirePeers(t, gen.String(), "Xvfb", "root")
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	xpratest.CreateUser(t, name, "irrelevant")
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	// Stop whatever the proxy started for the user, by pid, and remove the
	// runtime directory it made.
	cleanUpUser(t, uid)
	dir := t.TempDir()
	addr := xpratest.FreeTCPAddr(t)
	cfg := writeFile(t, filepath.Join(dir, "edge.toml"), fmt.Sprintf("[sessions]\nxpra = %q\n", gen.Bin()))
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--config="+cfg, "--bind-tcp="+addr, "--tcp-auth=allow",
		"--socket-dir="+filepath.Join(dir, "ctl"))

	c := xpratest.Attach(t, "tcp://"+name+":x@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	if err := c.WaitOutput("Attached to", 90*time.Second); err != nil {
		t.Fatalf("%v\n%s\nproxy:\n%s", err, c.Output(), p.log.String())
	}
	if !p.waitLog("started a new session", 5*time.Second) {
		t.Fatal("the proxy did not log a started session")
	}
	// The started server runs as the user, never as root.
	out, err := exec.Command("pgrep", "-u", strconv.Itoa(uid), "-f", "xpra start").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("no xpra server running as %s (uid %d): %v %s", name, uid, err, out)
	}
	c.Stop()

	// The next login finds that session instead of starting another.
	c = xpratest.Attach(t, "tcp://"+name+":x@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	if err := c.WaitOutput("Attached to", 60*time.Second); err != nil {
		t.Fatalf("second login: %v\n%s", err, c.Output())
	}
	c.Stop()
	if n := strings.Count(p.log.String(), "started a new session"); n != 1 {
		t.Fatalf("started %d sessions, want 1", n)
	}
}

// TestStarterNeverOpensPathsFromOutput: what `xpra start` prints is the
// user's to choose (a usercustomize.py runs first). Root once opened the
// "log file" the output named, a path the user picked (their pty became
// the proxy's controlling terminal). Now only the log file the proxy named
// itself is read: a planted file named in the output never is.
func TestStarterNeverOpensPathsFromOutput(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root")
	name := fmt.Sprintf("xo%d", os.Getpid()%100000)
	u := xpratest.CreateUser(t, name, "irrelevant")
	cleanUpUser(t, u.UID)
	planted := filepath.Join(u.Home, "planted.log")
	site := filepath.Join(u.Home, ".local/lib/python3.11/site-packages")
	for path, content := range map[string]string{
		planted:                                 "PLANTED-LOG-CONTENT\n",
		filepath.Join(site, "usercustomize.py"): "import sys\nprint('Actual log file name is now: " + planted + "', flush=True)\nsys.exit(1)\n",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, content)
	}
	if out, err := exec.Command("chown", "-R", name+":", u.Home).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	dir := t.TempDir()
	addr := xpratest.FreeTCPAddr(t)
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--bind-tcp="+addr, "--tcp-auth=allow",
		"--socket-dir="+filepath.Join(dir, "ctl"))
	c := xpratest.Attach(t, "tcp://"+name+":x@"+addr+"/", xpratest.ClientOptions{})
	if code, err := c.Wait(60 * time.Second); err != nil || code == 0 || !strings.Contains(c.Output(), "failed to start a new session") {
		t.Fatalf("want a failed start: exit %d, %v\n%s", code, err, c.Output())
	}
	if !p.waitLog("start a session for "+name, 5*time.Second) {
		t.Fatalf("the proxy did not log the failed start:\n%s", p.log.String())
	}
	if lines := grepLines(p.log.String(), "PLANTED-LOG-CONTENT"); len(lines) > 0 {
		t.Fatalf("the proxy read a file named in xpra's output: %q", lines)
	}
}

// TestAnySystemUserRefusedOnNetworkAsRoot: as root, a listener on a
// non-loopback address with a module that lets the client name any system
// user (allow, none, password) is refused at start, unless the listener
// says any_system_user = true. check-config builds what a start builds
// without binding, so nothing listens off loopback in this test.
func TestAnySystemUserRefusedOnNetworkAsRoot(t *testing.T) {
	xpratest.RequirePeers(t, "root")
	dir := t.TempDir()
	for _, tc := range []struct {
		module, bind, extra string
		ok                  bool
	}{
		{"allow", "0.0.0.0:14599", "", false},
		{"password,value=x", "[::]:14599", "", false},
		{"none", "0.0.0.0:14599", "any_system_user = true\n", true},
		{"allow", "127.0.0.1:14599", "", true},
		{"toml", "0.0.0.0:14599", "", true},
	} {
		cfg := writeFile(t, filepath.Join(dir, "edge.toml"), fmt.Sprintf("[[listener]]\nbind = %q\nauth = %q\n%s", tc.bind, tc.module, tc.extra))
		out, code := edgeCmd(t, "check-config", cfg)
		if (code == 0) != tc.ok {
			t.Errorf("%s on %s (%q): exit %d\n%s", tc.module, tc.bind, tc.extra, code, out)
		}
		if !tc.ok && !strings.Contains(out, "any_system_user") {
			t.Errorf("%s on %s: the refusal does not say what to do:\n%s", tc.module, tc.bind, out)
		}
	}
}

// TestStartsBoundedPerUser: each started session is an X server; a user
// who has [sessions] max_per_user live sessions gets a refusal, with the
// reason, instead of another one.
func TestStartsBoundedPerUser(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root")
	name := fmt.Sprintf("xm%d", os.Getpid()%100000)
	u := xpratest.CreateUser(t, name, "irrelevant")
	cleanUpUser(t, u.UID)
	dir := t.TempDir()
	addr := xpratest.FreeTCPAddr(t)
	cfg := writeFile(t, filepath.Join(dir, "edge.toml"), "[sessions]\nmax_per_user = 1\n")
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--config="+cfg, "--bind-tcp="+addr, "--tcp-auth=allow",
		"--socket-dir="+filepath.Join(dir, "ctl"))
	c := xpratest.Attach(t, "tcp://"+name+":x@"+addr+"/", xpratest.ClientOptions{})
	if err := c.WaitOutput("Attached to", 90*time.Second); err != nil {
		t.Fatalf("first session: %v\n%s\nproxy:\n%s", err, c.Output(), p.log.String())
	}
	c.Stop()
	// A second one, asked for explicitly: refused.
	s := runXpraClient(t, 2*time.Minute, "start", "tcp://"+name+":x@"+addr+"/", "--start=xterm")
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the second start request did not end:\n%s", s.log.String())
	}
	if out := s.log.String(); !strings.Contains(out, "too many sessions for this user") {
		t.Fatalf("second start: %v\n%s\nproxy:\n%s", s.err, out, p.log.String())
	}
	if n := strings.Count(p.log.String(), "started a new session"); n != 1 {
		t.Fatalf("started %d sessions, want 1", n)
	}
}
