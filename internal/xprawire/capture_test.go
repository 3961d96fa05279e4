package xprawire

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// realHelloFile is the first record a real Debian xpra 3.1.3 client sent
// ("xpra attach tcp://127.0.0.1:PORT/" under xvfb-run, no password): rencode,
// zlib level 1, 217 flat caps. Regenerate with XPRAWIRE_CAPTURE=1 go test -run TestCaptureRealHello.
const realHelloFile = "testdata/hello-3.1.3-attach.rec"

// TestCaptureRealHello runs the real client against a loopback Go listener
// and stores its first record. It only runs when XPRAWIRE_CAPTURE=1.
func TestCaptureRealHello(t *testing.T) {
	if os.Getenv("XPRAWIRE_CAPTURE") != "1" {
		t.Skip("set XPRAWIRE_CAPTURE=1 to capture a new hello from the real xpra client")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "xvfb-run", "-a", "xpra", "attach", "tcp://"+ln.Addr().String()+"/",
		"--no-notifications", "--no-tray", "--no-speaker", "--no-microphone", "--no-webcam")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(45 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var rec bytes.Buffer
	fr := NewFrameReader(bufio.NewReader(io.TeeReader(c, &rec)))
	h, payload, err := fr.Next()
	if err != nil {
		t.Fatal(err)
	}
	out := append(make([]byte, HeaderSize), payload...)
	h.Put(out)
	if err := os.WriteFile(realHelloFile, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("captured %d bytes, header %+v", len(out), h)
}

// realHello returns the captured record's header and payload.
func realHello(tb testing.TB) (Header, []byte) {
	tb.Helper()
	b, err := os.ReadFile(realHelloFile)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := ParseHeader(b)
	if err != nil {
		tb.Fatal(err)
	}
	return h, b[HeaderSize:]
}

// TestRealHello decodes the real client's hello, and re-encodes its
// decompressed body byte for byte.
func TestRealHello(t *testing.T) {
	h, payload := realHello(t)
	if h.Flags != FlagRencode || h.Level != 0x01 || h.Index != 0 || int(h.Size) != len(payload) {
		t.Fatalf("header %+v: the 3.1.3 client sends rencode + zlib level 1", h)
	}
	typ, err := PeekType(h, payload)
	if err != nil || typ != "hello" {
		t.Fatalf("PeekType = %q, %v", typ, err)
	}
	p, err := DecodeMain(h, payload)
	if err != nil {
		t.Fatal(err)
	}
	body, err := Decompress(nil, h.Level, payload, 0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Marshal(Rencode, p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, body) {
		t.Fatalf("re-encoding the real hello differs: %s", firstDiff(string(again), string(body)))
	}
	caps := Caps{p[1].(Dict)}
	if len(caps.Dict) != 217 {
		t.Errorf("%d caps", len(caps.Dict))
	}
	if s, _ := caps.Str("version"); s != "3.1.3" {
		t.Errorf("version %q", s)
	}
	if !caps.Bool("rencode", false) || !caps.Bool("bencode", false) || caps.Bool("lz4", true) {
		t.Error("codec flags")
	}
	if n, ok := caps.Int("compression_level"); !ok || n != 1 {
		t.Errorf("compression_level %d", n)
	}
	if d := caps.StrList("digest"); len(d) < 5 || d[0] != "xor" {
		t.Errorf("digest %q", d)
	}
	if a, ok := caps.Get("aliases"); !ok {
		t.Error("aliases missing")
	} else if _, isDict := a.(Dict); !isDict {
		t.Errorf("aliases is %T", a)
	}
}
