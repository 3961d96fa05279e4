package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// TestSystemdActivationAndNotify runs the proxy as systemd would for
// xpra-edge.socket and Type=notify: the listening socket is passed as fd 3
// (LISTEN_FDS), and READY=1 / STOPPING=1 reach NOTIFY_SOCKET.
func TestSystemdActivationAndNotify(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the child holds the duplicate
	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf("display = \":%d\"\nauth = \"none\"\n[[listener]]\nbind = %q\n",
		xpratest.FreeDisplay(t), addr))
	// LISTEN_PID must be the proxy's own pid: exec keeps the shell's.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" proxy --config="$1"`, edgeBin, cfg)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=xpra-edge", "NOTIFY_SOCKET="+notifyPath)
	cmd.ExtraFiles = []*os.File{lf}
	log := &logBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()

	read := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		_ = notify.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			n, err := notify.Read(buf)
			if err != nil {
				t.Fatalf("no %s on NOTIFY_SOCKET: %v\n%s", want, err, log.String())
			}
			if strings.Contains(string(buf[:n]), want) {
				return
			}
		}
	}
	read("READY=1")
	if !strings.Contains(log.String(), "using socket from systemd") {
		t.Fatalf("the passed socket was not adopted:\n%s", log.String())
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	caps, err := xpraclient.New(c, xprawire.Rencode).Request("version", 5*time.Second)
	c.Close()
	if err != nil || !caps.Has("xpra-edge.version") {
		t.Fatalf("version over the activated socket: %v %v", caps, err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	read("RELOADING=1")
	read("READY=1")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	read("STOPPING=1")
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, log.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not exit")
	}
}
