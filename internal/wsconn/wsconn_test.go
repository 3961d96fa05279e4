package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// frame builds one frame by hand. b0 is FIN|RSV|opcode, mask nil means an
// unmasked frame (as xpra's Python client sends), payload is sent as is.
//
//	byte 0: FIN(0x80) RSV1-3(0x70) opcode(0x0f)
//	byte 1: MASK(0x80) length 0..125, 126 (+2 bytes BE), 127 (+8 bytes BE)
//	[4-byte mask key] payload (XOR key[i%4] when masked)
func frame(fin bool, op byte, mask []byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	mbit := byte(0)
	if mask != nil {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	p := bytes.Clone(payload)
	if mask != nil {
		out = append(out, mask...)
		for i := range p {
			p[i] ^= mask[i%4]
		}
	}
	return append(out, p...)
}

// scriptConn is a net.Conn that reads a fixed input and records writes.
type scriptConn struct {
	in     *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func newScript(in []byte) *scriptConn { return &scriptConn{in: bytes.NewReader(in)} }

func (s *scriptConn) Read(p []byte) (int, error) { return s.in.Read(p) }
func (s *scriptConn) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}
func (s *scriptConn) Close() error                     { s.closed = true; return nil }
func (s *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *scriptConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// written parses the frames the Conn sent (a client side parser: frames
// must be unmasked when the Conn is a server).
func (s *scriptConn) written(t *testing.T) []parsed {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	return parseFrames(t, s.out.Bytes())
}

type parsed struct {
	fin     bool
	op      byte
	masked  bool
	payload []byte
}

func parseFrames(t testing.TB, b []byte) []parsed {
	t.Helper()
	var out []parsed
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("truncated frame header % x", b)
		}
		f := parsed{fin: b[0]&0x80 != 0, op: b[0] & 0x0f, masked: b[1]&0x80 != 0}
		if b[0]&0x70 != 0 {
			t.Fatalf("reserved bits sent: %#x", b[0])
		}
		n := uint64(b[1] & 0x7f)
		b = b[2:]
		need := map[uint64]int{126: 2, 127: 8}[n]
		if f.masked {
			need += 4
		}
		if len(b) < need {
			t.Fatalf("truncated extended header")
		}
		switch n {
		case 126:
			n, b = uint64(binary.BigEndian.Uint16(b)), b[2:]
		case 127:
			n, b = binary.BigEndian.Uint64(b), b[8:]
		}
		key := []byte{0, 0, 0, 0}
		if f.masked {
			key, b = b[:4], b[4:]
		}
		if uint64(len(b)) < n {
			t.Fatalf("truncated payload: %d < %d", len(b), n)
		}
		f.payload = bytes.Clone(b[:n])
		for i := range f.payload {
			f.payload[i] ^= key[i%4]
		}
		b = b[n:]
		out = append(out, f)
	}
	return out
}

func readAll(c *Conn, chunk int) ([]byte, error) {
	var got []byte
	buf := make([]byte, chunk)
	for range 1 << 20 {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
	return got, errors.New("read loop did not end")
}

var mask = []byte{0x37, 0xfa, 0x21, 0x3d}

func TestFramesBecomeOneStream(t *testing.T) {
	input := bytes.Join([][]byte{
		frame(true, opBinary, nil, []byte("unmasked, as xpra's client sends; ")),
		frame(true, opBinary, mask, []byte("masked, as browsers send; ")),
		frame(true, opBinary, nil, nil), // empty frames carry nothing
		frame(false, opBinary, mask, []byte("frag")),
		frame(true, opPing, mask, []byte("ping!")), // control frames may interleave
		frame(false, opContinuation, nil, []byte("men")),
		frame(true, opPong, nil, []byte("unsolicited pong")),
		frame(true, opContinuation, mask, []byte("ted; ")),
		frame(true, opText, nil, []byte("text is bytes too; ")),
		frame(true, opBinary, mask, bytes.Repeat([]byte("L"), 70000)), // 64-bit length form
		frame(true, opBinary, nil, bytes.Repeat([]byte("M"), 300)),    // 16-bit length form
		frame(true, opClose, mask, []byte{0x03, 0xe8, 'b', 'y', 'e'}),
		frame(true, opBinary, nil, []byte("after close: never read")),
	}, nil)
	for _, chunk := range []int{1, 7, 4096, 1 << 20} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			sc := newScript(input)
			c := newConn(sc, nil, false)
			got, err := readAll(c, chunk)
			if err != io.EOF {
				t.Fatalf("err = %v, want io.EOF", err)
			}
			want := "unmasked, as xpra's client sends; masked, as browsers send; fragmented; text is bytes too; " +
				strings.Repeat("L", 70000) + strings.Repeat("M", 300)
			if string(got) != want {
				t.Fatalf("stream differs: got %d bytes, want %d", len(got), len(want))
			}
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after close: %v", err)
			}
			fs := sc.written(t)
			if len(fs) != 2 {
				t.Fatalf("wrote %d frames, want pong and close: %+v", len(fs), fs)
			}
			if fs[0].op != opPong || string(fs[0].payload) != "ping!" || fs[0].masked || !fs[0].fin {
				t.Fatalf("pong = %+v", fs[0])
			}
			if fs[1].op != opClose || !bytes.Equal(fs[1].payload, []byte{0x03, 0xe8}) {
				t.Fatalf("close reply = %+v", fs[1])
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after close handshake: %v", err)
			}
			if c.unmasked != 5 || c.maskedIn != 4 {
				t.Fatalf("counted %d unmasked and %d masked data frames", c.unmasked, c.maskedIn)
			}
		})
	}
}

func TestEOFWithoutCloseFrame(t *testing.T) {
	c := newConn(newScript(frame(true, opBinary, nil, []byte("abc"))), nil, false)
	got, err := readAll(c, 10)
	if err != io.EOF || string(got) != "abc" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestBadFrames(t *testing.T) {
	tooBig := []byte{0x82, 127}
	tooBig = binary.BigEndian.AppendUint64(tooBig, MaxFrameSize+1)
	huge := []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0} // 2^63: negative as int64
	cases := []struct {
		name string
		in   []byte
		want error
		code uint16 // close status sent, 0 for none
	}{
		{"reserved bit 1", []byte{0xc2, 0x00}, ErrProtocol, closeProtocol},
		{"reserved bit 3", []byte{0x92, 0x00}, ErrProtocol, closeProtocol},
		{"opcode 3", frame(true, 0x3, nil, []byte("x")), ErrProtocol, closeProtocol},
		{"opcode 0xb", frame(true, 0xb, nil, nil), ErrProtocol, closeProtocol},
		{"fragmented ping", frame(false, opPing, nil, nil), ErrProtocol, closeProtocol},
		{"ping of 126 bytes", frame(true, opPing, mask, make([]byte, 126)), ErrProtocol, closeProtocol},
		{"close with 1 byte", frame(true, opClose, nil, []byte{3}), ErrProtocol, closeProtocol},
		{"continuation first", frame(true, opContinuation, nil, []byte("x")), ErrProtocol, closeProtocol},
		{"binary inside fragment", append(frame(false, opBinary, nil, []byte("a")), frame(true, opBinary, nil, []byte("b"))...), ErrProtocol, closeProtocol},
		{"over 256 MiB", tooBig, ErrFrameTooBig, closeTooBig},
		{"length 2^63", huge, ErrFrameTooBig, closeTooBig},
		{"truncated header", []byte{0x82}, ErrProtocol, closeProtocol},
		{"truncated 16-bit length", []byte{0x82, 126, 1}, ErrProtocol, closeProtocol},
		{"truncated mask", []byte{0x82, 0x81, 1, 2}, ErrProtocol, closeProtocol},
		{"truncated ping", []byte{0x89, 0x05, 'a'}, ErrProtocol, 0},
		{"truncated payload", []byte{0x82, 0x05, 'a', 'b'}, io.ErrUnexpectedEOF, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := newScript(tc.in)
			c := newConn(sc, nil, false)
			_, err := readAll(c, 3)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err2 := c.Read(make([]byte, 3)); !errors.Is(err2, tc.want) {
				t.Fatalf("the error is not sticky: %v", err2)
			}
			fs := sc.written(t)
			if tc.code == 0 {
				if len(fs) != 0 {
					t.Fatalf("wrote %+v", fs)
				}
				return
			}
			if len(fs) != 1 || fs[0].op != opClose || len(fs[0].payload) != 2 ||
				binary.BigEndian.Uint16(fs[0].payload) != tc.code {
				t.Fatalf("wrote %+v, want one close frame with %d", fs, tc.code)
			}
		})
	}
}

func TestClientRefusesMaskedServerFrames(t *testing.T) {
	c := newConn(newScript(frame(true, opBinary, mask, []byte("x"))), nil, true)
	if _, err := c.Read(make([]byte, 4)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v", err)
	}
}

func TestWriteFrames(t *testing.T) {
	for _, client := range []bool{false, true} {
		sc := newScript(nil)
		c := newConn(sc, nil, client)
		sizes := []int{0, 1, 125, 126, 65535, 65536, 200000}
		for _, n := range sizes {
			p := bytes.Repeat([]byte{byte(n)}, n)
			if m, err := c.Write(p); err != nil || m != n {
				t.Fatalf("write %d: %d, %v", n, m, err)
			}
			if n > 0 && p[0] != byte(n) {
				t.Fatal("Write changed the caller's buffer")
			}
		}
		fs := sc.written(t)
		if len(fs) != len(sizes) {
			t.Fatalf("%d frames for %d writes", len(fs), len(sizes))
		}
		for i, f := range fs {
			if f.op != opBinary || !f.fin || f.masked != client ||
				!bytes.Equal(f.payload, bytes.Repeat([]byte{byte(sizes[i])}, sizes[i])) {
				t.Fatalf("client=%v frame %d: op %#x fin %v masked %v len %d", client, i, f.op, f.fin, f.masked, len(f.payload))
			}
		}
		if err := c.Close(); err != nil || !sc.closed {
			t.Fatalf("close: %v", err)
		}
		fs = sc.written(t)
		if last := fs[len(fs)-1]; last.op != opClose || binary.BigEndian.Uint16(last.payload) != closeNormal {
			t.Fatalf("close frame %+v", last)
		}
	}
}

func TestConcurrentWritesDoNotInterleave(t *testing.T) {
	sc := newScript(nil)
	c := newConn(sc, nil, true)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte('a' + w)}, 1000+w*977)
			for range each {
				if _, err := c.Write(p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	fs := sc.written(t)
	if len(fs) != writers*each {
		t.Fatalf("%d frames", len(fs))
	}
	for _, f := range fs {
		w := int(f.payload[0] - 'a')
		if len(f.payload) != 1000+w*977 || !bytes.Equal(f.payload, bytes.Repeat(f.payload[:1], len(f.payload))) {
			t.Fatalf("a frame mixes writers (len %d)", len(f.payload))
		}
	}
}

func TestApplyMaskMatchesBytewise(t *testing.T) {
	key := [4]byte{1, 2, 4, 8}
	for n := range 40 {
		for pos := range 4 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			p := pos
			for i := range want {
				want[i] ^= key[p]
				p = (p + 1) & 3
			}
			if next := applyMask(b, key, pos); next != p || !bytes.Equal(b, want) {
				t.Fatalf("n=%d pos=%d: next %d want %d", n, pos, next, p)
			}
		}
	}
}

// upgradeServer serves Upgrade on any path and hands each conn to fn.
func upgradeServer(t *testing.T, fn func(c net.Conn)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r)
		if err != nil {
			return
		}
		fn(c)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestUpgradeRefusals(t *testing.T) {
	srv := upgradeServer(t, func(c net.Conn) { c.Close() })
	good := func() http.Header {
		return http.Header{
			"Upgrade":                {"websocket"},
			"Connection":             {"keep-alive, Upgrade"},
			"Sec-Websocket-Version":  {"13"},
			"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
			"Sec-Websocket-Protocol": {"binary"},
		}
	}
	cases := []struct {
		name   string
		method string
		edit   func(h http.Header)
		status int
		body   string
	}{
		{"no subprotocol", "GET", func(h http.Header) { h.Del("Sec-Websocket-Protocol") }, 403, "binary"},
		{"other subprotocol", "GET", func(h http.Header) { h.Set("Sec-Websocket-Protocol", "chat, base64") }, 403, "binary"},
		{"version 12", "GET", func(h http.Header) { h.Set("Sec-Websocket-Version", "12") }, 400, "version"},
		{"no key", "GET", func(h http.Header) { h.Del("Sec-Websocket-Key") }, 400, "Sec-WebSocket-Key"},
		{"plain GET", "GET", func(h http.Header) { h.Del("Upgrade") }, 400, "upgrade"},
		{"POST", "POST", func(http.Header) {}, 400, "GET"},
		{"version 8", "GET", func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, 101, ""},
		{"binary second", "GET", func(h http.Header) { h.Set("Sec-Websocket-Protocol", "base64,binary") }, 101, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+"/some/path", nil)
			req.Header = good()
			tc.edit(req.Header)
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 101 {
				if resp.Header.Get("Sec-Websocket-Protocol") != "binary" ||
					resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Fatalf("headers %v", resp.Header)
				}
				return
			}
			if !strings.Contains(string(body), tc.body) {
				t.Fatalf("body %q does not say %q", body, tc.body)
			}
		})
	}
}

func TestUpgradeErrorsAreTyped(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	if _, err := Upgrade(rec, req); !errors.Is(err, ErrBadHandshake) {
		t.Fatalf("err = %v", err)
	}
	req.Header = http.Header{"Upgrade": {"websocket"}, "Connection": {"upgrade"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	if _, err := Upgrade(httptest.NewRecorder(), req); !errors.Is(err, ErrNoSubprotocol) {
		t.Fatalf("err = %v", err)
	}
}

func TestDialUpgradeRoundTrip(t *testing.T) {
	type result struct {
		got []byte
		err error
	}
	const size = 3<<20 + 17
	done := make(chan result, 1)
	srv := upgradeServer(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, size)
		_, err := io.ReadFull(c, buf)
		done <- result{buf, err}
		// Echo back in odd-sized writes; then close.
		for off := 0; off < len(buf); off += 100003 {
			if _, err := c.Write(buf[off:min(off+100003, len(buf))]); err != nil {
				return
			}
		}
	})
	raw, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, raw, srv.Listener.Addr().String(), "/:100")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i*31 + i>>11)
	}
	go func() {
		for off := 0; off < len(msg); off += 65537 {
			if _, err := c.Write(msg[off:min(off+65537, len(msg))]); err != nil {
				return
			}
		}
	}()
	r := <-done
	if r.err != nil || !bytes.Equal(r.got, msg) {
		t.Fatalf("server got different bytes (%v)", r.err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	back, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("echo: %d bytes, %v", len(back), err)
	}
	if cc := c.(*Conn); cc.maskedIn != 0 || cc.unmasked == 0 {
		t.Fatalf("server frames: %d masked %d unmasked", cc.maskedIn, cc.unmasked)
	}
}

// TestBytesAfterHandshakeAreKept: a client may send frames in the same
// packet as its request; the HTTP server's buffer must not lose them.
func TestBytesAfterHandshakeAreKept(t *testing.T) {
	got := make(chan string, 1)
	srv := upgradeServer(t, func(c net.Conn) {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	raw, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: binary\r\n\r\n"
	all := append([]byte(req), frame(true, opBinary, nil, []byte("early "))...)
	all = append(all, frame(true, opBinary, mask, []byte("bytes"))...)
	all = append(all, frame(true, opClose, nil, nil)...)
	if _, err := raw.Write(all); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "early bytes" {
		t.Fatalf("got %q", s)
	}
}

func TestDialFailures(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() { // accept and say nothing
			c, err := ln.Accept()
			if err == nil {
				time.Sleep(3 * time.Second)
				c.Close()
			}
		}()
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = Dial(ctx, raw, "x", "/")
		if !errors.Is(err, ErrBadHandshake) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("Dial ignored the context")
		}
	})
	t.Run("no binary", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, rw, _ := http.NewResponseController(w).Hijack()
			defer c.Close()
			key := r.Header.Get("Sec-Websocket-Key")
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acceptKey(key))
			rw.Flush()
		}))
		defer srv.Close()
		raw, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := Dial(context.Background(), raw, "x", "/"); !errors.Is(err, ErrNoSubprotocol) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("403", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusForbidden)
		}))
		defer srv.Close()
		raw, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := Dial(context.Background(), raw, "x", "/"); !errors.Is(err, ErrBadHandshake) || !strings.Contains(err.Error(), "403") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDeadlinesPassThrough(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newConn(a, nil, false)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Write([]byte("nobody reads")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v", err)
	}
}

func TestCloseDoesNotWaitForABlockedWrite(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newConn(a, nil, false)
	started := make(chan struct{})
	go func() {
		close(started)
		_, _ = c.Write(make([]byte, 1000)) // nobody reads: blocks
	}()
	<-started
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close blocked")
	}
}

func TestHotPathAllocations(t *testing.T) {
	in := bytes.Repeat(frame(true, opBinary, mask, make([]byte, 1000)), 200)
	c := newConn(newScript(in), bufio.NewReaderSize(bytes.NewReader(in), 64<<10), false)
	buf := make([]byte, 1000)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Read allocates %v times per frame", n)
	}
	w := newConn(&discard{}, nil, false)
	if n := testing.AllocsPerRun(100, func() { _, _ = w.Write(buf) }); n != 0 {
		t.Errorf("server Write allocates %v times", n)
	}
	wc := newConn(&discard{}, nil, true)
	_, _ = wc.Write(buf)
	if n := testing.AllocsPerRun(100, func() { _, _ = wc.Write(buf) }); n != 0 {
		t.Errorf("client Write allocates %v times", n)
	}
}

// discard is a net.Conn that swallows writes and has nothing to read.
type discard struct{ scriptConn }

func (*discard) Write(p []byte) (int, error) { return len(p), nil }
func (*discard) Read([]byte) (int, error)    { return 0, io.EOF }

func FuzzRead(f *testing.F) {
	f.Add(frame(true, opBinary, nil, []byte("abc")), false)
	f.Add(frame(false, opBinary, mask, []byte("abc")), false)
	f.Add(append(frame(false, opText, nil, []byte("a")), frame(true, opContinuation, mask, []byte("b"))...), false)
	f.Add(append(frame(true, opPing, nil, []byte("p")), frame(true, opClose, nil, nil)...), false)
	f.Add([]byte{0x82, 0x7e, 0xff, 0xff}, false)
	f.Add([]byte{0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, true)
	f.Add(frame(true, opBinary, mask, []byte("to a client")), true)
	f.Fuzz(func(t *testing.T, in []byte, client bool) {
		sc := newScript(in)
		c := newConn(sc, nil, client)
		got, err := readAll(c, 5)
		if err == nil {
			t.Fatal("no error at the end of the input")
		}
		if len(got) > len(in) {
			t.Fatalf("read %d payload bytes from %d input bytes", len(got), len(in))
		}
		parseFrames(t, sc.out.Bytes()) // what we answered is well formed
	})
}

// loopReader serves the same frames forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func benchRead(b *testing.B, m []byte, size int) {
	in := bytes.Repeat(frame(true, opBinary, m, make([]byte, size)), 8)
	c := newConn(&discard{}, bufio.NewReaderSize(&loopReader{b: in}, 64<<10), false)
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadUnmasked64K(b *testing.B) { benchRead(b, nil, 64<<10) }
func BenchmarkReadMasked64K(b *testing.B)   { benchRead(b, mask, 64<<10) }
func BenchmarkReadMasked1K(b *testing.B)    { benchRead(b, mask, 1<<10) }

func benchWrite(b *testing.B, client bool, size int) {
	c := newConn(&discard{}, nil, client)
	p := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteServer64K(b *testing.B) { benchWrite(b, false, 64<<10) }
func BenchmarkWriteClient64K(b *testing.B) { benchWrite(b, true, 64<<10) }

// BenchmarkLoopbackTCP: Dial -> Upgrade over loopback TCP, client writes
// 64 KiB frames (masked), the server reads the stream.
func BenchmarkLoopbackTCP(b *testing.B) {
	const size = 64 << 10
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := Upgrade(w, r); err == nil {
			conns <- c
		}
	}))
	defer srv.Close()
	raw, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	cl, err := Dial(context.Background(), raw, "x", "/")
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	sc := <-conns
	defer sc.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		p := make([]byte, size)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := cl.Write(p); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, size)
	b.SetBytes(size)
	for b.Loop() {
		if _, err := io.ReadFull(sc, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReadTimeoutIsRetryable: a deadline that fires inside a frame header
// or a control frame consumes nothing; the next Read after a new deadline
// continues the stream (as for a plain net.Conn).
func TestReadTimeoutIsRetryable(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newConn(a, nil, false)
	defer c.Close()
	go func() { _, _ = io.Copy(io.Discard, b) }() // pongs
	whole := append(frame(true, opPing, mask, []byte("ping")), frame(true, opBinary, mask, []byte("payload"))...)
	buf := make([]byte, 16)
	for i, cut := range []int{1, 3, 7, 11} { // inside the ping, inside the data header
		sent := make(chan struct{})
		go func() { _, _ = b.Write(whole[:cut]); close(sent) }()
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%d: read with a partial frame: %v", i, err)
		}
		<-sent
		go func() { _, _ = b.Write(whole[cut:]) }()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "payload" {
			t.Fatalf("%d: after the timeout: %q, %v", i, buf[:n], err)
		}
	}
}

// TestUpgradeClearsServerDeadlines: an http.Server's ReadTimeout and
// WriteTimeout must not cut a long-lived WebSocket after the upgrade
// (net/http's Hijack clears them today; Upgrade clears them as well, for
// other hijackers, and this test keeps the contract).
func TestUpgradeClearsServerDeadlines(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	srv := &http.Server{ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := Upgrade(w, r)
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.Close()
			b := make([]byte, 5)
			if _, err := io.ReadFull(c, b); err != nil {
				got <- err.Error()
				return
			}
			if _, err := c.Write(b); err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
		})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), raw, "x", "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // past both server timeouts
	if _, err := c.Write([]byte("later")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "later" {
		t.Fatalf("server: %s", s)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "later" {
		t.Fatalf("echo %q %v", b, err)
	}
}
