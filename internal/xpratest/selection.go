package xpratest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// XDisplay names an X display for the X11 tools the harness runs: a
// client's Xvfb (Xvfb.X) or a server's (Server.X, whose Xvfb requires the
// server's Xauthority).
type XDisplay struct {
	Display    string // ":N"
	Xauthority string // "" for none
}

// X is the client Xvfb's display.
func (x *Xvfb) X() XDisplay { return XDisplay{Display: x.Display} }

// X is the server's display, with the authority file its Xvfb was
// started with: the "-auth" argument of the Xvfb whose display is the
// server's (xpra 3.1.3 and 6.x choose different files, 3.1.3 as root
// /root/.Xauthority whatever HOME is; 6.x's Xvfb leaves the server's
// process group and environment, so it is looked up by its display).
func (s *Server) X() XDisplay {
	d := XDisplay{Display: s.Display, Xauthority: filepath.Join(s.Home, ".Xauthority")}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("Xvfb")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "Xvfb") || args[len(args)-1] != s.Display {
			continue
		}
		for i := 1; i+1 < len(args); i++ {
			if args[i] == "-auth" {
				d.Xauthority = args[i+1]
				return d
			}
		}
	}
	return d
}

func (d XDisplay) env() []string {
	e := []string{"PATH=" + harnessPath, "DISPLAY=" + d.Display, "LANG=C.UTF-8"}
	if d.Xauthority != "" {
		e = append(e, "XAUTHORITY="+d.Xauthority)
	}
	return e
}

// SetSelection makes `xclip -quiet` the owner of the X selection
// ("clipboard", "primary") on the display, serving text until another
// client takes the selection, the returned stop is called, or the test
// ends (t.Cleanup), at most 5 minutes. It returns once the selection
// reads text on the display (at most 10 s, else the test fails).
func (d XDisplay) SetSelection(t testing.TB, selection, text string) (stop func()) {
	t.Helper()
	RequirePeers(t, "xclip")
	bin, _ := lookPath("xclip")
	cmd := exec.Command(bin, "-quiet", "-selection", selection, "-i")
	cmd.Env = d.env()
	cmd.Stdin = strings.NewReader(text)
	p, err := startProc("xclip -i "+selection+" on "+d.Display, cmd, filepath.Join(t.TempDir(), "xclip.log"), 5*time.Minute)
	if err != nil {
		t.Fatalf("xpratest: %v", err)
	}
	stop = func() { p.stop(syscall.SIGTERM, time.Second) }
	t.Cleanup(stop)
	if _, err := d.WaitSelection(selection, text, 10*time.Second); err != nil {
		t.Fatalf("xpratest: xclip does not serve the %s selection on %s: %v\n%s", selection, d.Display, err, p.output())
	}
	return stop
}

// Selection reads the X selection ("clipboard", "primary") on the display
// as text with `xclip -o`, waiting at most d for its owner to answer.
func (d XDisplay) Selection(selection string, timeout time.Duration) (string, error) {
	bin, err := lookPath("xclip")
	if err != nil {
		return "", fmt.Errorf("xclip: %w", err)
	}
	cmd := exec.Command(bin, "-selection", selection, "-o")
	cmd.Env = d.env()
	cmd.WaitDelay = time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	timer := time.AfterFunc(timeout, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("xclip -o %s on %s: %w: %s", selection, d.Display, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// WaitSelection polls the X selection on the display until it reads want
// or d has passed (each read bounded by 5 s). It returns the last value
// read and, on timeout, an error wrapping ErrTimeout with the last read
// error.
func (d XDisplay) WaitSelection(selection, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := d.Selection(selection, min(5*time.Second, max(time.Until(deadline), 100*time.Millisecond)))
		if err == nil && got == want {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("selection %s on %s is %.80q, want %.80q: %w after %s (last read: %v)", selection, d.Display, got, want, ErrTimeout, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
