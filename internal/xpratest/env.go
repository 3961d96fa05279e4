package xpratest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// workDir is a private directory tree for one process: HOME, XDG_RUNTIME_DIR
// and whatever else the process writes. It is removed in t.Cleanup after
// the process is gone (cleanups run last-registered first).
type workDir struct {
	root, home, runtime, xdg string
}

// harnessConf is read by xpra after /etc/xpra (it is found through
// XDG_CONFIG_DIRS, and a later config file replaces a key of an earlier
// one, while a command-line list option only appends to it). It empties
// Debian's `start = /etc/X11/Xsession true`, which in a container only
// shows an xmessage window ("true" not found) in every session.
const harnessConf = "start =\n"

// newWorkDir makes a short path under os.TempDir() (unix socket paths are
// limited to 108 bytes, t.TempDir names are long) owned by uid/gid when
// uid >= 0.
func newWorkDir(t testing.TB, prefix string, uid, gid int) workDir {
	t.Helper()
	root, err := os.MkdirTemp("", "xpratest-"+prefix+"-")
	if err != nil {
		t.Fatalf("xpratest: work dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	w := workDir{root: root, home: filepath.Join(root, "home"), runtime: filepath.Join(root, "run"), xdg: filepath.Join(root, "xdg")}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatalf("xpratest: work dir: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(w.xdg, "xpra"), 0o755); err != nil {
		t.Fatalf("xpratest: work dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(w.xdg, "xpra", "xpra.conf"), []byte(harnessConf), 0o644); err != nil {
		t.Fatalf("xpratest: work dir: %v", err)
	}
	for _, d := range []string{w.home, w.runtime} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("xpratest: work dir: %v", err)
		}
	}
	if uid >= 0 {
		for _, d := range []string{root, w.home, w.runtime} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatalf("xpratest: work dir: %v", err)
			}
		}
	}
	return w
}

// env is the complete environment of a child: nothing is inherited from the
// test process, so the user's DISPLAY, DBUS session, XDG dirs and pyenv
// never leak in.
func (w workDir) env(extra ...string) []string {
	e := []string{
		"PATH=" + harnessPath,
		"HOME=" + w.home,
		"XDG_RUNTIME_DIR=" + w.runtime,
		"XDG_CONFIG_HOME=" + filepath.Join(w.home, ".config"),
		"XDG_CONFIG_DIRS=" + w.xdg,
		"XAUTHORITY=" + filepath.Join(w.home, ".Xauthority"),
		"LANG=C.UTF-8",
		"TERM=xterm",
		"NO_AT_BRIDGE=1", // no accessibility bus lookups from GTK
		"GDK_BACKEND=x11",
		"PYTHONDONTWRITEBYTECODE=1",
	}
	return append(e, extra...)
}

// displayLockDir holds the harness's own reservations of display numbers,
// so concurrent tests (and test binaries) never pick the same one.
const displayLockPrefix = "/tmp/.xpratest-display-"

// FreeDisplay reserves a free X11 display number (no X lock file, no
// socket, not reserved by another harness user) in the range 200..29999 and
// releases the reservation in t.Cleanup.
func FreeDisplay(t testing.TB) int {
	t.Helper()
	for range 200 {
		n := 200 + rand.IntN(29800)
		if exists(fmt.Sprintf("/tmp/.X%d-lock", n)) || exists(fmt.Sprintf("/tmp/.X11-unix/X%d", n)) {
			continue
		}
		lock := displayLockPrefix + strconv.Itoa(n)
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			reclaimStaleLock(lock)
			continue
		}
		_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
		_ = f.Close()
		t.Cleanup(func() { _ = os.Remove(lock) })
		return n
	}
	t.Fatal("xpratest: no free display number found")
	return 0
}

// FreeTCPAddr returns "127.0.0.1:PORT" for a port that was free a moment
// ago (the kernel picked it; another process could still take it).
func FreeTCPAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("xpratest: free tcp port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// canDial reports whether a stream socket accepts a connection.
func canDial(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	// A loopback dial to a port nobody listens on can connect to itself
	// (TCP simultaneous open): that is no listener.
	self := network == "tcp" && c.LocalAddr().String() == c.RemoteAddr().String()
	_ = c.Close()
	return !self
}

// Xvfb is a headless X server owned by a test.
type Xvfb struct {
	Display string // ":N"
	Num     int
	FBFile  string // the XWD image of screen 0 that Xvfb keeps up to date (-fbdir)
	p       *proc
}

// StartXvfb starts `Xvfb :N -screen 0 WxHx24 -fbdir DIR` on a free display
// and waits until it accepts connections. It is stopped in t.Cleanup.
func StartXvfb(t testing.TB, width, height int) *Xvfb {
	t.Helper()
	RequirePeers(t, "Xvfb")
	n := FreeDisplay(t)
	w := newWorkDir(t, "xvfb", -1, -1)
	bin, _ := lookPath("Xvfb")
	cmd := exec.Command(bin, ":"+strconv.Itoa(n),
		"-screen", "0", fmt.Sprintf("%dx%dx24", width, height),
		"-nolisten", "tcp", "-noreset", "+extension", "Composite",
		"-fbdir", w.root)
	cmd.Env = w.env()
	p, err := startProc("Xvfb :"+strconv.Itoa(n), cmd, filepath.Join(w.root, "xvfb.log"), 10*time.Minute)
	if err != nil {
		t.Fatalf("xpratest: %v", err)
	}
	x := &Xvfb{Display: ":" + strconv.Itoa(n), Num: n, FBFile: filepath.Join(w.root, "Xvfb_screen0"), p: p}
	t.Cleanup(func() { p.stop(syscall.SIGTERM, 2*time.Second) })
	sock := fmt.Sprintf("/tmp/.X11-unix/X%d", n)
	deadline := time.Now().Add(10 * time.Second)
	for !canDial("unix", sock) {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("xpratest: Xvfb %s did not start:\n%s", x.Display, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return x
}

// reclaimStaleLock removes a display reservation whose owner process is
// gone (a test binary that was killed before its cleanups ran), so the
// number can be used again later.
func reclaimStaleLock(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		_ = os.Remove(path)
	}
}
