package xpratest

import (
	"strings"
	"testing"
	"time"
)

// TestXpra6Peer proves the harness drives the real xpra 6.x side by side
// with 3.1.3: a 6.x server and a 6.x client attach over TCP and the xterm
// window is mapped on the client's display; the server speaks 6.x.
func TestXpra6Peer(t *testing.T) {
	RequirePeers(t, "xpra6", "Xvfb", "xwininfo")
	s := StartServer(t, ServerOptions{Gen: Xpra6, BindTCP: FreeTCPAddr(t)})
	out, code := s.Xpra(t, 30*time.Second, "version")
	if code != 0 || !strings.Contains(out, "6.") {
		t.Fatalf("xpra6 version against the 6.x server: exit %d\n%s", code, out)
	}
	c := Attach(t, s.TCPURL(), ClientOptions{Gen: Xpra6})
	if err := c.WaitWindow("xterm", 60*time.Second); err != nil {
		t.Fatalf("6.x client: %v\n%s\n--- server ---\n%s", err, c.Output(), tail(s.Log(), 40))
	}
	if strings.Contains(c.Output(), "mmap transfers") {
		t.Fatalf("the client negotiated mmap (pixels would skip the connection):\n%s", c.Output())
	}
}
