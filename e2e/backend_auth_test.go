package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// TestBackendChallenge: a backend that asks for its own password is
// answered by the proxy with the password stored in the display URL, or,
// when none is stored, its challenge is passed to the client. An xpra 3.1
// client uses one password source per challenge, in order: the URL's
// password answers the proxy, --password-file the backend.
func TestBackendChallenge(t *testing.T) {
	backendChallenge(t, xpratest.Xpra3, "--tcp-auth=password:value=backend-pw", "any")
}

// TestBackendChallengeXpra6: the same with a real xpra 6.x backend and
// client. xpra 6's password module checks the username too (here: it must
// be "through"), so the proxy must send the display URL's user for a stored
// password (row "stored" has "through" in its URL), and the authenticated
// identity otherwise (row "through"); the client's own field is neither.
func TestBackendChallengeXpra6(t *testing.T) {
	backendChallenge(t, xpratest.Xpra6, "--tcp-auth=password:value=backend-pw,username=through,verify-username=yes", "through")
}

func backendChallenge(t *testing.T, gen xpratest.Gen, serverAuth, urlUser string) {
	xpratest.RequirePeers(t, gen.String(), "Xvfb")
	dir := t.TempDir()
	srv := xpratest.StartServer(t, xpratest.ServerOptions{Gen: gen, BindTCP: xpratest.FreeTCPAddr(t),
		Args: []string{serverAuth}})
	db := filepath.Join(dir, "u.sdb")
	for _, args := range [][]string{
		{"sqlite", db, "create"},
		// The proxy answers the backend with the URL's password.
		{"sqlite", db, "add", "stored", "proxy-pw", "nobody", "nobody", "tcp://" + urlUser + ":backend-pw@" + srv.TCPAddr + "/"},
		// No stored password: the backend's challenge goes to the client.
		{"sqlite", db, "add", "through", "through-pw", "nobody", "nobody", "tcp://" + srv.TCPAddr + "/"},
		// A wrong stored password fails the login with a reason.
		{"sqlite", db, "add", "wrong", "proxy-pw", "nobody", "nobody", "tcp://" + urlUser + ":nope@" + srv.TCPAddr + "/"},
	} {
		if out, code := edgeCmd(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, out)
		}
	}
	addr := xpratest.FreeTCPAddr(t)
	p := startProxy(t, addr, fmt.Sprintf(":%d", xpratest.FreeDisplay(t)), "--bind-tcp="+addr+",auth=sqlite,filename="+db,
		"--socket-dir="+filepath.Join(dir, "ctl"))
	backendPWFile := writeFile(t, filepath.Join(dir, "backend-password"), "backend-pw")
	for _, user := range []string{"stored:proxy-pw", "through:through-pw"} {
		opts := xpratest.ClientOptions{Gen: gen}
		if strings.HasPrefix(user, "through") {
			opts.PasswordFile = backendPWFile
		}
		c := xpratest.Attach(t, "tcp://"+user+"@"+addr+"/", opts)
		if err := c.WaitOutput("Attached to", attachTimeout); err != nil {
			t.Fatalf("%s: %v\n%s\nproxy:\n%s", user, err, c.Output(), p.log.String())
		}
		if err := c.WaitWindow("xterm", attachTimeout); err != nil {
			t.Fatalf("%s: xterm: %v", user, err)
		}
		c.Stop()
	}
	c := xpratest.Attach(t, "tcp://wrong:proxy-pw@"+addr+"/", xpratest.ClientOptions{Gen: gen})
	if code, err := c.Wait(60 * time.Second); err != nil || code == 0 {
		t.Fatalf("wrong stored password: exit %d %v\n%s", code, err, c.Output())
	}
	if !strings.Contains(c.Output(), "authentication") {
		t.Fatalf("no reason given:\n%s", c.Output())
	}
	for _, secret := range []string{"backend-pw", "proxy-pw", "through-pw", "nope"} {
		if lines := grepLines(p.log.String(), secret); len(lines) > 0 {
			t.Errorf("log contains %q: %q", secret, lines)
		}
	}
}
