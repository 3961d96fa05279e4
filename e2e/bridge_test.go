package e2e

import (
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// Issue 12 part 3: the proxy bridges xpra generations that share no
// packet encoder. A 3.1.3 client attaches to a 6.x server and a 6.x client
// to a 3.1.3 server; each sees the xterm drawn (pixels on its own Xvfb)
// and the keys typed on its display reach the xterm's shell (the typed
// command creates a file on the server's side).

// clipboardArgs switch the clipboard on in both directions (the default
// of both generations, spelled out: the bridge tests prove it crosses).
var clipboardArgs = []string{"--clipboard=yes", "--clipboard-direction=both"}

func TestBridge3To6(t *testing.T) { bridge(t, xpratest.Xpra3, xpratest.Xpra6) }

func TestBridge6To3(t *testing.T) { bridge(t, xpratest.Xpra6, xpratest.Xpra3) }

func bridge(t *testing.T, clientGen, serverGen xpratest.Gen) {
	xpratest.RequirePeers(t, clientGen.String(), serverGen.String(), "Xvfb", "xterm", "xdotool", "xclip")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "typed")
	title := "edge-bridge-" + serverGen.String()
	srv := xpratest.StartServer(t, xpratest.ServerOptions{Gen: serverGen, BindTCP: xpratest.FreeTCPAddr(t),
		Start: "xterm -T " + title})
	db := filepath.Join(dir, "u.sdb")
	for _, args := range [][]string{{"sqlite", db, "create"}, {"sqlite", db, "add", "foo", "bar", "nobody", "nobody", srv.TCPURL()}} {
		if out, code := edgeCmd(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, out)
		}
	}
	addr := xpratest.FreeTCPAddr(t)
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--bind-tcp="+addr+",auth=sqlite,filename="+db,
		"--socket-dir="+filepath.Join(dir, "ctl"))
	c := xpratest.Attach(t, "tcp://foo:bar@"+addr+"/", xpratest.ClientOptions{Gen: clientGen, Args: clipboardArgs})
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nclient:\n%s\nserver:\n%s\nproxy:\n%s", append(args, c.Output(), srv.Log(), p.log.String())...)
	}
	if err := c.WaitOutput(xpratest.AttachedLine, attachTimeout); err != nil {
		fail("%s client through the proxy to a %s server: %v", clientGen, serverGen, err)
	}
	if !p.waitLog("bridged=true", 5*time.Second) {
		fail("the proxy did not log a bridged session")
	}
	w, err := c.WaitWindowInfo("xterm", attachTimeout)
	if err != nil {
		fail("xterm window: %v", err)
	}
	// Its title crossed too (window metadata, str toward 6.x).
	for deadline := time.Now().Add(10 * time.Second); !strings.HasPrefix(w.Title, title) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if w, err = c.WaitWindowInfo("xterm", time.Second); err != nil {
			fail("xterm window: %v", err)
		}
	}
	if !strings.HasPrefix(w.Title, title) {
		fail("the window is titled %q, want %q", w.Title, title)
	}
	// The xterm's pixels crossed the bridge: its area shows more than the
	// one colour of an undrawn window.
	rect := image.Rect(w.X, w.Y, w.X+w.Width, w.Y+w.Height)
	if _, err := c.Xvfb.WaitImage(func(img *image.RGBA) bool {
		return xpratest.DistinctColors(img, rect, 2, 3) >= 2
	}, attachTimeout); err != nil {
		_ = c.Screenshot(filepath.Join(dir, "screen.png"))
		fail("the xterm window %v was never drawn: %v", rect, err)
	}
	// Keys typed on the client's display reach the xterm's shell.
	cmd := "touch " + marker
	deadline := time.Now().Add(60 * time.Second)
	for {
		if out, err := typeKeys(c, w.ID, cmd+"\n"); err != nil {
			fail("xdotool: %v: %s", err, out)
		}
		if waitFile(marker, 5*time.Second) {
			break
		}
		if time.Now().After(deadline) {
			fail("the typed command never ran in the %s server's xterm (no %s)", serverGen, marker)
		}
	}
	// The clipboard crosses both ways: text owned by xclip in the
	// server display's CLIPBOARD selection is read on the client's display
	// (the client claims the selection on the server's token and fetches
	// the contents when xclip asks it), and the reverse. The texts are
	// longer than 512 bytes, so that each side compresses them (a raw
	// chunk: lz4 or zlib from 3.1, brotli from 6.x).
	long := strings.Repeat(" the quick brown fox", 40)
	toClient := "edge-clip-to-client " + serverGen.String() + " ✓" + long
	srv.X().SetSelection(t, "clipboard", toClient)
	if got, err := c.Xvfb.X().WaitSelection("clipboard", toClient, 30*time.Second); err != nil {
		fail("the server's clipboard did not reach the %s client (%.80q): %v", clientGen, got, err)
	}
	toServer := "edge-clip-to-server " + clientGen.String() + " ✓" + long
	c.Xvfb.X().SetSelection(t, "clipboard", toServer)
	if got, err := srv.X().WaitSelection("clipboard", toServer, 30*time.Second); err != nil {
		fail("the client's clipboard did not reach the %s server (%.80q): %v", serverGen, got, err)
	}
	c.Stop()
	if !p.waitLog("session ended", 10*time.Second) {
		fail("the session did not end")
	}
	// A second session to the same backend goes straight to its encoder:
	// the proxy remembers the refusal and does not dial twice again.
	c2 := xpratest.Attach(t, "tcp://foo:bar@"+addr+"/", xpratest.ClientOptions{Gen: clientGen})
	if err := c2.WaitWindow("xterm", attachTimeout); err != nil {
		fail("second session: %v\n%s", err, c2.Output())
	}
	if n := len(grepLines(p.log.String(), "backend refused the client's packet encoder")); n != 1 {
		fail("the backend's refusal was met %d times, want once", n)
	}
	c2.Stop()
	// Neither peer failed to handle a packet it got across the bridge
	// (a draw whose pixels it cannot decode, a packet of the wrong shape,
	// an unknown type, a clipboard packet out of place): the window and
	// clipboard checks alone would not see a few.
	for name, out := range map[string]string{clientGen.String() + " client": c.Output(), serverGen.String() + " server": srv.Log()} {
		for _, bad := range []string{"Error processing", "Error drawing", "unknown packet type", "unknown or invalid packet type", "Received invalid packet",
			// the clipboard: a packet its receiver had no use for, or
			// 3.1 finding the peer's hello lacks a feature 6.x has
			"unexpected clipboard packet", "no clipboard packet handler", "does not include contents slice fix"} {
			if lines := grepLines(out, bad); len(lines) > 0 {
				t.Errorf("the %s logged %q %d times, first: %s", name, bad, len(lines), lines[0])
			}
		}
	}
	// What the peers complained of across the bridge (the measurement
	// behind docs/DESIGN.md's list of what is translated).
	for name, out := range map[string]string{clientGen.String() + " client": c.Output(), serverGen.String() + " server": srv.Log()} {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "Error") || strings.Contains(l, "Warning") || strings.Contains(l, "failed to") || strings.Contains(l, "invalid") {
				t.Logf("%s: %s", name, strings.TrimSpace(l))
			}
		}
	}
}

// typeKeys focuses the window and types text on the client's display.
func typeKeys(c *xpratest.Client, win, text string) (string, error) {
	run := func(args ...string) (string, error) {
		cmd := exec.Command("xdotool", args...)
		cmd.Env = append(os.Environ(), "DISPLAY="+c.Xvfb.Display)
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("mousemove", "--window", win, "20", "20"); err != nil {
		return out, err
	}
	if out, err := run("click", "--window", win, "1"); err != nil {
		return out, err
	}
	if out, err := run("windowfocus", "--sync", win); err != nil {
		return out, err
	}
	return run("type", "--delay", "60", text)
}

func waitFile(path string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBridgeTransports: the bridge under TLS and WebSocket: a 3.1.3 client
// over wss and ssl through one port to a 6.x server sees its xterm.
func TestBridgeTransports(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "xpra6", "Xvfb", "xterm")
	srv := xpratest.StartServer(t, xpratest.ServerOptions{Gen: xpratest.Xpra6, BindTCP: xpratest.FreeTCPAddr(t), Start: "xterm -T " + titleA})
	op := startOnePort(t, backendPair{a: srv, b: srv, gen: xpratest.Xpra6}, "")
	for _, scheme := range []string{"wss", "ssl"} {
		c := attachSeesGen(t, xpratest.Xpra3, scheme+"://"+tlsUser+":"+tlsPassword+"@"+op.addr+"/", titleA, "--ssl-ca-certs="+op.caFile)
		c.Stop()
	}
	if n := len(grepLines(op.log.String(), "bridged=true")); n != 2 {
		t.Fatalf("%d bridged sessions logged, want 2:\n%s", n, op.log.String())
	}
	// Debian's HTML5 client (bencode only) draws the 6.x server's xterm.
	t.Run("html5", func(t *testing.T) {
		xpratest.RequirePeers(t, "chromium")
		page := "https://" + op.addr + "/index.html?username=" + tlsUser + "&ssl=1&password=" + tlsPassword
		b := xpratest.OpenHTML5With(t, page, xpratest.BrowserOptions{IgnoreCertErrors: true, Lifetime: 2 * time.Minute})
		if err := b.WaitDrawn(60 * time.Second); err != nil {
			t.Fatalf("%v\npage: %q\nproxy:\n%s\nserver:\n%s", err, b.PageText(), op.log.String(), srv.Log())
		}
		if text := b.PageText(); !strings.Contains(text, titleA) {
			t.Errorf("page does not show the window %q: %q", titleA, text)
		}
		b.Close()
		if n := len(grepLines(op.log.String(), "bridged=true")); n != 3 {
			t.Errorf("the HTML5 session was not bridged:\n%s", op.log.String())
		}
	})
}

// TestBridgeBackendChallenge: a 6.x backend with its own password, behind
// the bridge: the proxy answers its challenge with the display URL's
// password (user "stored"), or passes it to the 3.1.3 client, which
// answers it with its --password-file (user "through").
func TestBridgeBackendChallenge(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "xpra6", "Xvfb", "xterm")
	dir := t.TempDir()
	srv := xpratest.StartServer(t, xpratest.ServerOptions{Gen: xpratest.Xpra6, BindTCP: xpratest.FreeTCPAddr(t),
		Args: []string{"--tcp-auth=password:value=backend-pw,username=through,verify-username=yes"}})
	db := filepath.Join(dir, "u.sdb")
	for _, args := range [][]string{
		{"sqlite", db, "create"},
		{"sqlite", db, "add", "stored", "proxy-pw", "nobody", "nobody", "tcp://through:backend-pw@" + srv.TCPAddr + "/"},
		{"sqlite", db, "add", "through", "through-pw", "nobody", "nobody", "tcp://" + srv.TCPAddr + "/"},
	} {
		if out, code := edgeCmd(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, out)
		}
	}
	addr := xpratest.FreeTCPAddr(t)
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--bind-tcp="+addr+",auth=sqlite,filename="+db,
		"--socket-dir="+filepath.Join(dir, "ctl"))
	pwFile := writeFile(t, filepath.Join(dir, "backend-password"), "backend-pw")
	for _, user := range []string{"stored:proxy-pw", "through:through-pw"} {
		opts := xpratest.ClientOptions{}
		if strings.HasPrefix(user, "through") {
			opts.PasswordFile = pwFile
		}
		c := xpratest.Attach(t, "tcp://"+user+"@"+addr+"/", opts)
		if err := c.WaitWindow("xterm", attachTimeout); err != nil {
			t.Fatalf("%s: xterm: %v\n%s\nproxy:\n%s\nserver:\n%s", user, err, c.Output(), p.log.String(), srv.Log())
		}
		c.Stop()
	}
	if n := len(grepLines(p.log.String(), "bridged=true")); n != 2 {
		t.Fatalf("%d bridged sessions, want 2:\n%s", n, p.log.String())
	}
}
