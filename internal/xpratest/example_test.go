package xpratest_test

import (
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// An end-to-end test of a proxy in front of a real xpra server: start the
// backend, put the proxy (not shown) in front of it, attach the real client
// through the proxy and check that the remote xterm arrives.
func Example() {
	var t *testing.T // the test's *testing.T
	xpratest.RequirePeers(t, "xpra", "Xvfb", "xterm", "xwininfo")

	backend := xpratest.StartServer(t, xpratest.ServerOptions{
		BindTCP: xpratest.FreeTCPAddr(t),
		Args:    []string{"--tcp-auth=password:value=s3cret"},
	})
	proxyAddr := backend.TCPAddr // replace with the proxy's listener, routing to backend.TCPURL()

	c := xpratest.Attach(t, "tcp://alice:s3cret@"+proxyAddr+"/", xpratest.ClientOptions{})
	if err := c.WaitWindow("xterm", 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.Output())
	}

	backend.Kill() // the backend dies mid-session
	if code, err := c.Wait(30 * time.Second); err != nil || code != xpratest.ExitConnectionLost {
		t.Fatalf("client: exit %d (%s), %v", code, xpratest.ExitName(code), err)
	}
}

// The HTML5 client in headless chromium, against a server with --html=on.
func ExampleOpenHTML5() {
	var t *testing.T
	s := xpratest.StartServer(t, xpratest.ServerOptions{BindTCP: xpratest.FreeTCPAddr(t), Args: []string{"--html=on"}})
	b := xpratest.OpenHTML5(t, "http://"+s.TCPAddr+"/?username=alice")
	if err := b.WaitDrawn(30 * time.Second); err != nil {
		t.Fatalf("%v\npage: %s", err, b.PageText())
	}
	_ = b.Screenshot(t.TempDir() + "/html5.png")
}
