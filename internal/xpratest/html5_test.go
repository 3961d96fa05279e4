package xpratest

import (
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHTML5: xpra's own HTML5 client, served by the real server with
// --html=on, in headless chromium: the right password draws the xterm,
// a wrong one shows "authentication failed", and `xpra stop` shows a
// disconnect; chromium leaves no process behind.
func TestHTML5(t *testing.T) {
	RequirePeers(t, "xpra", "Xvfb", "xterm", "chromium")
	t.Parallel()
	const secret = "html5-Secret"
	s := StartServer(t, ServerOptions{BindTCP: FreeTCPAddr(t), Args: []string{"--html=on", "--tcp-auth=password:value=" + secret}})
	page := "http://" + s.TCPAddr + "/?username=alice&password="

	bad := OpenHTML5(t, page+"wrong")
	err := bad.WaitDrawn(30 * time.Second)
	if !errors.Is(err, ErrDisconnected) || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong password: %v, want %v with \"authentication failed\"; page:\n%s", err, ErrDisconnected, bad.PageText())
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error carries the password: %v", err)
	}
	bad.Close()

	began := time.Now()
	b := OpenHTML5(t, page+secret)
	if err := b.WaitDrawn(30 * time.Second); err != nil {
		t.Fatalf("%v\npage: %q\n--- server ---\n%s", err, b.PageText(), tail(s.Log(), 30))
	}
	t.Logf("HTML5 client drew the xterm %s after opening the page", time.Since(began))
	if !strings.Contains(b.PageText(), "xterm") {
		t.Errorf("page does not show the xterm window title: %q", b.PageText())
	}
	shot := filepath.Join(t.TempDir(), "html5.png")
	if err := b.Screenshot(shot); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width < 640 || cfg.Height < 480 {
		t.Errorf("screenshot: %v, %dx%d", err, cfg.Width, cfg.Height)
	}

	if out, code := s.Xpra(t, 30*time.Second, "stop"); code != 0 {
		t.Errorf("xpra stop: exit %d\n%s", code, out)
	}
	reason, err := b.WaitDisconnected(20 * time.Second)
	if err != nil {
		t.Errorf("after xpra stop: %v; page: %q", err, b.PageText())
	}
	t.Logf("HTML5 disconnect reason after xpra stop: %q", reason)
	b.Close()
	if p := append(b.Processes(), bad.Processes()...); len(p) != 0 {
		t.Errorf("chromium processes left: %v", p)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://h:1/?username=a&password=secret&x=1": "http://h:1/?username=a&password=REDACTED&x=1",
		"http://h:1/?password=secret":                "http://h:1/?password=REDACTED",
		"tcp://user:secret@h:1/":                     "tcp://REDACTED@h:1/",
		"http://h:1/a@b":                             "http://h:1/a@b",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
