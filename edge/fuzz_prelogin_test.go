package edge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// fuzzConn is a client connection whose bytes are the fuzzer's input:
// reads return them then EOF; writes are discarded; deadlines are kept
// but never block (nothing waits for input that will not come).
type fuzzConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	closed bool
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *fuzzConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fuzzConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (c *fuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 40000}
}
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzBackend is a fake xpra server: it answers every hello with a hello
// and reads whatever follows until the connection ends.
func fuzzBackend(f *testing.F) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				pr := xprawire.NewPacketReader(bufio.NewReader(c))
				pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(c), xprawire.Rencode)
				for {
					p, _, err := pr.ReadPacket()
					if err != nil {
						return
					}
					if p.Type() == "hello" {
						hello := xprawire.Dict{}
						hello.Set("version", "3.1.3")
						hello.Set("rencode", true)
						hello.Set("encoders", []any{"rencode", "bencode"})
						_ = pw.WritePacket(xprawire.Packet{"hello", hello})
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// FuzzPreLogin feeds arbitrary bytes to the whole pre-login path, as an
// anonymous client's connection: sniffing, PROXY headers (from a trusted
// address), HTTP and WebSocket upgrades, the xpra hello, authentication
// (a toml user and a "none" listener) and, when a hello passes, routing to
// a fake backend and the start of its session. It must neither panic nor
// hang, and every connection gives its unauthenticated slot back.
func FuzzPreLogin(f *testing.F) {
	backend := fuzzBackend(f)
	users, err := auth.New(auth.Spec{Name: "toml"}, auth.Options{Users: []auth.User{{Name: "u", Password: "p", Displays: []string{"tcp://" + backend + "/", "tcp://" + backend + "/7"}}}})
	if err != nil {
		f.Fatal(err)
	}
	none, err := auth.New(auth.Spec{Name: "none"}, auth.Options{})
	if err != nil {
		f.Fatal(err)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	var logTo io.Writer = io.Discard
	if os.Getenv("FUZZ_PRELOGIN_LOG") != "" {
		logTo = os.Stderr
	}
	s, err := New(Config{
		Logger: slog.New(slog.NewTextHandler(logTo, nil)),
		State: State{
			// A route for the WebSocket path /desk (a "none" login gets a
			// backend there), the users' own displays elsewhere.
			Router: &router.Router{Routes: &router.Table{Routes: []router.Route{{Name: "desk", PathPrefix: "/desk", Targets: []string{"tcp://" + backend + "/"}}}}},
			Limits: Limits{AuthFailDelay: -1, LoginTimeout: time.Second, ChallengeTimeout: time.Second, BackendHandshakeTimeout: time.Second},
			Bans:   BanPolicy{},
			Listeners: []*Listener{
				{Name: "toml", Address: "fuzz:1", Auth: users, AllowPlain: true, ProxyFrom: trusted},
				{Name: "none", Address: "fuzz:2", Auth: none, AllowPlain: true},
			},
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.startWeb(ctx)
	f.Cleanup(func() { cancel(); s.stopWeb() })

	hello := func(caps xprawire.Dict) []byte {
		var buf bytes.Buffer
		_ = xprawire.NewPacketWriter(xprawire.NewFrameWriter(&buf), xprawire.Rencode).WritePacket(xprawire.Packet{"hello", caps})
		return buf.Bytes()
	}
	plain := hello(xpraclient.BaseCaps("u"))
	f.Add(byte(0), plain)
	f.Add(byte(1), plain)
	withReq := xpraclient.BaseCaps("u")
	withReq.Set("info_request", true)
	withReq.Set("display", ":7")
	f.Add(byte(1), hello(withReq))
	f.Add(byte(0), append([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 4242 443\r\n"), plain...))
	f.Add(byte(0), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /js/ HTTP/1.1\r\nHost: x\r\n\r\n"))
	// "none" with a numeric user name: its uid, no password database.
	plain = hello(xpraclient.BaseCaps("1000"))
	f.Add(byte(1), plain)
	ws := []byte("GET /desk HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n")
	frame := append([]byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0}, plain...)
	frame[9] = byte(len(plain))
	frame[8] = byte(len(plain) >> 8)
	f.Add(byte(1), append(ws, frame...))
	f.Add(byte(0), append([]byte{'P', 1, 0x11, 1, 0, 0, 0, 5}, 1, 2, 3, 4, 5))

	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		name := "toml"
		if which&1 == 1 {
			name = "none"
		}
		before := s.unauth.Load()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.handleConn(ctx, &fuzzConn{r: bytes.NewReader(data)}, name, s.snapshot())
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("handleConn did not return in 10 s on %q", data)
		}
		// Every connection gives its unauthenticated slot back (an HTTP
		// one when the web server is done with it).
		for deadline := time.Now().Add(5 * time.Second); s.unauth.Load() > before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the connection kept its unauthenticated slot (%d -> %d) on %q", before, s.unauth.Load(), data)
			}
		}
	})
}
