package xpratest

import (
	"image"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAttachTCP: the real client reaches the real server over tcp, the
// remote xterm is mapped on the client's own Xvfb, the control commands
// answer, `xpra stop` ends the server and the client sees the disconnect,
// and nothing is left running.
func TestAttachTCP(t *testing.T) {
	RequirePeers(t, "xpra", "Xvfb", "xterm", "xwininfo")
	t.Parallel()
	s := StartServer(t, ServerOptions{BindTCP: FreeTCPAddr(t)})
	t.Logf("server %s live after %s (tcp %s, socket %s)", s.Display, s.Started, s.TCPAddr, s.SocketPath)

	began := time.Now()
	c := Attach(t, s.TCPURL(), ClientOptions{})
	if err := c.WaitOutput(AttachedLine, 30*time.Second); err != nil {
		t.Fatalf("%v\n--- client ---\n%s\n--- server ---\n%s", err, c.Output(), s.Log())
	}
	t.Logf("attached after %s", time.Since(began))
	w, err := c.WaitWindowInfo("xterm", 30*time.Second)
	if err != nil {
		t.Fatalf("%v\n--- client ---\n%s\n--- server ---\n%s", err, c.Output(), s.Log())
	}
	t.Logf("window mapped after %s: %+v", time.Since(began), w)
	if w.Width < 50 || w.Height < 50 {
		t.Errorf("xterm window %dx%d, want a real terminal size", w.Width, w.Height)
	}

	// pixels arrived: the xterm's white background and black text on the
	// client's black root window
	img, err := c.Xvfb.WaitImage(func(img *image.RGBA) bool {
		return DistinctColors(img, w.Rect(), 2, 3) >= 2
	}, 15*time.Second)
	if err != nil {
		t.Errorf("xterm not painted on the client: %v\n%s", err, c.Output())
	}
	t.Logf("painted after %s", time.Since(began))
	if img != nil {
		if err := c.Screenshot(filepath.Join(t.TempDir(), "client.png")); err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}

	// the client listens nowhere: no socket in its socket dir, home or runtime dir
	for _, dir := range []string{c.SocketDir, c.Home, c.RuntimeDir} {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type()&fs.ModeSocket != 0 {
				t.Errorf("client created a socket: %s", path)
			}
			return nil
		})
	}

	out, code := s.Xpra(t, 20*time.Second, "id")
	if code != 0 || !strings.Contains(out, "display="+s.Display) {
		t.Errorf("xpra id: exit %d, output:\n%s", code, out)
	}
	out, code = s.Xpra(t, 20*time.Second, "version")
	if code != 0 || !strings.Contains(out, "3.1.3") {
		t.Errorf("xpra version: exit %d, output:\n%s", code, out)
	}
	out, code = s.Xpra(t, 30*time.Second, "info")
	if code != 0 || !strings.Contains(out, "server.mode=") || !strings.Contains(out, "display="+s.Display) {
		t.Errorf("xpra info: exit %d, output (tail):\n%s", code, tail(out, 20))
	}
	out, code = Run(t, 20*time.Second, "list", "--socket-dirs="+s.SocketDir)
	if code != 0 || !strings.Contains(out, "LIVE session at "+s.Display) {
		t.Errorf("xpra list: exit %d, output:\n%s", code, out)
	}

	out, code = s.Xpra(t, 30*time.Second, "stop")
	if code != 0 {
		t.Errorf("xpra stop: exit %d, output:\n%s", code, out)
	}
	if code, err := s.Wait(20 * time.Second); err != nil || code != 0 {
		t.Errorf("server after xpra stop: exit %d, %v", code, err)
	}
	code, err = c.Wait(20 * time.Second)
	if err != nil {
		t.Fatalf("client did not exit after the server stopped: %v\n%s", err, c.Output())
	}
	t.Logf("client exit code after xpra stop: %d (%s)", code, ExitName(code))
	if !strings.Contains(c.Output(), "server shutdown") {
		t.Errorf("client output does not show the shutdown disconnect:\n%s", tail(c.Output(), 20))
	}

	c.Stop()
	s.Stop()
	if p := append(s.Processes(), c.Processes()...); len(p) != 0 {
		t.Errorf("processes left running: %v", p)
	}
}
