package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// TestClientCannotStopRealBackend: a logged-in client that sends a 1-byte
// raw chunk and then ["shutdown-server"] (or the same as an integer type)
// once shut the real xpra 3.1.3 server down through the proxy. Now its
// session ends and the server keeps running.
func TestClientCannotStopRealBackend(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb")
	srv := xpratest.StartServer(t, xpratest.ServerOptions{BindTCP: xpratest.FreeTCPAddr(t)})
	dir := t.TempDir()
	db := filepath.Join(dir, "u.sdb")
	for _, args := range [][]string{{"sqlite", db, "create"}, {"sqlite", db, "add", "foo", "bar", "nobody", "nobody", srv.TCPURL()}} {
		if out, code := edgeCmd(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, out)
		}
	}
	addr := xpratest.FreeTCPAddr(t)
	startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--bind-tcp="+addr+",auth=sqlite,filename="+db,
		"--socket-dir="+filepath.Join(dir, "ctl"))
	for _, typ := range []any{"shutdown-server", "exit-server", int64(1)} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := goLoginConn(c, "foo", "bar"); err != nil {
			t.Fatalf("login: %v", err)
		}
		fw := xprawire.NewFrameWriter(c)
		if err := fw.WriteFrame(xprawire.Header{Flags: xprawire.FlagRencode, Index: 1}, []byte{'x'}); err != nil {
			t.Fatal(err)
		}
		b, err := xprawire.Marshal(xprawire.Rencode, []any{typ, ""})
		if err != nil {
			t.Fatal(err)
		}
		if err := fw.WriteFrame(xprawire.Header{Flags: xprawire.FlagRencode}, b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		c.Close()
		if srv.Exited() {
			t.Fatalf("%v after a raw chunk stopped the real backend:\n%s", typ, srv.Log())
		}
	}
	// The server still serves: a real client attaches.
	cl := xpratest.Attach(t, "tcp://foo:bar@"+addr+"/", xpratest.ClientOptions{})
	if err := cl.WaitWindow("xterm", attachTimeout); err != nil {
		t.Fatalf("after the attempts: %v\n%s", err, cl.Output())
	}
}
