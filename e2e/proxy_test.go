package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

var edgeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xpra-edge-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	edgeBin = filepath.Join(dir, "xpra-edge")
	build := exec.Command("go", "build", "-race", "-o", edgeBin, "../cmd/xpra-edge")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building xpra-edge:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logBuffer collects a process's output for assertions, safely.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proxy is a running xpra-edge subprocess.
type proxy struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  *logBuffer
	addr string
	done chan error
}

// edgeCmd runs an xpra-edge subcommand to completion.
func edgeCmd(t testing.TB, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(edgeBin, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("xpra-edge %v: %v", args, err)
	}
	return string(out), code
}

// startProxy runs `xpra-edge proxy args...` and waits until addr accepts.
func startProxy(t testing.TB, addr string, args ...string) *proxy {
	t.Helper()
	p := launchProxy(t, addr, args...)
	p.waitListening()
	return p
}

// launchProxy starts `xpra-edge proxy args...` without waiting (start
// several at once, then waitListening on each).
func launchProxy(t testing.TB, addr string, args ...string) *proxy {
	t.Helper()
	p := &proxy{t: t, log: &logBuffer{}, addr: addr, done: make(chan error, 1)}
	p.cmd = exec.Command(edgeBin, append([]string{"proxy"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, 15*time.Second)
		if t.Failed() {
			t.Logf("xpra-edge log:\n%s", p.log.String())
		}
	})
	return p
}

// waitListening waits until the proxy's address accepts (20 s at most).
func (p *proxy) waitListening() {
	t, addr := p.t, p.addr
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			// Dialing a loopback port nobody listens on can connect the
			// socket to itself (TCP simultaneous open, when the kernel
			// picks the same port as the source): that is not the proxy.
			self := c.LocalAddr().String() == c.RemoteAddr().String()
			c.Close()
			if !self {
				return
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("xpra-edge exited early: %v\n%s", err, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xpra-edge did not listen on %s:\n%s", addr, p.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop signals the proxy and waits up to d; it reports the exit error.
func (p *proxy) stop(sig syscall.Signal, d time.Duration) error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		return fmt.Errorf("did not exit within %v after %v", d, sig)
	}
}

// waitLog waits until the proxy's log contains s.
func (p *proxy) waitLog(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.log.String(), s) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lines returns the output lines containing s.
func grepLines(out, s string) []string {
	var found []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			found = append(found, sc.Text())
		}
	}
	return found
}

var _ = io.Discard
var _ = xpratest.RequirePeers
