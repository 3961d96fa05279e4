package edge

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// TestRelayFilterAfterChunksAndAliases: a logged-in client's main packets
// are classified whatever preceded them. Once, a 1-byte raw chunk followed
// by ["shutdown-server"] stopped the real backend, and a type sent as an
// integer alias (the proxy declared none) peeked as "" and passed. Now both
// end the session and the backend sees neither; a shutdown-server without a
// chunk is still dropped alone.
func TestRelayFilterAfterChunksAndAliases(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "moo", Password: "cow", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	addr, _ := miniProxy(t, a, Limits{})
	login := func() (net.Conn, *xpraclient.Conn) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		xc := xpraclient.New(c, xprawire.Rencode)
		if _, err := xc.Hello(xpraclient.BaseCaps("moo"), []byte("cow"), true, false, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return c, xc
	}
	ended := func(xc *xpraclient.Conn, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			p, err := xc.Read(deadline)
			if err != nil {
				t.Fatalf("want a disconnect with %q, got %v", want, err)
			}
			if p.Type() == "disconnect" {
				if r := strings.Join(xpraclient.Reasons(p), " "); !strings.Contains(r, want) {
					t.Fatalf("disconnect %q, want %q", r, want)
				}
				return
			}
		}
	}
	mainFrame := func(p xprawire.Packet) (xprawire.Header, []byte) {
		t.Helper()
		b, err := xprawire.Marshal(xprawire.Rencode, []any(p))
		if err != nil {
			t.Fatal(err)
		}
		return xprawire.Header{Flags: xprawire.FlagRencode}, b
	}

	for _, typ := range []string{"shutdown-server", "exit-server", "hello"} {
		c, xc := login()
		fw := xprawire.NewFrameWriter(c)
		if err := fw.WriteFrame(xprawire.Header{Flags: xprawire.FlagRencode, Index: 1}, []byte{'x'}); err != nil {
			t.Fatal(err)
		}
		h, b := mainFrame(xprawire.Packet{typ, ""})
		if err := fw.WriteFrame(h, b); err != nil {
			t.Fatal(err)
		}
		ended(xc, "client sent "+typ+" after a raw chunk")
	}
	// An integer packet type.
	c, xc := login()
	h, b := mainFrame(xprawire.Packet{int64(7), ""})
	if err := xprawire.NewFrameWriter(c).WriteFrame(h, b); err != nil {
		t.Fatal(err)
	}
	ended(xc, "without a type name")
	// Without a chunk, shutdown-server is dropped and the session lives on.
	_, xc = login()
	if err := xc.Send(xprawire.Packet{"shutdown-server", ""}); err != nil {
		t.Fatal(err)
	}
	if err := xc.Send(xprawire.Packet{"echo-me"}); err != nil {
		t.Fatal(err)
	}
	if p, err := xc.Read(time.Now().Add(5 * time.Second)); err != nil || p.Type() != "echoed" {
		t.Fatalf("session after a dropped shutdown-server: %v %v", p, err)
	}
	time.Sleep(100 * time.Millisecond)
	for _, typ := range []string{"shutdown-server", "exit-server"} {
		if rec.saw(typ) {
			t.Errorf("the backend got %s", typ)
		}
	}
	rec.mu.Lock()
	hellos := len(rec.hellos)
	rec.mu.Unlock()
	if hellos != 5 { // one per login, none from the client's late hello
		t.Errorf("the backend got %d hellos, want 5 (one per login)", hellos)
	}
}
