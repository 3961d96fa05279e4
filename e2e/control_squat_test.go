package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/sockdir"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// TestControlToolsRefuseSquatters: in a shared 1777 socket directory a
// local user can create the proxy's socket name first. The admin's
// xpra-edge info/stop/reload then refuse to talk to it (SO_PEERCRED names
// another uid), instead of sending it requests or signalling the pid its
// answer names.
func TestControlToolsRefuseSquatters(t *testing.T) {
	xpratest.RequirePeers(t, "root", "useradd", "runuser")
	u := xpratest.CreateUser(t, userName("xsq"), "irrelevant")
	dir, err := os.MkdirTemp("", "xe-squat-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, sockdir.SocketName(":443"))
	// The squatter: a listener on the proxy's socket name, as another user.
	squat := exec.Command("runuser", "-u", u.Name, "--", "/usr/bin/python3", "-c",
		"import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(8)\nwhile True:\n c,_=s.accept()\n time.sleep(30)\n", sock)
	squat.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := squat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-squat.Process.Pid, syscall.SIGKILL); _ = squat.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for sockdir.Probe(sock, time.Second) != sockdir.StateLive {
		if time.Now().After(deadline) {
			t.Fatal("the squatter's socket did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, cmd := range []string{"info", "stop", "reload"} {
		began := time.Now()
		out, code := edgeCmd(t, cmd, "--socket-dir", dir, ":443")
		if code == 0 || !strings.Contains(out, "not talking to it") {
			t.Errorf("xpra-edge %s against a squatter: exit %d\n%s", cmd, code, out)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("xpra-edge %s took %v: it talked to the squatter", cmd, d)
		}
	}
}

// TestUnixListenerBansPerUID: on a unix listener, failures ban the local
// uid that made them, not every local client (the key was "unix" for all).
func TestUnixListenerBansPerUID(t *testing.T) {
	xpratest.RequirePeers(t, "root", "useradd", "runuser")
	u := xpratest.CreateUser(t, userName("xub"), "irrelevant")
	dir, err := os.MkdirTemp("", "xe-unixban-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "edge.sock")
	cfg := writeFile(t, filepath.Join(dir, "edge.toml"), "[bans]\nmax_failures = 2\nwindow = \"1m\"\nban_time = \"1m\"\n")
	addr := xpratest.FreeTCPAddr(t)
	p := startProxy(t, addr, "--config="+cfg, "--bind-tcp="+addr+",auth=reject", "--bind="+sock+",auth=password,value=right",
		"--socket-dir="+filepath.Join(dir, "ctl"))
	_ = p
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	// root fails twice, then is banned.
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := goLoginConn(c, "root", "wrong"); err == nil {
			t.Fatal("a wrong password logged in")
		}
		c.Close()
	}
	banned := func(out string) bool { return strings.Contains(out, "too many failed logins") }
	probe := `import socket,sys
s=socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])
try:
    print(s.recv(200).decode(errors="replace"))
except socket.timeout:
    print("no answer")
`
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("/usr/bin/python3", "-c", probe, sock).CombinedOutput()
		if banned(string(out)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("root was not banned after two failures: %q", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Another local user is not.
	out, err := exec.Command("runuser", "-u", u.Name, "--", "/usr/bin/python3", "-c", probe, sock).CombinedOutput()
	if err != nil || banned(string(out)) {
		t.Fatalf("another uid is banned too: %v %q", err, out)
	}
}
