package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want kind
		err  error
	}{
		{"", kindUnknown, ErrNeedMore},
		{"\x16", kindTLS, nil},
		{"\x16\x03\x01", kindTLS, nil},
		{"P", kindUnknown, ErrNeedMore},
		{"P\x00", kindXpra, nil},
		{"P\x01\x00\x00\x00\x00\x01\x00", kindXpra, nil},
		{"P\x10", kindXpra, nil},
		{"P\x1f", kindXpra, nil},
		{"P\x20", kindUnknown, errUnknownProtocol},
		{"PU", kindUnknown, ErrNeedMore},
		{"PUT ", kindHTTP, nil},
		{"PUT / HTTP/1.1\r\n", kindHTTP, nil},
		{"PATCH", kindUnknown, ErrNeedMore},
		{"PATCH / HTTP/1.1", kindHTTP, nil},
		{"POST ", kindHTTP, nil},
		{"PROXY", kindUnknown, ErrNeedMore},
		{"PROXY TCP4 1.2.3.4", kindProxyV1, nil},
		{"PUTX", kindUnknown, errUnknownProtocol},
		{"GET", kindUnknown, ErrNeedMore},
		{"GET /", kindHTTP, nil},
		{"HEAD ", kindHTTP, nil},
		{"OPTIONS", kindUnknown, ErrNeedMore},
		{"OPTIONS *", kindHTTP, nil},
		{"CONNECT x", kindHTTP, nil},
		{"DELETE /", kindHTTP, nil},
		{"TRACE /", kindHTTP, nil},
		{"get /", kindUnknown, errUnknownProtocol},
		{"\r\n\r\n\x00\r\nQUI", kindUnknown, ErrNeedMore},
		{proxyV2Sig, kindProxyV2, nil},
		{proxyV2Sig + "\x21", kindProxyV2, nil},
		{"\r\n\r\nX", kindUnknown, errUnknownProtocol},
		{"SSH-2.0-OpenSSH", kindUnknown, errUnknownProtocol},
		{"\x00", kindUnknown, errUnknownProtocol},
	} {
		k, err := classify([]byte(tc.in))
		if k != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("classify(%q) = %v, %v; want %v, %v", tc.in, k, err, tc.want, tc.err)
		}
	}
}

// TestSniffReadsOnlyWhatItNeeds: over a net.Pipe, bytes arriving one at
// a time are classified as soon as they tell, and everything read stays
// buffered for the next reader.
func TestSniffReadsOnlyWhatItNeeds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want kind
		err  error
	}{
		{"P\x01\x00\x00\x00\x00\x00\x10", kindXpra, nil},
		{"PUT /x HTTP/1.1\r\n\r\n", kindHTTP, nil},
		{"PATCH /x HTTP/1.1\r\n\r\n", kindHTTP, nil},
		{"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n", kindProxyV1, nil},
		{proxyV2Sig + "\x21\x11\x00\x00", kindProxyV2, nil},
		{"\x16\x03\x01\x00", kindTLS, nil},
		{"junk", kindUnknown, errUnknownProtocol},
	} {
		a, b := net.Pipe()
		go func() {
			for i := range len(tc.in) {
				if _, err := b.Write([]byte{tc.in[i]}); err != nil {
					return
				}
			}
			b.Close()
		}()
		_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(a)
		k, err := sniff(br)
		if k != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("sniff(%q) = %v, %v; want %v, %v", tc.in, k, err, tc.want, tc.err)
		}
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, []byte(tc.in)) {
			t.Errorf("sniff(%q) consumed bytes: %q left", tc.in, rest)
		}
		a.Close()
	}
	// A stream that ends inside a prefix, and one that sends nothing.
	for in, want := range map[string]error{"GE": errUnknownProtocol, "": io.EOF} {
		a, b := net.Pipe()
		go func() { _, _ = b.Write([]byte(in)); b.Close() }()
		if _, err := sniff(bufio.NewReader(a)); !errors.Is(err, want) {
			t.Errorf("sniff of %q then EOF: %v, want %v", in, err, want)
		}
		a.Close()
	}
}

// FuzzClassify: classify never panics, never asks for more than maxSniff
// bytes, and once it names a kind every longer input gets the same kind.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"P\x01\x00\x00", "PUT /", "PATCH /", "POST /", "PROXY TCP4", proxyV2Sig, "\x16\x03\x01", "GET / HTTP/1.1", "OPTIONS *"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := classify(b)
		if errors.Is(err, ErrNeedMore) && len(b) >= maxSniff {
			t.Fatalf("classify(%q) needs more past %d bytes", b, maxSniff)
		}
		if err != nil {
			return
		}
		for i := 1; i < len(b); i++ {
			if pk, perr := classify(b[:i]); perr == nil && pk != k {
				t.Fatalf("classify(%q) = %v but its prefix %q = %v", b, k, b[:i], pk)
			}
		}
		if k2, err2 := classify(append(append([]byte(nil), b...), 'x')); err2 != nil || k2 != k {
			t.Fatalf("classify(%q+x) = %v, %v; want %v", b, k2, err2, k)
		}
	})
}

// TestPUTAndPATCHAreHTTP: through a listener, PUT and PATCH get an HTTP
// answer (405), not xpra's text disconnect. Before, every 'P' but "POST "
// went down the xpra path.
func TestPUTAndPATCHAreHTTP(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	for _, m := range []string{"PUT", "PATCH"} {
		c := f.dial()
		if _, err := c.Write([]byte(m + " /x HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 405") {
			t.Fatalf("%s: answered %q, %v", m, line, err)
		}
	}
}

// TestWebSocketRuleIsShared: the edge sends to the WebSocket upgrade only
// what wsconn.IsUpgrade accepts. Before, "Connection: upgraded" went to
// the upgrade (and got its 400) while a token list in Upgrade did not.
func TestWebSocketRuleIsShared(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	get := func(upgrade, connection string) string {
		c := f.dial()
		req := "GET /healthz HTTP/1.1\r\nHost: edge\r\nUpgrade: " + upgrade + "\r\nConnection: " + connection +
			"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	if got := get("websocket", "upgraded"); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("Connection: upgraded is a plain request: got %q", got)
	}
	if got := get("h2c, websocket", "keep-alive, Upgrade"); !strings.HasPrefix(got, "HTTP/1.1 101") {
		t.Fatalf("token lists are an upgrade: got %q", got)
	}
}
