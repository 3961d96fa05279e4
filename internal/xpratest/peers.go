package xpratest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// EnvRequirePeers is the environment variable that turns a missing peer
// from a skip into a failure. `make test` and CI set it to "1".
const EnvRequirePeers = "XPRA_EDGE_REQUIRE_PEERS"

// XpraBin is the real xpra launcher. The system python it runs with is
// /usr/bin/python3; the harness puts /usr/bin ahead of any pyenv shims in
// PATH so that xpra's own sub-commands find the right interpreter.
const XpraBin = "/usr/bin/xpra"

// pilDir is where Debian's python3-pil installs PIL, which the xpra
// server needs to send any window.
const pilDir = "/usr/lib/python3/dist-packages/PIL"

// RequirePeers checks that the named peers are usable and otherwise fails
// the test (when XPRA_EDGE_REQUIRE_PEERS=1) or skips it.
//
// Names: "root" (effective uid 0), "xpra" (the xpra 3.1.3 launcher and the
// python modules its server needs), "xpra6" (the xpra 6.x wrapper), "chromium", or any other name, looked up as an
// executable in the harness PATH (for example "Xvfb", "xterm", "xwininfo",
// "xprop", "xdotool", "useradd").
func RequirePeers(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if why := peerMissing(n); why != "" {
			missing = append(missing, why)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "missing test peers: " + strings.Join(missing, "; ") + " (run scripts/install-test-deps.sh as root)"
	if os.Getenv(EnvRequirePeers) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func peerMissing(name string) string {
	switch name {
	case "root":
		if os.Geteuid() != 0 {
			return "root (tests must run as uid 0)"
		}
		return ""
	case "xpra6":
		if why := xpra6Missing(); why != "" {
			return why
		}
		if _, err := os.Stat(pilDir); err != nil {
			return "python3-pil (xpra server cannot send windows without it)"
		}
		return ""
	case "xpra":
		if _, err := os.Stat(XpraBin); err != nil {
			return "xpra (" + XpraBin + ")"
		}
		if _, err := os.Stat(pilDir); err != nil {
			return "python3-pil (xpra server cannot send windows without it)"
		}
		return ""
	}
	if _, err := lookPath(name); err != nil {
		return name
	}
	return ""
}

// harnessPath is the PATH every child process gets: system directories
// first so /usr/bin/python3 (with xpra's modules) wins over pyenv shims.
const harnessPath = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin"

func lookPath(name string) (string, error) {
	for _, dir := range strings.Split(harnessPath, ":") {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}
