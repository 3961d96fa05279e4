package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// TestXpra6OnePort: the real xpra 6.x client and servers through one
// proxy port: tcp, ssl, ws and wss each show the user's xterm (the clients
// run with --mmap=no, so the pixels cross the proxy), SNI and WebSocket
// paths pick the backend, and xpra 6's own list / info / stop work against
// the proxy's control sockets.
func TestXpra6OnePort(t *testing.T) {
	be := startBackendPairGen(t, xpratest.Xpra6)
	op := startOnePort(t, be, "")
	t.Run("transports", func(t *testing.T) { testTransports(t, op) })
	t.Run("routing", func(t *testing.T) { testRouting(t, op) })
	t.Run("list-info-stop", func(t *testing.T) {
		c := attachSeesGen(t, xpratest.Xpra6, "wss://"+tlsUser+":"+tlsPassword+"@"+op.addr+"/", titleA, "--ssl-ca-certs="+op.caFile)
		info := newestSessionInfo(t, op)
		for _, want := range []string{"proxy.user=" + tlsUser, "proxy.target=tcp://" + be.a.TCPAddr,
			"proxy.encoder.client=rencodeplus", "proxy.encoder.server=rencodeplus"} {
			if !strings.Contains(info, want+"\n") {
				t.Errorf("xpra6 info of the session lacks %s:\n%s", want, strings.Join(grepLines(info, "proxy."), "\n"))
			}
		}
		// The proxy logged the generation it relays between.
		if !op.waitLog("encoder=rencodeplus", 5*time.Second) {
			t.Errorf("the proxy did not log the rencodeplus encoder of the 6.x peers")
		}
		out, _ := xpratest.RunGen(t, xpratest.Xpra6, 30*time.Second, "list", "--socket-dirs="+op.ctlDir)
		n := 0
		for _, l := range grepLines(out, "LIVE session at :proxy-") {
			var k int
			if _, err := fmt.Sscanf(l[strings.Index(l, ":proxy-"):], ":proxy-%d", &k); err == nil && k > n {
				n = k
			}
		}
		if n == 0 {
			t.Fatalf("xpra6 list shows no relayed session:\n%s", out)
		}
		out, code := xpratest.RunGen(t, xpratest.Xpra6, 30*time.Second, "stop", fmt.Sprintf(":proxy-%d", n), "--socket-dirs="+op.ctlDir)
		if code != 0 {
			t.Fatalf("xpra6 stop :proxy-%d: exit %d\n%s", n, code, out)
		}
		if _, err := c.Wait(15 * time.Second); err != nil {
			t.Fatalf("the client did not leave after xpra6 stop :proxy-%d: %v\n%s", n, err, c.Output())
		}
		if !strings.Contains(c.Output(), "shutdown") {
			t.Errorf("the client was not told the session ended:\n%s", c.Output())
		}
	})
}

// TestSystemwidePAMXpra6: system-wide mode with xpra 6.x: two real users,
// each with a 6.x session running as themselves, log in with PAM over TLS
// and wss from the 6.x client; each reaches their own session; a wrong
// password is refused as xpra refuses it.
func TestSystemwidePAMXpra6(t *testing.T) {
	xpratest.RequirePeers(t, "xpra6", "Xvfb", "root")
	sessDir := sharedSocketDir(t)
	type account struct {
		u  *xpratest.User
		pw string
		s  *xpratest.Server
	}
	var users []account
	for _, prefix := range []string{"x6a", "x6b"} {
		pw := randomPassword(t)
		u := xpratest.CreateUser(t, userName(prefix), pw)
		s := xpratest.StartServer(t, xpratest.ServerOptions{Gen: xpratest.Xpra6, User: u.Name, SocketDir: sessDir, Start: "xterm -T edge-" + u.Name})
		users = append(users, account{u, pw, s})
	}
	service := fmt.Sprintf("xpra-edge-e2e6-%d", os.Getpid())
	installPAMService(t, service, pamServiceFile)
	sp := startSystemwideProxy(t, swOptions{sessDir: sessDir, pamService: service})
	ca := "--ssl-ca-certs=" + sp.caFile
	id := 0
	for _, a := range users {
		for _, scheme := range []string{"ssl", "wss"} {
			url := scheme + "://" + a.u.Name + ":" + a.pw + "@" + sp.addr + "/"
			c := xpratest.Attach(t, url, xpratest.ClientOptions{Gen: xpratest.Xpra6, Args: []string{ca}})
			w, err := c.WaitWindowInfo("xterm", attachTimeout)
			if err != nil || !strings.Contains(w.Title, "edge-"+a.u.Name) {
				t.Fatalf("%s over %s: window %q (%v)\n%s\nproxy:\n%s", a.u.Name, scheme, w.Title, err, c.Output(), sp.log.String())
			}
			id++
			info, code := xpratest.RunGen(t, xpratest.Xpra6, 30*time.Second, "info", fmt.Sprintf(":proxy-%d", id), "--socket-dirs="+sp.ctlDir)
			if code != 0 {
				t.Fatalf("xpra6 info :proxy-%d: exit %d\n%s", id, code, info)
			}
			wantInfo(t, info, "proxy.user", a.u.Name, "proxy.auth", "pam", "proxy.display", a.s.Display,
				"proxy.target", "socket://"+a.s.SocketPath)
			c.Stop()
		}
	}
	bad := xpratest.Attach(t, "ssl://"+users[0].u.Name+":"+users[0].pw+"x@"+sp.addr+"/", xpratest.ClientOptions{Gen: xpratest.Xpra6, Args: []string{ca}})
	refused(t, "wrong password", bad, "authentication failed")
	noSecrets(t, sp.proxy, users[0].pw, users[1].pw)
}
