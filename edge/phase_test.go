package edge

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// trickle writes b one byte per interval until it is written or a write
// fails; it returns when it stops.
func trickle(c net.Conn, b []byte, interval time.Duration) {
	for i := range b {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(b[i : i+1]); err != nil {
			return
		}
		time.Sleep(interval)
	}
}

// closedAfter reads c until it ends and returns how long after start the
// first byte (the proxy's answer, if any) and the end came.
func closedAfter(c net.Conn, start time.Time, limit time.Duration) (told, closed time.Duration) {
	_ = c.SetReadDeadline(start.Add(limit))
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		if n > 0 && told == 0 {
			told = time.Since(start)
		}
		if err != nil {
			return told, time.Since(start)
		}
	}
}

// waitUnauth waits until no connection holds an unauthenticated slot and
// returns how long after start that was.
func (f *fixture) waitUnauth(start time.Time, limit time.Duration) time.Duration {
	f.t.Helper()
	for f.srv.unauth.Load() != 0 {
		if time.Since(start) > limit {
			f.t.Fatalf("%d unauthenticated slots still held %v after the start", f.srv.unauth.Load(), limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestTricklingHelloIsCutAtTheLoginBound: a client that sends its hello
// one byte per 100 ms is told "login timeout" at the login bound (not
// later, however many bytes keep arriving), closed after the refusal's
// drain, and its unauthenticated slot is free again.
func TestTricklingHelloIsCutAtTheLoginBound(t *testing.T) {
	const bound = time.Second
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.LoginTimeout = bound })
	c := f.dial()
	start := time.Now()
	// A header announcing a 4000-byte hello, then its payload, slowly.
	frame := append([]byte{'P', byte(xprawire.FlagRencodePlus), 0, 0, 0, 0, 0x0f, 0xa0}, make([]byte, 4000)...)
	go trickle(c, frame, 100*time.Millisecond)
	told, closed := closedAfter(c, start, 10*time.Second)
	freed := f.waitUnauth(start, 5*time.Second)
	t.Logf("bound %v: told after %v, closed after %v, slot free after %v", bound, told.Round(time.Millisecond), closed.Round(time.Millisecond), freed.Round(time.Millisecond))
	if told < bound-50*time.Millisecond || told > bound+phaseGrace+200*time.Millisecond {
		t.Fatalf("told after %v, want the bound %v", told, bound)
	}
	// The refusal's drain (1 s) lets the client read why, then it is closed.
	if closed > bound+time.Second+500*time.Millisecond || freed > closed+500*time.Millisecond {
		t.Fatalf("closed after %v, slot freed after %v", closed, freed)
	}
	if !strings.Contains(f.log.String(), "login timeout") {
		t.Fatal("not refused for its login timeout")
	}
}

// TestStalledTLSHandshakeIsCutAtTheSniffBound: a client that begins a TLS
// handshake and stalls inside its ClientHello (or trickles it) is closed at
// the sniff bound, and its slot is free.
func TestStalledTLSHandshakeIsCutAtTheSniffBound(t *testing.T) {
	const bound = 500 * time.Millisecond
	cert, _ := testCert(t)
	f := newFixture(t, fooUser, func(c *Config) {
		c.State.Limits.SniffTimeout = bound
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.State.Listeners[0].AllowTLS = true
	})
	for _, mode := range []string{"stall", "trickle"} {
		c := f.dial()
		start := time.Now()
		// A handshake record announcing 512 bytes, of which 4 come.
		rec := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}
		if mode == "stall" {
			if _, err := c.Write(rec); err != nil {
				t.Fatal(err)
			}
		} else {
			go trickle(c, append(rec, make([]byte, 500)...), 100*time.Millisecond)
		}
		_, closed := closedAfter(c, start, 10*time.Second)
		freed := f.waitUnauth(start, 5*time.Second)
		t.Logf("%s: bound %v: closed after %v, slot free after %v", mode, bound, closed.Round(time.Millisecond), freed.Round(time.Millisecond))
		if closed < bound-50*time.Millisecond || closed > bound+phaseGrace+300*time.Millisecond {
			t.Fatalf("%s: closed after %v, want the bound %v", mode, closed, bound)
		}
	}
}

// earlyFloodBackend is an xpra server that answers a hello with many large
// packets before its own hello (as xpra 3.1.3 may announce windows first):
// the proxy keeps them and forwards them after the hello, inside the
// backend handshake.
func earlyFloodBackend(t *testing.T, packets, size int) string {
	t.Helper()
	ln := loopback(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				pr := xprawire.NewPacketReader(bufio.NewReader(c))
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				if _, _, err := pr.ReadPacket(); err != nil {
					return
				}
				pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(c), xprawire.Rencode)
				filler := make([]byte, size)
				_, _ = rand.Read(filler) // incompressible: the proxy re-encodes them
				for i := 0; i < packets; i++ {
					if err := pw.WritePacket(xprawire.Packet{"window-metadata", int64(i + 1), xprawire.Dict{{Key: "filler", Value: filler}}}); err != nil {
						return
					}
				}
				hello := xprawire.Dict{}
				hello.Set("version", "3.1.3")
				hello.Set("rencode", true)
				hello.Set("encoders", []any{"rencode"})
				_ = pw.WritePacket(xprawire.Packet{"hello", hello})
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestPendingForwardIsCutAtTheBackendBound: a client that logs in and
// reads nothing while the proxy forwards what the backend sent before its
// hello (16 MiB) keeps that write pending; the write timeout (30 s) would
// hold it, the backend handshake's phase timer closes both legs at its
// bound and frees the session slot. Before, the forward waited for the
// write timeout.
func TestPendingForwardIsCutAtTheBackendBound(t *testing.T) {
	backend := earlyFloodBackend(t, 64, 256<<10)
	dial, handshake := 200*time.Millisecond, 800*time.Millisecond
	f := newFixture(t, []auth.User{{Name: "foo", Password: "bar", Displays: []string{"tcp://" + backend + "/"}}}, func(c *Config) {
		c.State.Dialer = &BackendDialer{Timeout: dial}
		c.State.Limits.BackendHandshakeTimeout = handshake
	})
	c := f.dialSmallWindow()
	xc := xpraclient.New(c, xprawire.Rencode)
	start := time.Now()
	if _, err := xc.Hello(xpraclient.BaseCaps("foo"), []byte("bar"), true, false, 10*time.Second); err != nil {
		t.Fatalf("login: %v", err)
	}
	// Read nothing more. The session is registered, then cut.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := f.srv.SessionCount()
		f.srv.mu.Lock()
		slots := f.srv.slots
		f.srv.mu.Unlock()
		if n == 0 && slots == 0 && strings.Contains(f.log.String(), "backend handshake phase") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pending forward still holds its session after 10 s (sessions %d, slots %d)", n, slots)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cut := time.Since(start)
	bound := dial + handshake
	t.Logf("phase bound %v (dial %v + handshake %v): both legs closed and the slot free %v after the login began", bound, dial, handshake, cut.Round(time.Millisecond))
	if cut > bound+phaseGrace+500*time.Millisecond {
		t.Fatalf("cut after %v, bound %v", cut, bound)
	}
}
