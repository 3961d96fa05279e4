package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// lifecycleProxy runs the binary with one toml-users listener in front of
// a synthetic backend; limits are extra [limits] lines.
type lifecycleProxy struct {
	*proxy
	addr, display, sockDir string
	pool                   *benchpeer.Pool
}

func startLifecycleProxy(t *testing.T, limits string, args ...string) *lifecycleProxy {
	t.Helper()
	// The race-built binary sleeps 1 s at exit by default (to catch races
	// at exit); these tests time exits and commands.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	dir := t.TempDir()
	backend, pool := startSyntheticBackend(t)
	addr := xpratest.FreeTCPAddr(t)
	lp := &lifecycleProxy{addr: addr, display: fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), sockDir: filepath.Join(dir, "ctl"), pool: pool}
	cfg := fmt.Sprintf(`display = %q
socket_dir = %q
auth = "toml"

[[listener]]
bind = %q

[[user]]
name = "alice"
password = "alice-pw"
displays = ["tcp://%s/"]

[limits]
auth_fail_delay = "10ms"
%s

[log]
level = "debug"

[shutdown]
drain = "2s"
`, lp.display, lp.sockDir, addr, backend, limits)
	path := writeFile(t, filepath.Join(dir, "config.toml"), cfg)
	lp.proxy = startProxy(t, addr, append([]string{"--config=" + path}, args...)...)
	return lp
}

// chunkStaller logs in, sends one raw chunk without its main packet and
// then nothing.
func (lp *lifecycleProxy) chunkStaller(t *testing.T) *xpraclient.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", lp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	xc := xpraclient.New(c, xprawire.Rencode)
	caps := xpraclient.BaseCaps("alice")
	caps.Set("bench.mode", "idle")
	if _, err := xc.Hello(caps, []byte("alice-pw"), true, false, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := xprawire.NewFrameWriter(c).WriteFrame(xprawire.Header{Flags: xprawire.FlagRencode, Index: 1}, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	return xc
}

// neverReader logs in with a tiny receive window, asks for an endless
// stream and never reads.
func (lp *lifecycleProxy) neverReader(t *testing.T) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", lp.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := benchpeer.Workload{Mode: benchpeer.ModeStream, Seed: 5, Window: 1 << 20}
	if _, err := benchpeer.Login(c, lp.pool, benchpeer.LoginOptions{Username: "alice", Password: "alice-pw", Workload: w, Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (lp *lifecycleProxy) waitEnded(t *testing.T, id int, d time.Duration) {
	t.Helper()
	if !lp.waitLog(fmt.Sprintf("msg=\"session ended\" session=%d ", id), d) {
		t.Fatalf("session %d did not end within %v", id, d)
	}
}

// TestStalledSessionsEndedByStop (against the binary): a client that sent
// a raw chunk and stalled and a client that never reads are each ended by
// `xpra-edge stop :proxy-N` and by xpra's own `xpra stop :proxy-N` within
// 2 s of the request, while another session keeps answering pings.
func TestStalledSessionsEndedByStop(t *testing.T) {
	xpratest.RequirePeers(t, "xpra")
	lp := startLifecycleProxy(t, "")
	_ = lp.chunkStaller(t) // :proxy-1
	_ = lp.neverReader(t)  // :proxy-2
	_ = lp.chunkStaller(t) // :proxy-3
	_ = lp.neverReader(t)  // :proxy-4
	healthy, err := benchLogin(t, lp.addr, "alice", "alice-pw", lp.pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the never-readers' windows fill

	stopDone := make(chan struct{})
	pinged := make(chan []time.Duration, 1)
	go func() {
		var all []time.Duration
		for {
			select {
			case <-stopDone:
				pinged <- all
				return
			default:
			}
			rtts, err := healthy.Ping(1, 2*time.Second)
			if err != nil {
				pinged <- all
				return
			}
			all = append(all, rtts...)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// The command's own start-up (about 1 s for a race-built binary on a
	// busy machine) is measured with an info request and allowed on top.
	ctl := "--socket-dir=" + lp.sockDir
	start := time.Now()
	if out, code := edgeCmd(t, "info", ctl, ":proxy-5"); code != 0 {
		t.Fatalf("info :proxy-5: %d\n%s", code, out)
	}
	cli := time.Since(start)
	for _, display := range []string{":proxy-1", ":proxy-2"} {
		start := time.Now()
		out, code := edgeCmd(t, "stop", ctl, display)
		d := time.Since(start)
		if code != 0 || !strings.Contains(out, "server shutdown") {
			t.Fatalf("xpra-edge stop %s: %d after %v\n%s", display, code, d, out)
		}
		t.Logf("xpra-edge stop %s: %v (info of a healthy session: %v)", display, d.Round(time.Millisecond), cli.Round(time.Millisecond))
		if d > cli+2*time.Second {
			t.Fatalf("xpra-edge stop %s took %v", display, d)
		}
	}
	lp.waitEnded(t, 1, time.Second)
	lp.waitEnded(t, 2, time.Second)

	// xpra's own stop: its python start-up is measured on the healthy
	// session afterwards and allowed on top of the 2 s.
	var took []time.Duration
	for _, display := range []string{":proxy-3", ":proxy-4"} {
		start := time.Now()
		out, code := xpratest.Run(t, 30*time.Second, "stop", display, "--socket-dirs="+lp.sockDir)
		took = append(took, time.Since(start))
		if code != 0 {
			t.Fatalf("xpra stop %s: exit %d\n%s", display, code, out)
		}
	}
	close(stopDone)
	rtts := <-pinged
	start = time.Now()
	if out, code := xpratest.Run(t, 30*time.Second, "stop", ":proxy-5", "--socket-dirs="+lp.sockDir); code != 0 {
		t.Fatalf("xpra stop :proxy-5: exit %d\n%s", code, out)
	}
	base := time.Since(start)
	for i, d := range took {
		t.Logf("xpra stop :proxy-%d: %v (a healthy session's: %v)", i+3, d.Round(time.Millisecond), base.Round(time.Millisecond))
		if d > base+2*time.Second {
			t.Fatalf("xpra stop :proxy-%d took %v, a healthy session's %v", i+3, d, base)
		}
	}
	lp.waitEnded(t, 3, time.Second)
	lp.waitEnded(t, 4, time.Second)
	if len(rtts) < 10 {
		t.Fatalf("the healthy session answered %d pings while the others were stopped", len(rtts))
	}
	var worst time.Duration
	for _, r := range rtts {
		worst = max(worst, r)
	}
	t.Logf("healthy session meanwhile: %d pings, worst round trip %v", len(rtts), worst.Round(time.Microsecond))
}

// TestStalledSessionsEndedByWriteTimeout (against the binary): with
// [limits] write_timeout = "1s" and nobody stopping them, both kinds of
// stalled session end by themselves, each with its reason.
func TestStalledSessionsEndedByWriteTimeout(t *testing.T) {
	lp := startLifecycleProxy(t, `write_timeout = "1s"`)
	staller := lp.chunkStaller(t)
	_ = lp.neverReader(t)
	start := time.Now()
	var reasons []string
	for reasons == nil {
		p, err := staller.Read(time.Now().Add(5 * time.Second))
		if err != nil {
			t.Fatalf("the chunk staller was not told: %v", err)
		}
		if p.Type() == "disconnect" {
			reasons = xpraclient.Reasons(p)
		}
	}
	if len(reasons) < 2 || !strings.Contains(reasons[1], "stalled for 1s") {
		t.Fatalf("the chunk staller was told %q", reasons)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("the chunk staller was ended after %v", d)
	}
	lp.waitEnded(t, 2, 5*time.Second)
	if !strings.Contains(lp.log.String(), "write timeout: the client accepted nothing for 1s") {
		t.Fatalf("no write timeout reason:\n%s", lp.log.String())
	}
}

// TestSIGTERMIsBounded (against the binary): SIGTERM with --drain=2s, a
// client stalled after a raw chunk, one that never reads, a login waiting
// in its challenge and a connection that sent nothing: the process exits
// 0 within 3 s, the login is ended at once and the sessions are told
// "server shutdown" after the drain.
func TestSIGTERMIsBounded(t *testing.T) {
	lp := startLifecycleProxy(t, `sniff_timeout = "60s"`, "--drain=2s")
	staller := lp.chunkStaller(t)
	_ = lp.neverReader(t)
	c, err := net.DialTimeout("tcp", lp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	login := xpraclient.New(c, xprawire.Rencode)
	caps := xpraclient.BaseCaps("alice")
	caps.Set("challenge", true)
	if err := login.Send(xprawire.Packet{"hello", caps}); err != nil {
		t.Fatal(err)
	}
	if p, err := login.Read(time.Now().Add(5 * time.Second)); err != nil || p.Type() != "challenge" {
		t.Fatalf("no challenge: %v", err)
	}
	silent, err := net.DialTimeout("tcp", lp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(1500 * time.Millisecond) // the never-reader's window fills

	start := time.Now()
	_ = lp.cmd.Process.Signal(syscall.SIGTERM)
	if _, err := login.Read(time.Now().Add(5 * time.Second)); err == nil {
		t.Fatal("the login in progress got a packet instead of its end")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the login in progress was ended after %v", d)
	}
	select {
	case err := <-lp.done:
		lp.done <- err
		d := time.Since(start)
		t.Logf("exited after %v: %v", d.Round(time.Millisecond), err)
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		if d > 3*time.Second {
			t.Fatalf("exited %v after SIGTERM with a 2 s drain", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10 s after SIGTERM")
	}
	var reasons []string
	for reasons == nil {
		p, err := staller.Read(time.Now().Add(time.Second))
		if err != nil {
			t.Fatalf("the chunk staller was not told: %v", err)
		}
		if p.Type() == "disconnect" {
			reasons = xpraclient.Reasons(p)
		}
	}
	if reasons[0] != "server shutdown" {
		t.Fatalf("the chunk staller was told %q", reasons)
	}
}

// TestReloadReadyAndAddedListener (against the binary, as systemd runs
// it with Type=notify): every reload, refused or not, ends with READY=1;
// a [[listener]] added to the file is bound and takes logins; one whose
// address is taken refuses the reload with that reason.
func TestReloadReadyAndAddedListener(t *testing.T) {
	dir := t.TempDir()
	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv("NOTIFY_SOCKET", notifyPath)
	backend, pool := startSyntheticBackend(t)
	addr, added := xpratest.FreeTCPAddr(t), xpratest.FreeTCPAddr(t)
	display := xpratest.FreeDisplay(t)
	conf := func(extra string) string {
		return fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "toml"

[[listener]]
bind = %q
%s
[[user]]
name = "alice"
password = "alice-pw"
displays = ["tcp://%s/"]

[limits]
auth_fail_delay = "10ms"
`, display, filepath.Join(dir, "ctl"), addr, extra, backend)
	}
	path := writeFile(t, filepath.Join(dir, "config.toml"), conf(""))
	p := startProxy(t, addr, "--config="+path)
	states := func(want ...string) {
		t.Helper()
		buf := make([]byte, 4096)
		for _, w := range want {
			_ = notify.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				n, err := notify.Read(buf)
				if err != nil {
					t.Fatalf("no %s on NOTIFY_SOCKET: %v\n%s", w, err, p.log.String())
				}
				if strings.Contains(string(buf[:n]), w) {
					break
				}
			}
		}
	}
	states("READY=1")

	// A broken file: refused, and READY=1 again.
	writeFile(t, path, conf("")+"\nno_such_key = 1\n")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	states("RELOADING=1", "READY=1")
	if !p.waitLog("reload rejected", 5*time.Second) {
		t.Fatalf("not rejected:\n%s", p.log.String())
	}

	// An added listener: bound, logins work on it.
	writeFile(t, path, conf(fmt.Sprintf("\n[[listener]]\nbind = %q\n", added)))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	states("RELOADING=1", "READY=1")
	if !p.waitLog("configuration reloaded", 5*time.Second) || !strings.Contains(p.log.String(), "listener added") {
		t.Fatalf("no reload with the added listener:\n%s", p.log.String())
	}
	s, err := benchLogin(t, added, "alice", "alice-pw", pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatalf("login on the added listener: %v", err)
	}
	s.Close()

	// An added listener on a taken address: refused with that reason.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	writeFile(t, path, conf(fmt.Sprintf("\n[[listener]]\nbind = %q\n\n[[listener]]\nbind = %q\n", added, busy.Addr().String())))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	states("RELOADING=1", "READY=1")
	if !p.waitLog("address already in use", 5*time.Second) {
		t.Fatalf("the unbindable listener was not the reason:\n%s", p.log.String())
	}
}
