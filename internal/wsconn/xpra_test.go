package wsconn

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/tlsconf"
)

// needXpra returns the path of the real xpra 3.1.3 client, or skips (fails
// when XPRA_EDGE_REQUIRE_PEERS=1).
func needXpra(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/xpra"} {
		if _, err := os.Stat(p); err == nil {
			if _, err := os.Stat("/usr/bin/python3"); err == nil {
				return p
			}
		}
	}
	if os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" {
		t.Fatal("the xpra client (/usr/bin/xpra, Debian package xpra) is required")
	}
	t.Skip("xpra not installed")
	return ""
}

// TestRealXpraClient runs `xpra version ws://127.0.0.1:PORT/` (xpra 3.1.3's
// python client) against Upgrade. The stream must start with an xpra
// header ('P', flags, level, index 0, big-endian size) followed by that
// many bytes forming a zlib-compressed hello. By default the client sends
// unmasked frames (against RFC 6455), the case most Go servers refuse;
// XPRA_WEBSOCKET_LEGACY=0 with XPRA_WEBSOCKET_MASK=1 makes it mask them
// like a browser (legacy frame-per-chunk mode never masks).
func TestRealXpraClient(t *testing.T) {
	xpra := needXpra(t)
	for _, tc := range []struct {
		name   string
		env    []string
		masked bool
	}{
		{"unmasked default", nil, false},
		{"masked", []string{"XPRA_WEBSOCKET_LEGACY=0", "XPRA_WEBSOCKET_MASK=1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				hdr, payload     []byte
				err              error
				masked, unmasked int
				path, proto      string
			}
			res := make(chan result, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Upgrade(w, r)
				if err != nil {
					res <- result{err: err}
					return
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				out := result{path: r.URL.Path, proto: r.Header.Get("Sec-WebSocket-Protocol")}
				out.hdr = make([]byte, 8)
				if _, out.err = io.ReadFull(c, out.hdr); out.err == nil {
					size := binary.BigEndian.Uint32(out.hdr[4:])
					if size > 1<<20 {
						out.err = io.ErrShortBuffer
					} else {
						out.payload = make([]byte, size)
						_, out.err = io.ReadFull(c, out.payload)
					}
				}
				wc := c.(*Conn)
				out.masked, out.unmasked = wc.maskedIn, wc.unmasked
				res <- out
			}))
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			home := t.TempDir()
			cmd := exec.CommandContext(ctx, xpra, "version", "ws://"+srv.Listener.Addr().String()+"/")
			cmd.Env = append([]string{
				"HOME=" + home, "XDG_RUNTIME_DIR=" + home, "PATH=/usr/bin:/bin",
				"LANG=C.UTF-8", "XPRA_CONNECT_TIMEOUT=10",
			}, tc.env...)
			out := &bytes.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			var r result
			select {
			case r = <-res:
			case <-ctx.Done():
				t.Fatalf("xpra never upgraded:\n%s", out)
			}
			if r.err != nil {
				t.Fatalf("%v\nxpra output:\n%s", r.err, out)
			}
			h := r.hdr
			t.Logf("path %q, protocol %q, header % x, %d masked and %d unmasked frames", r.path, r.proto, h, r.masked, r.unmasked)
			if h[0] != 'P' || h[3] != 0 {
				t.Fatalf("not an xpra main-packet header: % x", h)
			}
			if h[1] != 0x01 || h[2] != 0x01 {
				t.Fatalf("want rencode (flags 0x01) and zlib level 1, got flags %#x level %#x", h[1], h[2])
			}
			zr, err := zlib.NewReader(bytes.NewReader(r.payload))
			if err != nil {
				t.Fatalf("payload is not zlib: %v", err)
			}
			plain, err := io.ReadAll(io.LimitReader(zr, 1<<20))
			if err != nil {
				t.Fatalf("inflate: %v", err)
			}
			if !bytes.Contains(plain[:min(len(plain), 16)], []byte("hello")) || !bytes.Contains(plain, []byte("version")) {
				t.Fatalf("not a hello: %q", plain[:min(len(plain), 64)])
			}
			if tc.masked && (r.masked == 0 || r.unmasked != 0) || !tc.masked && (r.unmasked == 0 || r.masked != 0) {
				t.Fatalf("masked=%v but saw %d masked and %d unmasked frames", tc.masked, r.masked, r.unmasked)
			}
		})
	}
}

// TestDialRealXpraServer: Dial (masked client frames) to a real xpra 3.1.3
// server's --bind-ws socket, then a version request through it answered
// by the server.
func TestDialRealXpraServer(t *testing.T) {
	needXpra(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := xpratest.StartServer(t, xpratest.ServerOptions{
		Start: "-",
		Args:  []string{"--bind-ws=" + addr, "--ws-auth=none"},
	})
	var raw net.Conn
	for i := 0; i < 100; i++ { // the ws socket may come up after the unix one
		if raw, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", addr, err, srv.Log())
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := Dial(ctx, raw, addr, "/"+srv.Display)
	if err != nil {
		t.Fatalf("websocket handshake with xpra: %v\n%s", err, srv.Log())
	}
	defer ws.Close()
	caps, err := xpraclient.New(ws, xprawire.Rencode).Request("version", 15*time.Second)
	if err != nil {
		t.Fatalf("version request over ws: %v\n%s", err, srv.Log())
	}
	v, _ := caps.Str("version")
	if !strings.HasPrefix(v, "3.1") {
		t.Fatalf("server version %q", v)
	}
	t.Logf("server %s answered version %q over ws", srv.Display, v)
	if wc := ws.(*Conn); wc.maskedIn != 0 || wc.unmasked == 0 {
		t.Fatalf("server frames: %d masked, %d unmasked", wc.maskedIn, wc.unmasked)
	}
}

// TestRealXpraClientWSS: `xpra version wss://127.0.0.1:PORT/` verifying a
// tlsconf self-signed leaf against its dev CA, into Upgrade behind
// tls.Server: the same xpra header arrives through TLS.
func TestRealXpraClientWSS(t *testing.T) {
	xpra := needXpra(t)
	m, err := tlsconf.New(tlsconf.Config{Mode: tlsconf.ModeSelfSigned, StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	hdrs := make(chan []byte, 1)
	// Not httptest's StartTLS: it would add its own certificate.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r)
		if err != nil {
			t.Errorf("upgrade over tls: %v", err)
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		h := make([]byte, 8)
		if _, err := io.ReadFull(c, h); err != nil {
			t.Errorf("read: %v", err)
		}
		hdrs <- h
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, xpra, "version", "wss://"+ln.Addr().String()+"/",
		"--ssl-ca-certs="+m.CAFile(), "--ssl-server-verify-mode=required")
	cmd.Env = []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + home, "PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	select {
	case h := <-hdrs:
		if h[0] != 'P' || h[1] != 0x01 || h[3] != 0 {
			t.Fatalf("not an xpra hello header: % x\n%s", h, out)
		}
	case <-exited:
		t.Fatalf("xpra exited before sending over wss:\n%s", out)
	case <-ctx.Done():
		t.Fatalf("no websocket data over tls:\n%s", out)
	}
}
