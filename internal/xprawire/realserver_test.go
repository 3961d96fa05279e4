package xprawire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startRealServer starts a real xpra 3.1.3 server (its own Xvfb, nothing
// else) listening on a loopback TCP port, and stops it when the test ends.
// A display number taken concurrently by another test is retried.
func startRealServer(t *testing.T) string {
	t.Helper()
	requireXpra(t)
	if _, err := exec.LookPath("Xvfb"); err != nil {
		if os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" {
			t.Fatal("Xvfb is not installed")
		}
		t.Skip("Xvfb not installed")
	}
	next := 300 + os.Getpid()%200
	var lastErr error
	for range 3 {
		display := -1
		for d := next; d < 800; d++ {
			_, err1 := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", d))
			_, err2 := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", d))
			if os.IsNotExist(err1) && os.IsNotExist(err2) {
				display = d
				break
			}
		}
		if display < 0 {
			t.Fatal("no free X display number")
		}
		next = display + 7
		addr, err := tryStartServer(t, display)
		if err == nil {
			return addr
		}
		lastErr = err
		t.Logf("display :%d: %v; retrying", display, err)
	}
	t.Fatal(lastErr)
	return ""
}

func tryStartServer(t *testing.T, display int) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command("xpra", "start", fmt.Sprintf(":%d", display), "--daemon=no",
		"--bind-tcp="+addr, "--socket-dirs="+dir, "--log-dir="+dir, "--html=off", "--mdns=no",
		"--pulseaudio=no", "--notifications=no", "--system-tray=no", "--speaker=no", "--microphone=no",
		"--webcam=no", "--dbus-proxy=no", "--dbus-control=no", "--start-new-commands=no",
		"--xvfb=Xvfb +extension Composite -screen 0 1024x768x24+32 -nolisten tcp -noreset")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return "", err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // our own process group
			<-exited
		}
		logf.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					b, _ := os.ReadFile(logf.Name())
					t.Logf("server log:\n%s", b)
				}
			})
			return addr, nil
		}
		select {
		case <-exited:
			stop()
			b, _ := os.ReadFile(logf.Name())
			return "", fmt.Errorf("xpra server exited during startup:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("xpra server not listening on %s after 30s", addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// requestHello sends a request hello with this package and returns the
// server's replies up to its hello (the real client hangs up there too).
func requestHello(t *testing.T, addr string, e Encoding, request string) ([]Packet, []Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	pw := NewPacketWriter(NewFrameWriter(c), e)
	pw.Compressor, pw.CompressionLevel = Zlib, 1
	caps := Dict{
		{"version", "3.1.3"}, {"rencode", e == Rencode}, {"bencode", true}, {"yaml", false}, {"lzo", false},
		{"zlib", true}, {"lz4", false}, {"brotli", false}, {"compressors", []string{"zlib"}},
		{"encoders", []string{"rencode", "bencode"}}, {"compression_level", 1},
		{"uuid", "0123456789abcdef0123456789abcdef01234567"}, {"username", "xprawire-test"},
		{"request", request}, {request + "_request", true}, {"info-namespace", true},
		{"padding", strings.Repeat("p", 400)}, // pushes the hello over MinCompressSize: zlib on the wire
	}
	if err := pw.WritePacket(Packet{"hello", caps}); err != nil {
		t.Fatal(err)
	}
	pr := NewPacketReader(bufio.NewReader(c))
	var got []Packet
	var hs []Header
	for range 20 {
		p, h, err := pr.ReadPacket()
		if err != nil {
			var te *DisconnectTextError
			if errors.As(err, &te) {
				t.Fatalf("server sent a text disconnect: %q", te.Text)
			}
			break
		}
		if enc, _ := EncodingForFlags(h.Flags); enc != e {
			t.Errorf("server replied in %v to a %v hello", enc, e)
		}
		got, hs = append(got, p), append(hs, h)
		if p.Type() == "disconnect" || p.Type() == "hello" {
			break
		}
	}
	return got, hs
}

// TestRealServer: a real xpra 3.1.3 server accepts hellos encoded and
// compressed by this package (rencode and bencode, zlib), and its replies,
// including the big nested info dict, decode here.
func TestRealServer(t *testing.T) {
	addr := startRealServer(t)
	for _, e := range []Encoding{Rencode, Bencode} {
		t.Run(e.String()+"/version", func(t *testing.T) {
			ps, _ := requestHello(t, addr, e, "version")
			if len(ps) == 0 || ps[0].Type() != "hello" {
				t.Fatalf("replies: %d", len(ps))
			}
			if v, _ := (Caps{ps[0][1].(Dict)}).Str("version"); v != "3.1.3" {
				t.Fatalf("version %q", v)
			}
		})
		t.Run(e.String()+"/info", func(t *testing.T) {
			ps, hs := requestHello(t, addr, e, "info")
			if len(ps) == 0 || ps[0].Type() != "hello" {
				t.Fatalf("replies: %d", len(ps))
			}
			if c, _ := hs[0].Level.Compressor(); c != Zlib {
				t.Errorf("info reply header %+v: expected the server to zlib-compress it", hs[0])
			}
			info := Caps{ps[0][1].(Dict)}
			if typ, _ := info.Str("server.type"); typ == "" {
				t.Errorf("server.type missing (nested lookup)")
			}
			if v, _ := info.Str("server.build.version"); v != "3.1.3" {
				t.Errorf("server.build.version = %q", v)
			}
			if len(info.Dict) < 5 {
				t.Errorf("only %d top-level info keys", len(info.Dict))
			}
			// the decoded info re-encodes in every encoding (rencodeplus for 6.x peers)
			for _, e2 := range []Encoding{Rencode, RencodePlus} {
				if _, err := Marshal(e2, ps[0]); err != nil {
					t.Errorf("re-encode info as %v: %v", e2, err)
				}
			}
		})
	}
}
