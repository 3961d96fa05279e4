package xpratest

import (
	"os"
	"os/exec"
	"strings"
)

// Gen is the xpra generation a peer runs: Xpra3 (Debian 12's /usr/bin/xpra,
// 3.1.3) or Xpra6 (xpra 6.x built from PyPI's source release by
// scripts/install-xpra6.sh, run through its xpra6 wrapper). The zero value
// is Xpra3.
type Gen int

const (
	Xpra3 Gen = iota
	Xpra6
)

// Xpra6Bin is the wrapper scripts/install-xpra6.sh installs: it runs xpra
// 6.x from its private prefix with its own configuration directories, so
// /usr/bin/xpra and /etc/xpra stay 3.1.3's.
const Xpra6Bin = "/usr/local/bin/xpra6"

func (g Gen) String() string {
	if g == Xpra6 {
		return "xpra6"
	}
	return "xpra"
}

// Bin is the launcher of the generation.
func (g Gen) Bin() string {
	if g == Xpra6 {
		return Xpra6Bin
	}
	return XpraBin
}

// serverQuietArgs are the `xpra start` options of the generation (see
// ServerQuietArgs and Server6QuietArgs).
func (g Gen) serverQuietArgs() []string {
	if g == Xpra6 {
		return Server6QuietArgs
	}
	return ServerQuietArgs
}

func (g Gen) clientQuietArgs() []string {
	if g == Xpra6 {
		return Client6QuietArgs
	}
	return ClientQuietArgs
}

// Server6QuietArgs are ServerQuietArgs for xpra 6.x, whose option set
// differs (audio, splash, dbus switches; no dbus-proxy).
var Server6QuietArgs = []string{
	"--mdns=no", "--pulseaudio=no", "--audio=no", "--speaker=no", "--microphone=no", "--av-sync=no",
	"--notifications=no", "--printing=no", "--webcam=no", "--dbus=no", "--dbus-launch=",
	"--dbus-control=no", "--systemd-run=no", "--html=off", "--splash=no", "--file-transfer=no",
	"--open-files=no", "--open-url=no", "--forward-xdg-open=no", "--start-via-proxy=no",
	"--xsettings=no", "--input-method=none", "--exit-with-children=no", "--terminate-children=yes",
	"--sharing=no", "--ssh-upgrade=no",
	// not --mmap=no: xpra 6.5.5's server then blocks the xpra.net.mmap
	// package and fails every client ("'xpra.net.mmap' is not a package",
	// server/window/compress.py imports it anyway); the clients' --mmap=no
	// is what keeps pixels on the connection.
}

// Client6QuietArgs are ClientQuietArgs for xpra 6.x: the same intent
// (headless, every pixel over the connection under test: --mmap=no, since
// a 6.x client and server on one host otherwise share pixels past the
// proxy), in 6.x's option names.
var Client6QuietArgs = []string{
	"--opengl=no", "--speaker=no", "--microphone=no", "--webcam=no", "--notifications=no",
	"--tray=no", "--system-tray=no", "--printing=no", "--file-transfer=no", "--open-files=no",
	"--open-url=no", "--mdns=no", "--mmap=no", "--bell=no", "--splash=no",
	"--challenge-handlers=uri", "--challenge-handlers=file", "--challenge-handlers=env",
}

// xpra6Missing explains why the 6.x peer cannot run, or "".
func xpra6Missing() string {
	if _, err := os.Stat(Xpra6Bin); err != nil {
		return "xpra 6.x (" + Xpra6Bin + ", built by scripts/install-xpra6.sh)"
	}
	out, err := exec.Command(Xpra6Bin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "xpra v6.") {
		return "xpra 6.x (" + Xpra6Bin + " --version: " + strings.TrimSpace(string(out)) + ")"
	}
	return ""
}
