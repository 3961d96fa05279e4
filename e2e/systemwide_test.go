package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// TestStartsSessionForUserWithoutOne: a user with no session logs in; the
// proxy, running as root, starts one as that user and the client attaches.
//
// It also proves the default: running as root, the proxy starts sessions
// without being told (xpra's proxy-start-sessions defaults to yes).
func TestStartsSessionForUserWithoutOne(t *testing.T) {
	startsSessionForUserWithoutOne(t, xpratest.Xpra3, "xs")
}

// TestStartsXpra6SessionForUserWithoutOne: the same when the users' xpra is
// 6.x ([sessions] xpra), with a 6.x client.
func TestStartsXpra6SessionForUserWithoutOne(t *testing.T) {
	startsSessionForUserWithoutOne(t, xpratest.Xpra6, "xs6")
}

func startsSessionForUserWithoutOne(t *testing.T, gen xpratest.Gen, prefix string) {
	xpratest.RequirePeers(t, gen.String(), "Xvfb", "root")
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	xpratest.CreateUser(t, name, "irrelevant")
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	// Stop whatever the proxy started for the user, by pid, and remove the
	// runtime directory it made.
	cleanUpUser(t, uid)
	dir := t.TempDir()
	addr := xpratest.FreeTCPAddr(t)
	cfg := writeFile(t, filepath.Join(dir, "edge.toml"), fmt.Sprintf("[sessions]\nxpra = %q\n", gen.Bin()))
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--config="+cfg, "--bind-tcp="+addr, "--tcp-auth=allow",
		"--socket-dir="+filepath.Join(dir, "ctl"))

	c := xpratest.Attach(t, "tcp://"+name+":x@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	if err := c.WaitOutput("Attached to", 90*time.Second); err != nil {
		t.Fatalf("%v\n%s\nproxy:\n%s", err, c.Output(), p.log.String())
	}
	if !p.waitLog("started a new session", 5*time.Second) {
		t.Fatal("the proxy did not log a started session")
	}
	// The started server runs as the user, never as root.
	out, err := exec.Command("pgrep", "-u", strconv.Itoa(uid), "-f", "xpra start").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("no xpra server running as %s (uid %d): %v %s", name, uid, err, out)
	}
	c.Stop()

	// The next login finds that session instead of starting another.
	c = xpratest.Attach(t, "tcp://"+name+":x@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	if err := c.WaitOutput("Attached to", 60*time.Second); err != nil {
		t.Fatalf("second login: %v\n%s", err, c.Output())
	}
	c.Stop()
	if n := strings.Count(p.log.String(), "started a new session"); n != 1 {
		t.Fatalf("started %d sessions, want 1", n)
	}
}
