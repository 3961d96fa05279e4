package e2e

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Issue 11, items 1-3, 15 and 16, against the running binary with raw
// sockets: decompression bombs before login, one address holding idle
// logins, idle keep-alive connections, cross-origin WebSockets, and the
// web root's listings, symlinks and CSP.

func dialFromAddr(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// procKiB reads a "VmRSS"/"VmHWM" line of /proc/pid/status.
func procKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// hangsUp reports whether the proxy closes c within d.
func hangsUp(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

func zlibBombE2E(t *testing.T, mib int) []byte {
	var blk bytes.Buffer
	fw, _ := flate.NewWriter(&blk, flate.BestCompression)
	_, _ = fw.Write(make([]byte, 1<<20))
	_ = fw.Flush()
	out := []byte{0x78, 0xda}
	for range mib {
		out = append(out, blk.Bytes()...)
	}
	out = append(out, 0x03, 0x00)
	return binary.BigEndian.AppendUint32(out, (uint32(mib)<<20%65521)<<16|1)
}

func lz4BombE2E(size int) []byte {
	m := size - 15
	out := binary.LittleEndian.AppendUint32(nil, uint32(1+15+4+255*m+5))
	out = append(out, 0x1f, 0x00, 0x01, 0x00)
	out = append(out, bytes.Repeat([]byte{0xff}, m)...)
	return append(out, 0x00, 0x50, 0, 0, 0, 0, 0)
}

// 256 MiB of zeros: andybalholm/brotli, quality 9, lgwin 24.
const brotliBombHex = "cfffff7f002400e2b14072effff9ffff0f8004401c1680eefd3fffffff01900088c302d0bdffe7ffff3f001200715800baf7fffcffff074002200e0b40f7fe9fffffff004800c46101e8defff3ffff1f000980382c00ddfb7ffeffff032001108705a07bffcfffff7f002400e2b00074effff9ffff0f8004401c1680eefd3fffffff01900088c302d0bdffe7ffff3f001200715800baf7fffcffff074002200e0b40f7fe9fffffff004800c46101e8defff3ffff1f000980382c00ddfb7ffeffff032001108705a07bff3f"

func TestPreLoginBoundsAgainstBinary(t *testing.T) {
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(www, "js"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(www, "index.html"), "the client")
	writeFile(t, filepath.Join(www, "js", "app.js"), "app")
	if err := os.Symlink("/etc/hostname", filepath.Join(www, "js", "out.js")); err != nil {
		t.Fatal(err)
	}
	jquery := "/usr/share/javascript/jquery/jquery.js"
	if _, err := os.Stat(jquery); err != nil {
		xpratest.RequirePeers(t, "xpra") // Debian's xpra brings libjs-jquery
		t.Fatalf("%s: %v", jquery, err)
	}
	if err := os.Symlink(jquery, filepath.Join(www, "js", "jquery.js")); err != nil {
		t.Fatal(err)
	}
	addr := xpratest.FreeTCPAddr(t)
	cfg := fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "toml"

[[listener]]
bind = %q

[web]
root = %q

[limits]
max_unauthenticated = 12
auth_fail_delay = "10ms"

[bans]
max_failures = 0

[[user]]
name = "u"
password = "p"
displays = ["tcp://127.0.0.1:1/"]
`, xpratest.FreeDisplay(t), filepath.Join(dir, "ctl"), addr, www)
	p := startProxy(t, addr, "--config="+writeFile(t, filepath.Join(dir, "edge.toml"), cfg))
	pid := p.cmd.Process.Pid

	t.Run("bombs", func(t *testing.T) {
		bombs := []struct {
			level xprawire.Level
			data  []byte
		}{
			{xprawire.MakeLevel(xprawire.Zlib, 9), zlibBombE2E(t, 250)},
			{xprawire.MakeLevel(xprawire.LZ4, 1), lz4BombE2E(250 << 10)},
		}
		bb, _ := hex.DecodeString(brotliBombHex)
		bombs = append(bombs, struct {
			level xprawire.Level
			data  []byte
		}{xprawire.MakeLevel(xprawire.Brotli, 9), bb})
		time.Sleep(500 * time.Millisecond)
		rss0, hwm0 := procKiB(t, pid, "VmRSS"), procKiB(t, pid, "VmHWM")
		n := 0
		for _, b := range bombs {
			for _, chunks := range []bool{true, false} {
				for range 2 {
					n++
					c := dialFromAddr(t, fmt.Sprintf("127.0.1.%d", n), addr)
					var frames []xprawire.Frame
					if chunks {
						for i := 1; i <= 3; i++ {
							frames = append(frames, xprawire.Frame{Header: xprawire.Header{Flags: xprawire.FlagRencode, Level: b.level, Index: uint8(i)}, Payload: b.data})
						}
					} else {
						frames = append(frames, xprawire.Frame{Header: xprawire.Header{Flags: xprawire.FlagRencode, Level: b.level}, Payload: b.data})
					}
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					_ = xprawire.NewFrameWriter(c).WriteFrames(frames)
				}
			}
		}
		time.Sleep(3 * time.Second)
		rss, hwm := procKiB(t, pid, "VmRSS"), procKiB(t, pid, "VmHWM")
		t.Logf("%d bombed connections: VmRSS %d -> %d MiB, VmHWM %d -> %d MiB (%+.1f MiB peak per connection; a -race build)",
			n, rss0>>10, rss>>10, hwm0>>10, hwm>>10, float64(hwm-hwm0)/1024/float64(n))
		// a -race binary: its shadow memory more than doubles what the heap costs
		if grow := hwm - hwm0; grow > n*8<<10 {
			t.Errorf("the proxy's peak RSS grew %d MiB over %d bombed connections: more than 8 MiB each", grow>>10, n)
		}
	})

	t.Run("per-address", func(t *testing.T) {
		var held []net.Conn
		var hdr [xprawire.HeaderSize]byte
		xprawire.Header{Flags: xprawire.FlagRencode, Size: 100}.Put(hdr[:])
		for range 12 {
			c := dialFromAddr(t, "127.0.0.1", addr)
			_, _ = c.Write(hdr[:])
			held = append(held, c)
		}
		closed := 0
		for _, c := range held {
			if hangsUp(c, 300*time.Millisecond) {
				closed++
			}
		}
		if closed != 4 {
			t.Errorf("%d of 12 idle logins from 127.0.0.1 were closed, want 4 (it may hold 8)", closed)
		}
		c := xpraclient.New(dialFromAddr(t, "127.0.0.2", addr), xprawire.Rencode)
		caps := xpraclient.BaseCaps("u")
		caps.Set("info_request", true)
		if _, err := c.Hello(caps, []byte("p"), true, false, 5*time.Second); err != nil {
			t.Errorf("127.0.0.2 could not log in while 127.0.0.1 held its slots: %v", err)
		}
		for _, c := range held {
			c.Close()
		}
	})

	t.Run("keep-alive", func(t *testing.T) {
		time.Sleep(500 * time.Millisecond) // the previous subtest's slots
		var conns []net.Conn
		for range 12 {
			c := dialFromAddr(t, "127.0.0.3", addr)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				resp.Body.Close()
			}
			_ = c.SetDeadline(time.Time{})
			conns = append(conns, c)
		}
		open := 0
		for _, c := range conns {
			if !hangsUp(c, 100*time.Millisecond) {
				open++
			}
		}
		if open > 8 {
			t.Errorf("%d idle keep-alive connections from one address open, want at most 8", open)
		}
		start := time.Now()
		for _, c := range conns {
			if !hangsUp(c, 13*time.Second-time.Since(start)) {
				t.Fatalf("an idle keep-alive connection is still open after %v", time.Since(start).Round(time.Second))
			}
		}
		t.Logf("%d of 12 idle keep-alive connections kept, all closed after %v", open, time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("web", func(t *testing.T) {
		get := func(path string, header ...string) *http.Response {
			c := dialFromAddr(t, "127.0.0.4", addr)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n" + strings.Join(append(header, ""), "\r\n") + "\r\n"
			_, _ = io.WriteString(c, req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				_, _ = io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
			return resp
		}
		for path, want := range map[string]int{"/": 200, "/js/app.js": 200, "/js/jquery.js": 200, "/js/": 404, "/js/out.js": 404} {
			if resp := get(path); resp.StatusCode != want {
				t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
			} else if want == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "object-src 'none'") {
				t.Errorf("GET %s: no Content-Security-Policy", path)
			}
		}
		ws := []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: binary"}
		if resp := get("/", append(ws, "Origin: https://evil.example")...); resp.StatusCode != http.StatusForbidden {
			t.Errorf("WebSocket from https://evil.example: %s, want 403", resp.Status)
		}
		if resp := get("/", append(ws, "Origin: http://"+addr)...); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("WebSocket from the proxy's own page: %s, want 101", resp.Status)
		}
		if resp := get("/", ws...); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("WebSocket without Origin: %s, want 101", resp.Status)
		}
	})
}
