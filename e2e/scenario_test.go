package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

const attachTimeout = 60 * time.Second

// TestScenario2 is the seed's second scenario: sqlite users, remote TCP
// sessions, per-user options, a password file; then xpra's own control
// tools against the proxy and its sessions.
func TestScenario2SQLiteRemoteSessions(t *testing.T) { scenario2(t, xpratest.Xpra3) }

// TestScenario2Xpra6 is the same scenario with xpra 6.x servers, clients
// and control tools.
func TestScenario2Xpra6(t *testing.T) { scenario2(t, xpratest.Xpra6) }

func scenario2(t *testing.T, gen xpratest.Gen) {
	xpratest.RequirePeers(t, gen.String(), "Xvfb")
	dir := t.TempDir()
	s200 := xpratest.StartServer(t, xpratest.ServerOptions{Gen: gen, BindTCP: xpratest.FreeTCPAddr(t)})
	s201 := xpratest.StartServer(t, xpratest.ServerOptions{Gen: gen, BindTCP: xpratest.FreeTCPAddr(t)})

	db := filepath.Join(dir, "xpra-auth.sdb")
	for _, args := range [][]string{
		{"sqlite", db, "create"},
		{"sqlite", db, "add", "foo", "bar", "nobody", "nobody", "tcp://" + s200.TCPAddr + "/"},
		{"sqlite", db, "add", "moo", "cow", "nobody", "nobody", "tcp://" + s201.TCPAddr + "/", "", "compression=0"},
	} {
		if out, code := edgeCmd(t, args...); code != 0 {
			t.Fatalf("xpra-edge %v: exit %d\n%s", args, code, out)
		}
	}
	addr := xpratest.FreeTCPAddr(t)
	sockDir := filepath.Join(dir, "sockets")
	display := fmt.Sprintf(":%d", xpratest.FreeDisplay(t))
	p := startProxy(t, addr, display, "--bind-tcp="+addr+",auth=sqlite,filename="+db, "--socket-dir="+sockDir)

	// foo attaches with the password in the URL; the xterm of :200 shows.
	foo := xpratest.Attach(t, "tcp://foo:bar@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	if err := foo.WaitOutput("Attached to", attachTimeout); err != nil {
		t.Fatalf("foo: %v\n%s", err, foo.Output())
	}
	if err := foo.WaitWindow("xterm", attachTimeout); err != nil {
		t.Fatalf("foo's xterm window: %v", err)
	}

	// moo attaches with a password file, through compression=0.
	pwFile := writeFile(t, filepath.Join(dir, "password.txt"), "cow")
	moo := xpratest.Attach(t, "tcp://moo@"+addr+"/", xpratest.ClientOptions{Gen: gen, PasswordFile: pwFile})
	if err := moo.WaitOutput("Attached to", attachTimeout); err != nil {
		t.Fatalf("moo: %v\n%s", err, moo.Output())
	}
	if err := moo.WaitWindow("xterm", attachTimeout); err != nil {
		t.Fatalf("moo's xterm window: %v", err)
	}

	// A wrong password is refused as xpra refuses it.
	bad := xpratest.Attach(t, "tcp://foo:nope@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	code, err := bad.Wait(30 * time.Second)
	if err != nil || code == 0 || !strings.Contains(bad.Output(), "authentication failed") {
		t.Fatalf("wrong password: exit %d, %v\n%s", code, err, bad.Output())
	}

	// info, version and id through the proxy's TCP port.
	out, code := xpratest.RunGen(t, gen, 30*time.Second, "version", "tcp://"+addr+"/")
	if code != 0 || !strings.Contains(out, map[xpratest.Gen]string{xpratest.Xpra3: "3.1", xpratest.Xpra6: "6."}[gen]) {
		t.Fatalf("xpra version: exit %d\n%s", code, out)
	}
	out, code = xpratest.RunGen(t, gen, 30*time.Second, "info", "tcp://foo:bar@"+addr+"/")
	if code != 0 || !strings.Contains(out, "server.mode=proxy") {
		t.Fatalf("xpra info: exit %d\n%s", code, out)
	}
	out, code = xpratest.RunGen(t, gen, 30*time.Second, "id", "tcp://foo:bar@"+addr+"/")
	if code != 0 || !strings.Contains(out, "session-type=proxy") {
		t.Fatalf("xpra id: exit %d\n%s", code, out)
	}

	// xpra list shows the proxy and both sessions.
	out, _ = xpratest.RunGen(t, gen, 30*time.Second, "list", "--socket-dirs="+sockDir)
	for _, want := range []string{"LIVE session at " + display, "LIVE session at :proxy-1", "LIVE session at :proxy-2"} {
		if !strings.Contains(out, want) {
			t.Fatalf("xpra list lacks %q:\n%s", want, out)
		}
	}
	// xpra info :proxy-N shows the proxy's view of that session.
	out, code = xpratest.RunGen(t, gen, 30*time.Second, "info", ":proxy-2", "--socket-dirs="+sockDir)
	if code != 0 || !strings.Contains(out, "proxy.user=moo") {
		t.Fatalf("xpra info :proxy-2: exit %d\n%s", code, out)
	}

	// xpra stop :proxy-2 ends moo's session and no other.
	out, code = xpratest.RunGen(t, gen, 30*time.Second, "stop", ":proxy-2", "--socket-dirs="+sockDir)
	if code != 0 {
		t.Fatalf("xpra stop :proxy-2: exit %d\n%s", code, out)
	}
	if _, err := moo.Wait(15 * time.Second); err != nil {
		t.Fatalf("moo did not exit after its session was stopped: %v", err)
	}
	if !strings.Contains(moo.Output(), "server shutdown") {
		t.Fatalf("moo was not told server shutdown:\n%s", moo.Output())
	}
	if strings.Contains(foo.Output(), "server shutdown") {
		t.Fatal("foo was disconnected too")
	}

	// Killing foo's backend disconnects foo within 2 s; the proxy lives on.
	s200.Kill()
	killed := time.Now()
	if _, err := foo.Wait(10 * time.Second); err != nil {
		t.Fatalf("foo did not exit after its backend died: %v", err)
	}
	if d := time.Since(killed); d > 2*time.Second+500*time.Millisecond {
		t.Fatalf("foo learned of the dead backend after %v", d)
	}
	if !p.waitLog("backend connection lost", 5*time.Second) {
		t.Fatal("the proxy did not log the lost backend")
	}
	moo2 := xpratest.Attach(t, "tcp://moo:cow@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	if err := moo2.WaitOutput("Attached to", attachTimeout); err != nil {
		t.Fatalf("moo after foo's backend died: %v\n%s", err, moo2.Output())
	}
	moo2.Stop()

	// xpra stop :DISPLAY stops the proxy, which exits 0.
	out, code = xpratest.RunGen(t, gen, 30*time.Second, "stop", display, "--socket-dirs="+sockDir)
	if code != 0 {
		t.Fatalf("xpra stop %s: exit %d\n%s", display, code, out)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("proxy exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not stop")
	}

	// No secret reached the log.
	for _, secret := range []string{"bar", "cow", "nope"} {
		if lines := grepLines(p.log.String(), secret); len(lines) > 0 {
			t.Errorf("the log contains a password %q: %q", secret, lines)
		}
	}
}

// TestDatabaseFromXprasOwnTool: a database made by xpra's sqlite tool works.
func TestDatabaseFromXprasOwnTool(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb")
	dir := t.TempDir()
	srv := xpratest.StartServer(t, xpratest.ServerOptions{BindTCP: xpratest.FreeTCPAddr(t)})
	db := filepath.Join(dir, "made-by-xpra.sdb")
	for _, args := range [][]string{
		{"-m", "xpra.server.auth.sqlite_auth", db, "create"},
		{"-m", "xpra.server.auth.sqlite_auth", db, "add", "joe", "s3cret", "nobody", "nogroup", "tcp://" + srv.TCPAddr + "/"},
	} {
		cmd := exec.Command("/usr/bin/python3", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("xpra's sqlite tool %v: %v\n%s", args, err, out)
		}
	}
	addr := xpratest.FreeTCPAddr(t)
	startProxy(t, addr, "--bind-tcp="+addr, "--tcp-auth=sqlite:filename="+db, "--socket-dir="+filepath.Join(dir, "s"))
	c := xpratest.Attach(t, "tcp://joe:s3cret@"+addr+"/", xpratest.ClientOptions{})
	if err := c.WaitOutput("Attached to", attachTimeout); err != nil {
		t.Fatalf("%v\n%s", err, c.Output())
	}
	c.Stop()
	// And xpra's tool reads what xpra-edge wrote.
	if out, code := edgeCmd(t, "sqlite", db, "add", "ann", "pw", "nobody", "nogroup", "tcp://x:1/"); code != 0 {
		t.Fatalf("add: %s", out)
	}
	out, err := exec.Command("/usr/bin/python3", "-m", "xpra.server.auth.sqlite_auth", db, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ann") {
		t.Fatalf("xpra's tool lists: %v\n%s", err, out)
	}
}

// TestScenario1LocalSessionsAllow is the seed's first scenario: the allow
// module and the local sessions of the system user the client names.
func TestScenario1LocalSessionsAllow(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root")
	user := fmt.Sprintf("xe%d", os.Getpid()%100000)
	xpratest.CreateUser(t, user, "irrelevant")
	dir := t.TempDir()
	// The user's sessions put their sockets where the user can write and
	// the proxy can look: a sticky world-writable directory, like /tmp.
	sessDir, err := os.MkdirTemp("", "xpra-edge-e2e-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sessDir) })
	if err := os.Chmod(sessDir, 0o1777); err != nil {
		t.Fatal(err)
	}
	a := xpratest.StartServer(t, xpratest.ServerOptions{User: user, SocketDir: sessDir})

	addr := xpratest.FreeTCPAddr(t)
	startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--tcp-auth=allow", "--bind-tcp="+addr,
		"--socket-dirs="+sessDir, "--socket-dir="+filepath.Join(dir, "ctl"))

	// One session: it is picked without naming it.
	c := xpratest.Attach(t, "tcp://"+user+":bar@"+addr+"/", xpratest.ClientOptions{})
	if err := c.WaitOutput("Attached to", attachTimeout); err != nil {
		t.Fatalf("%v\n%s", err, c.Output())
	}
	if err := c.WaitWindow("xterm", attachTimeout); err != nil {
		t.Fatalf("xterm window: %v", err)
	}
	c.Stop()

	// Two sessions: the display must be named.
	b := xpratest.StartServer(t, xpratest.ServerOptions{User: user, SocketDir: sessDir})
	c = xpratest.Attach(t, "tcp://"+user+":bar@"+addr+"/", xpratest.ClientOptions{})
	if _, err := c.Wait(30 * time.Second); err != nil || !strings.Contains(c.Output(), "please specify a display") {
		t.Fatalf("without a display: %v\n%s", err, c.Output())
	}
	for _, s := range []*xpratest.Server{a, b} {
		c = xpratest.Attach(t, "tcp://"+user+":bar@"+addr+"/"+strings.TrimPrefix(s.Display, ":"), xpratest.ClientOptions{})
		if err := c.WaitOutput("Attached to", attachTimeout); err != nil {
			t.Fatalf("display %s: %v\n%s", s.Display, err, c.Output())
		}
		c.Stop()
	}
	// A user that does not exist here cannot reach any session.
	c = xpratest.Attach(t, "tcp://no-such-user-xe:bar@"+addr+"/", xpratest.ClientOptions{})
	if _, err := c.Wait(30 * time.Second); err != nil || !strings.Contains(c.Output(), "cannot access sessions") {
		t.Fatalf("unknown user: %v\n%s", err, c.Output())
	}
}

var _ = syscall.SIGTERM

// TestDeclaredDisplaysOfAnotherUID: a sqlite row declares ":A,:B", local
// sessions an admin started as another user in the proxy's --socket-dir (not
// the row's uid). xpra 3.1.3's proxy attaches to either by display; so must
// we (the router once looked only at sockets owned by the row's uid).
func TestDeclaredDisplaysOfAnotherUID(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root", "useradd")
	dir, err := os.MkdirTemp("", "xe-declared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the servers' user must reach the shared dir
		t.Fatal(err)
	}
	owner := xpratest.CreateUser(t, "xedeclown", "unused-pw")
	sockDir := filepath.Join(dir, "shared")
	if err := os.Mkdir(sockDir, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sockDir, 0o1777); err != nil {
		t.Fatal(err)
	}
	a := xpratest.StartServer(t, xpratest.ServerOptions{User: owner.Name, SocketDir: sockDir})
	b := xpratest.StartServer(t, xpratest.ServerOptions{User: owner.Name, SocketDir: sockDir})
	db := filepath.Join(dir, "auth.sdb")
	for _, args := range [][]string{
		{"sqlite", db, "create"},
		{"sqlite", db, "add", "multi", "mmm", "nobody", "nobody", a.Display + "," + b.Display},
	} {
		if out, code := edgeCmd(t, args...); code != 0 {
			t.Fatalf("xpra-edge %v: exit %d\n%s", args, code, out)
		}
	}
	addr := xpratest.FreeTCPAddr(t)
	display := fmt.Sprintf(":%d", xpratest.FreeDisplay(t))
	startProxy(t, addr, display, "--bind-tcp="+addr+",auth=sqlite,filename="+db,
		"--socket-dir="+filepath.Join(dir, "proxy"), "--socket-dirs="+sockDir)

	// Without a display both are offered, by name.
	none := xpratest.Attach(t, "tcp://multi:mmm@"+addr+"/", xpratest.ClientOptions{})
	if _, err := none.Wait(30 * time.Second); err != nil || !strings.Contains(none.Output(), "please specify a display") {
		t.Fatalf("no display named: %v\n%s", err, none.Output())
	}
	// Each attaches by display.
	for _, s := range []*xpratest.Server{b, a} {
		c := xpratest.Attach(t, "tcp://multi:mmm@"+addr+"/"+strings.TrimPrefix(s.Display, ":"), xpratest.ClientOptions{})
		if err := c.WaitWindow("xterm", attachTimeout); err != nil {
			t.Fatalf("display %s: %v\n%s", s.Display, err, c.Output())
		}
		c.Stop()
	}
}
