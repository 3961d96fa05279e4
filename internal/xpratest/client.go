package xpratest

import (
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ClientOptions configures Attach.
type ClientOptions struct {
	Gen          Gen      // the xpra generation (default Xpra3, Debian's 3.1.3)
	PasswordFile string   // --password-file (write it 0600 with WritePasswordFile)
	Args         []string // extra `xpra attach` arguments; later ones win over ClientQuietArgs
	Env          []string // extra environment, e.g. "XPRA_..."=...

	// Lifetime bounds the client; it is killed after it (default 5m).
	Lifetime time.Duration
	// Width and Height of the client's Xvfb screen (default 1280x1024).
	Width, Height int
}

// ClientQuietArgs are the `xpra attach` options the harness always passes:
// headless-friendly (no OpenGL, sound, tray, notifications, printing, file
// transfers, mDNS) and --mmap=no, so that every pixel crosses the network
// connection under test instead of a shared memory file (a client on the
// same machine as the server would otherwise negotiate mmap), and only the
// uri, file and env challenge handlers (see below).
var ClientQuietArgs = []string{
	"--opengl=no", "--speaker=off", "--microphone=off", "--webcam=no", "--notifications=no",
	"--tray=no", "--system-tray=no", "--printing=no", "--file-transfer=no", "--open-files=no",
	"--open-url=no", "--mdns=no", "--mmap=no", "--dbus-proxy=no", "--bell=no",
	// no "prompt" handler: a client that lacks a password must fail (exit 3)
	// instead of waiting forever on a dialog on its headless display
	"--challenge-handlers=uri", "--challenge-handlers=file", "--challenge-handlers=env",
}

// AttachedLine is what `xpra attach` prints once the server accepted it
// (followed by the URL).
const AttachedLine = "Attached to"

// Client is a running `xpra attach URL` on its own Xvfb.
type Client struct {
	URL  string
	Xvfb *Xvfb // the client's display; remote windows are mapped here
	PID  int
	// Home, RuntimeDir and SocketDir are the client's private HOME,
	// XDG_RUNTIME_DIR and --socket-dir(s).
	Home, RuntimeDir, SocketDir string

	p *proc
}

// Attach starts `xpra attach URL` on a fresh Xvfb with a private HOME and
// XDG_RUNTIME_DIR. It returns at once; use WaitOutput(AttachedLine, d),
// WaitWindow or Wait. t.Cleanup stops the client and its Xvfb.
func Attach(t testing.TB, url string, o ClientOptions) *Client {
	t.Helper()
	RequirePeers(t, o.Gen.String(), "Xvfb", "xwininfo")
	if o.Lifetime == 0 {
		o.Lifetime = 5 * time.Minute
	}
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 1280, 1024
	}
	x := StartXvfb(t, o.Width, o.Height)
	w := newWorkDir(t, "cli", -1, -1)
	sock := filepath.Join(w.root, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		t.Fatalf("xpratest: %v", err)
	}
	args := []string{"attach", url, "--socket-dirs=" + sock, "--socket-dir=" + sock}
	args = append(args, o.Gen.clientQuietArgs()...)
	if o.PasswordFile != "" {
		args = append(args, "--password-file="+o.PasswordFile)
	}
	args = append(args, o.Args...)
	cmd := exec.Command(o.Gen.Bin(), args...)
	cmd.Env = append(w.env("DISPLAY="+x.Display), o.Env...)
	cmd.Dir = w.home
	cmd.Stdin = nil
	p, err := startProc(o.Gen.String()+" attach "+redactURL(url), cmd, filepath.Join(w.root, "client.log"), o.Lifetime)
	if err != nil {
		t.Fatalf("xpratest: %v", err)
	}
	c := &Client{URL: url, Xvfb: x, PID: p.pid(), Home: w.home, RuntimeDir: w.runtime, SocketDir: sock, p: p}
	t.Cleanup(c.Stop)
	return c
}

// WaitOutput waits up to d until the client printed substr. It returns an
// error wrapping ErrExited if the client ended first, ErrTimeout otherwise.
func (c *Client) WaitOutput(substr string, d time.Duration) error { return c.p.waitOutput(substr, d) }

// Output is everything the client printed so far.
func (c *Client) Output() string { return c.p.output() }

// Exited reports whether the client process has ended.
func (c *Client) Exited() bool { return c.p.exited() }

// Wait waits up to d for the client to exit and returns its exit code
// (see the ExitCode constants; -1 when a signal killed it).
func (c *Client) Wait(d time.Duration) (exitCode int, err error) { return c.p.wait(d) }

// Stop detaches the client (SIGINT, what Control-C does), waits up to 5 s,
// then kills whatever is left. Its Xvfb is stopped by t.Cleanup.
// Idempotent; also run by t.Cleanup.
func (c *Client) Stop() { c.p.stop(syscall.SIGINT, 5*time.Second) }

// Processes lists the live processes of the client.
func (c *Client) Processes() []int { return c.p.members() }

// Window is one top-level window mapped on a client's display.
type Window struct {
	ID            string // "0x200003"
	Title         string
	Instance      string // WM_CLASS instance, e.g. "xterm"
	Class         string // WM_CLASS class, e.g. "XTerm"
	X, Y          int    // absolute position of the upper-left corner
	Width, Height int
}

// Rect is the window's area on the screen.
func (w Window) Rect() image.Rectangle { return image.Rect(w.X, w.Y, w.X+w.Width, w.Y+w.Height) }

var absX = regexp.MustCompile(`Absolute upper-left X:\s+(-?\d+)`)
var absY = regexp.MustCompile(`Absolute upper-left Y:\s+(-?\d+)`)

// xwininfo -root -tree line: `     0x200003 "title": ("xterm" "XTerm")  484x316+0+0  +0+0`
var treeLine = regexp.MustCompile(`^\s*(0x[0-9a-f]+) (?:"(.*)"|\(has no name\)): \("([^"]*)" "([^"]*)"\)\s+(\d+)x(\d+)`)

// Windows lists the viewable windows that have a WM_CLASS on the client's
// display (the remote windows xpra maps there).
func (c *Client) Windows() ([]Window, error) { return c.Xvfb.Windows() }

// Windows lists the viewable windows with a WM_CLASS on this display.
func (x *Xvfb) Windows() ([]Window, error) {
	out, err := x.tool("xwininfo", "-root", "-tree")
	if err != nil {
		return nil, err
	}
	var ws []Window
	for _, line := range strings.Split(out, "\n") {
		m := treeLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var wd, ht int
		_, _ = fmt.Sscan(m[5], &wd)
		_, _ = fmt.Sscan(m[6], &ht)
		info, err := x.tool("xwininfo", "-id", m[1])
		if err != nil || !strings.Contains(info, "Map State: IsViewable") {
			continue
		}
		win := Window{ID: m[1], Title: m[2], Instance: m[3], Class: m[4], Width: wd, Height: ht}
		if v := absX.FindStringSubmatch(info); v != nil {
			win.X, _ = strconv.Atoi(v[1])
		}
		if v := absY.FindStringSubmatch(info); v != nil {
			win.Y, _ = strconv.Atoi(v[1])
		}
		ws = append(ws, win)
	}
	return ws, nil
}

// WaitWindow waits up to d until a viewable window whose WM_CLASS instance
// or class equals class (case-insensitive, e.g. "xterm") is mapped on the
// client's Xvfb: proof that the remote window crossed the connection.
func (c *Client) WaitWindow(class string, d time.Duration) error {
	_, err := c.WaitWindowInfo(class, d)
	return err
}

// WaitWindowInfo is WaitWindow returning the window found.
func (c *Client) WaitWindowInfo(class string, d time.Duration) (Window, error) {
	deadline := time.Now().Add(d)
	for {
		ws, err := c.Windows()
		if err == nil {
			for _, w := range ws {
				if strings.EqualFold(w.Class, class) || strings.EqualFold(w.Instance, class) {
					return w, nil
				}
			}
		}
		if c.p.exited() {
			return Window{}, fmt.Errorf("window %q: %w: client %w (exit code %d)", class, ErrNoWindow, ErrExited, c.p.exitCode)
		}
		if time.Now().After(deadline) {
			return Window{}, fmt.Errorf("window %q: %w after %s: %w", class, ErrNoWindow, d, ErrTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tool runs an X11 utility against this display with a 10 s bound.
func (x *Xvfb) tool(name string, args ...string) (string, error) {
	bin, err := lookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + harnessPath, "DISPLAY=" + x.Display, "LANG=C.UTF-8"}
	cmd.WaitDelay = time.Second
	timer := time.AfterFunc(10*time.Second, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Screenshot writes a PNG of the client's Xvfb screen to path.
func (c *Client) Screenshot(path string) error { return c.Xvfb.Screenshot(path) }
