package xprawire

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireXpra fails (XPRA_EDGE_REQUIRE_PEERS=1) or skips when the real xpra client is missing.
func requireXpra(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("xpra"); err == nil {
		return
	}
	if os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" {
		t.Fatal("the xpra client (Debian package xpra) is not installed")
	}
	t.Skip("xpra not installed")
}

// TestRealClientVersion: the real xpra 3.1.3 client ("xpra version") talks
// to a loopback listener that reads and writes only through this package.
// Our reply is zlib-compressed (the only compressor this client has) and in
// the client's own encoder; the client must print our version and exit 0.
func TestRealClientVersion(t *testing.T) {
	requireXpra(t)
	for _, tc := range []struct {
		name  string
		args  []string
		flags Flags
	}{
		{"rencode", nil, FlagRencode},
		{"bencode", []string{"--packet-encoders=bencode"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"version", "tcp://" + ln.Addr().String() + "/"}, tc.args...)
			cmd := exec.CommandContext(ctx, "xpra", args...)
			var out strings.Builder
			cmd.Stdout = &out
			cmd.Stderr = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- serveVersion(ln, tc.flags) }()
			werr := cmd.Wait()
			if err := <-served; err != nil {
				t.Fatalf("server side: %v\nclient output:\n%s", err, out.String())
			}
			if werr != nil {
				t.Fatalf("client: %v\n%s", werr, out.String())
			}
			if !strings.Contains(out.String(), "9.8.7-xprawire") {
				t.Fatalf("client did not print our version:\n%s", out.String())
			}
			if testing.Verbose() {
				t.Logf("client output: %s", out.String())
			}
		})
	}
}

func serveVersion(ln net.Listener, wantFlags Flags) error {
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	pr := NewPacketReader(bufio.NewReader(c))
	p, h, err := pr.ReadPacket()
	if err != nil {
		return err
	}
	if p.Type() != "hello" || h.Flags != wantFlags || h.Level != MakeLevel(Zlib, 1) {
		return fmt.Errorf("first packet %q with header %+v", p.Type(), h)
	}
	caps := Caps{p[1].(Dict)}
	if !caps.Bool("version_request", false) {
		if r, _ := caps.Str("request"); r != "version" {
			return fmt.Errorf("not a version request: %s", clip([]byte(tag(p[1]))))
		}
	}
	enc, err := EncodingForFlags(h.Flags)
	if err != nil {
		return err
	}
	pw := NewPacketWriter(NewFrameWriter(c), enc)
	pw.Compressor, pw.CompressionLevel = Zlib, 1
	reply := Dict{{"version", "9.8.7-xprawire"}, {"padding", strings.Repeat("z", 500)}} // > MinCompressSize: compressed
	if err := pw.WritePacket(Packet{"hello", reply}); err != nil {
		return err
	}
	if err := pw.WritePacket(Packet{"disconnect", "done"}); err != nil {
		return err
	}
	// wait for the client to hang up
	for {
		if _, _, err := pr.ReadPacket(); err != nil {
			return nil
		}
	}
}
