package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/sockdir"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// chunkStaller logs in, sends one raw chunk (index 1) without its main
// packet, and then sends nothing more.
func (f *fixture) chunkStaller() *xpraclient.Conn {
	f.t.Helper()
	c := f.dial()
	xc := xpraclient.New(c, xprawire.Rencode)
	caps := xpraclient.BaseCaps("foo")
	caps.Set("bench.mode", "idle")
	if _, err := xc.Hello(caps, []byte("bar"), true, false, 10*time.Second); err != nil {
		f.t.Fatalf("login: %v", err)
	}
	fw := xprawire.NewFrameWriter(c)
	if err := fw.WriteFrame(xprawire.Header{Flags: xprawire.FlagRencode, Index: 1}, make([]byte, 100)); err != nil {
		f.t.Fatal(err)
	}
	return xc
}

// dialSmallWindow connects with a tiny receive buffer, so that a peer that
// never reads makes the proxy's writes to it block quickly.
func (f *fixture) dialSmallWindow() net.Conn {
	f.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// neverReader logs in, asks the backend for an endless stream with no
// acknowledgement window, and never reads again.
func (f *fixture) neverReader() net.Conn {
	f.t.Helper()
	c := f.dialSmallWindow()
	w := benchpeer.Workload{Mode: benchpeer.ModeStream, Seed: 11, Window: 1 << 20}
	if _, err := benchpeer.Login(c, f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: w, Timeout: 10 * time.Second}); err != nil {
		f.t.Fatalf("login: %v", err)
	}
	return c
}

// waitStuck waits until the relay of session id has a write to the
// client blocked (its writer stays taken while nothing moves).
func (f *fixture) waitStuck(id int) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last int64 = -1
	for time.Now().Before(deadline) {
		f.srv.mu.Lock()
		sess := f.srv.sessions[id]
		f.srv.mu.Unlock()
		if sess != nil {
			n := sess.b.bytesIn.Load()
			if n > 0 && n == last {
				return
			}
			last = n
		}
		time.Sleep(300 * time.Millisecond)
	}
	f.t.Fatalf("session %d never stalled", id)
}

func (f *fixture) control(display string) *xpraclient.Conn {
	f.t.Helper()
	path := filepath.Join(f.sockDir, sockdir.SocketName(display))
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		f.t.Fatalf("control socket %s: %v", display, err)
	}
	f.t.Cleanup(func() { c.Close() })
	return xpraclient.New(c, xprawire.Rencode)
}

// TestStopEndsStalledSessions: `stop :proxy-N` ends, within 2 s, a session
// whose client sent a raw chunk and stalled, and one whose client never
// reads, while another session keeps answering pings. Before the relay
// owned its writes, the first stop waited for the client (the backend
// leg's write lock was held until the chunk's main packet came) and the
// second forever (a write without deadline held the client leg's lock).
func TestStopEndsStalledSessions(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	staller := f.chunkStaller() // :proxy-1
	_ = f.neverReader()         // :proxy-2
	other, err := f.login("foo", "bar", benchpeerIdle)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	f.waitStuck(2)

	// Pings of the healthy session meanwhile.
	pinged := make(chan []time.Duration, 1)
	go func() {
		var all []time.Duration
		for i := 0; i < 20; i++ {
			rtts, err := other.Ping(1, 2*time.Second)
			if err != nil {
				break
			}
			all = append(all, rtts...)
			time.Sleep(50 * time.Millisecond)
		}
		pinged <- all
	}()

	for _, display := range []string{":proxy-1", ":proxy-2"} {
		start := time.Now()
		reasons, err := f.control(display).Stop(5 * time.Second)
		d := time.Since(start)
		if err != nil || len(reasons) == 0 || reasons[0] != "server shutdown" {
			t.Fatalf("stop %s: %q %v after %v", display, reasons, err, d)
		}
		if d > 2*time.Second {
			t.Fatalf("stop %s took %v", display, d)
		}
		t.Logf("stop %s: %v", display, d.Round(time.Millisecond))
	}
	if r := waitDisconnect(t, staller, 2*time.Second); len(r) < 2 || r[1] != "socket request" {
		t.Fatalf("the chunk staller was told %q", r)
	}
	if n := f.srv.SessionCount(); n != 1 {
		t.Fatalf("%d sessions left, want 1", n)
	}
	rtts := <-pinged
	if len(rtts) < 20 {
		t.Fatalf("the healthy session answered %d of 20 pings meanwhile", len(rtts))
	}
	var worst time.Duration
	for _, r := range rtts {
		worst = max(worst, r)
	}
	t.Logf("healthy session meanwhile: %d pings, worst round trip %v", len(rtts), worst)
}

// TestWriteTimeoutEndsStalledSessions: with no stop, the write timeout
// alone ends a client that never reads and one that stalls after a raw
// chunk, each with a reason saying so.
func TestWriteTimeoutEndsStalledSessions(t *testing.T) {
	const wt = 700 * time.Millisecond
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.WriteTimeout = wt })
	staller := f.chunkStaller()
	start := time.Now()
	r := waitDisconnect(t, staller, 5*time.Second)
	if d := time.Since(start); d > wt+time.Second {
		t.Fatalf("the chunk staller was ended after %v", d)
	}
	if len(r) < 2 || !strings.Contains(r[1], "stalled") {
		t.Fatalf("the chunk staller was told %q", r)
	}

	_ = f.neverReader()
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.SessionCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session of a client that never reads is still live")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(f.log.String(), "write timeout: the client accepted nothing for 700ms") {
		t.Fatalf("no write timeout logged:\n%s", f.log.String())
	}
}

// loginInProgress sends a hello that asks for a challenge, reads the
// challenge and never answers it.
func (f *fixture) loginInProgress() *xpraclient.Conn {
	f.t.Helper()
	xc := xpraclient.New(f.dial(), xprawire.Rencode)
	caps := xpraclient.BaseCaps("foo")
	caps.Set("challenge", true)
	if err := xc.Send(xprawire.Packet{"hello", caps}); err != nil {
		f.t.Fatal(err)
	}
	p, err := xc.Read(time.Now().Add(5 * time.Second))
	if err != nil || p.Type() != "challenge" {
		f.t.Fatalf("no challenge: %v %v", p.Type(), err)
	}
	return xc
}

// TestShutdownIsBounded: a shutdown with a 2 s drain returns within 3 s
// while a login waits in its challenge (120 s timeout), a client has sent
// nothing yet, one stalls after a raw chunk and one never reads. The
// logins end at once; the sessions run for the drain, then are told
// "server shutdown". Before the registry, shutdown waited for the
// challenge timeout.
func TestShutdownIsBounded(t *testing.T) {
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.SniffTimeout = time.Minute })
	login := f.loginInProgress()
	silent := f.dial()
	staller := f.chunkStaller()
	_ = f.neverReader()
	f.waitStuck(2)

	loginEnded := make(chan time.Time, 1)
	go func() {
		for {
			if _, err := login.Read(time.Now().Add(10 * time.Second)); err != nil {
				loginEnded <- time.Now()
				return
			}
		}
	}()
	silentEnded := make(chan time.Time, 1)
	go func() {
		var b [64]byte
		_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := silent.Read(b[:]); err != nil {
				silentEnded <- time.Now()
				return
			}
		}
	}()
	start := time.Now()
	f.srv.shutdown(2 * time.Second)
	d := time.Since(start)
	t.Logf("shutdown took %v", d.Round(time.Millisecond))
	if d > 3*time.Second {
		t.Fatalf("shutdown with a 2 s drain took %v", d)
	}
	for what, ch := range map[string]chan time.Time{"the login in progress": loginEnded, "the silent connection": silentEnded} {
		select {
		case at := <-ch:
			if e := at.Sub(start); e > 500*time.Millisecond {
				t.Fatalf("%s was ended after %v", what, e)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s was not ended", what)
		}
	}
	r := waitDisconnect(t, staller, time.Second)
	if len(r) == 0 || r[0] != "server shutdown" {
		t.Fatalf("the chunk staller was told %q", r)
	}
	f.srv.mu.Lock()
	left := len(f.srv.live)
	f.srv.mu.Unlock()
	if left != 0 || f.srv.SessionCount() != 0 {
		t.Fatalf("after shutdown: %d connections, %d sessions", left, f.srv.SessionCount())
	}
}

// TestWebSocketPingFloodIsCutAtLoginDeadline: a WebSocket client that
// floods pings and reads nothing is cut at the login deadline (plus the
// refusal's 1 s drain) and gives its unauthenticated slot back: with
// max_unauthenticated = 1 a client logs in right after. Before, the pong
// write blocked Read forever and the slot was never freed.
func TestWebSocketPingFloodIsCutAtLoginDeadline(t *testing.T) {
	const login = time.Second
	f := newFixture(t, fooUser, func(c *Config) {
		c.State.Limits.LoginTimeout = login
		c.State.Limits.MaxUnauthenticated = 1
	})
	c := f.dialSmallWindow()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	start := time.Now()
	// Masked pings, as fast as the proxy takes them, never reading.
	ping := []byte{0x89, 0x84, 1, 2, 3, 4, 'p' ^ 1, 'i' ^ 2, 'n' ^ 3, 'g' ^ 4}
	burst := make([]byte, 0, 256*len(ping))
	for len(burst)+len(ping) <= cap(burst) {
		burst = append(burst, ping...)
	}
	cut := make(chan time.Duration, 1)
	go func() {
		for {
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(burst); err != nil {
				cut <- time.Since(start)
				return
			}
		}
	}()
	// The slot is taken meanwhile.
	time.Sleep(login / 2)
	if _, err := f.login("foo", "bar", benchpeerIdle); err == nil {
		t.Fatal("a second client got in while the flood held the only unauthenticated slot")
	}
	var in time.Duration
	for {
		s, err := f.login("foo", "bar", benchpeerIdle)
		if err == nil {
			in = time.Since(start)
			s.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no login 10 s after the flood began: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("a client logged in %v after the flood began (login timeout %v)", in.Round(time.Millisecond), login)
	if in > login+1500*time.Millisecond {
		t.Fatalf("the slot was freed after %v", in)
	}
	select {
	case d := <-cut:
		t.Logf("the flood was cut after %v", d.Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the flood is still being read")
	}
	if !strings.Contains(f.log.String(), "login timeout") {
		t.Fatalf("not refused for its login timeout:\n%s", f.log.String())
	}
}

// freeAddr is a loopback address nobody listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestReloadBindsAddedListener: a listener added by Reload is bound and
// takes logins at once; one that cannot be bound refuses the reload with
// the reason and leaves the old configuration; moving a listener is
// refused. Before, the added listener was stored and never bound.
func TestReloadBindsAddedListener(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	st := *f.srv.state.Load()
	first := st.Listeners[0]
	addr := freeAddr(t)
	st.Listeners = []*Listener{first, {Name: "added", Address: addr, Auth: first.Auth, AllowPlain: true}}
	if err := f.srv.Reload(st); err != nil {
		t.Fatalf("reload: %v", err)
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("the added listener does not accept: %v", err)
	}
	s, err := benchpeer.Login(c, f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: benchpeerIdle, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("login on the added listener: %v", err)
	}
	s.Close()

	// An address in use: refused, named; the state stays.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	st2 := *f.srv.state.Load()
	st2.Listeners = append(append([]*Listener(nil), st2.Listeners...), &Listener{Name: "busy", Address: busy.Addr().String(), Auth: first.Auth, AllowPlain: true})
	st2.Limits.MaxSessions = 1
	err = f.srv.Reload(st2)
	if err == nil || !strings.Contains(err.Error(), `"busy"`) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("reload with an unbindable listener: %v", err)
	}
	if f.srv.snapshot().Limits.MaxSessions != 0 || len(f.srv.state.Load().Listeners) != 2 {
		t.Fatal("a refused reload changed the state")
	}
	// Moving a listener: refused.
	st3 := *f.srv.state.Load()
	st3.Listeners = []*Listener{first, {Name: "added", Address: freeAddr(t), Auth: first.Auth, AllowPlain: true}}
	if err := f.srv.Reload(st3); err == nil || !strings.Contains(err.Error(), "cannot move listener") {
		t.Fatalf("moving a listener: %v", err)
	}
	// Shutdown closes the added listener too.
	f.cancel()
	<-f.done
	f.done <- nil
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the added listener still accepts after shutdown")
	}
}

// TestControlProbeLogsAtDebug: `xpra list` connects to each control
// socket and closes; that is logged at debug, not as an INFO "connection
// refused" per probe.
func TestControlProbeLogsAtDebug(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	path := filepath.Join(f.sockDir, sockdir.SocketName(f.srv.cfg.Display))
	deadline := time.Now().Add(2 * time.Second)
	for sockdir.Probe(path, time.Second) != sockdir.StateLive {
		if time.Now().After(deadline) {
			t.Fatal("the control socket is not live")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for !strings.Contains(f.log.String(), "control socket probed") {
		if time.Now().After(deadline) {
			t.Fatalf("the probe was not logged at debug:\n%s", f.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(f.log.String(), "connection refused") {
		t.Fatalf("a probe logged as a refused connection:\n%s", f.log.String())
	}
}

// TestSmallPacketsAreGathered: 40 small packets (20 raw chunks with their
// main packets, as draws) sent in one burst reach the backend in a few
// writes, in order (the backend answers each ping in turn), instead of one
// write per frame.
func TestSmallPacketsAreGathered(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	c := f.dial()
	xc := xpraclient.New(c, xprawire.Rencode)
	caps := xpraclient.BaseCaps("foo")
	caps.Set("bench.mode", "idle")
	if _, err := xc.Hello(caps, []byte("bar"), true, false, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	f.srv.mu.Lock()
	sess := f.srv.sessions[1]
	f.srv.mu.Unlock()
	if sess == nil {
		t.Fatal("no session 1")
	}
	var burst bytes.Buffer
	pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(&burst), xprawire.Rencode)
	for i := 0; i < 20; i++ {
		if err := pw.WritePacket(xprawire.Packet{"ping", int64(i), int64(i), xprawire.RawChunk{Data: bytes.Repeat([]byte{byte(i)}, 600)}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the login's own writes are done
	before := sess.b.writes.Load()
	if _, err := c.Write(burst.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; {
		p, err := xc.Read(time.Now().Add(5 * time.Second))
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if p.Type() != "ping_echo" {
			continue
		}
		if n, _ := p[1].(int64); n != int64(i) {
			t.Fatalf("echo %d answers ping %v: reordered", i, p[1])
		}
		i++
	}
	writes := sess.b.writes.Load() - before
	t.Logf("40 frames (%d bytes) in %d writes to the backend", burst.Len(), writes)
	if writes > 12 {
		t.Fatalf("%d writes for 40 frames sent together", writes)
	}
}
