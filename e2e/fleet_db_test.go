package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/pebbletest"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// fleetNode writes the configuration of one fleet node (auth postgres,
// ACME with its TLS-ALPN-01 answers on its own port) and launches it.
func fleetNode(t *testing.T, node, addr, dsn string, ca *pebbletest.CA, name string) *proxy {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "postgres"

[[listener]]
bind = %q

[bans]
max_failures = 2

[store]
postgres = %q
node = %q

[tls]
mode = "acme"
ca = %q
ca_root = %q
state_dir = %q
domains = [%q]
tls_port = %d
`, xpratest.FreeDisplay(t), filepath.Join(dir, "ctl"), addr, dsn, node, ca.DirectoryURL, ca.RootPEM,
		filepath.Join(dir, "tls"), name, portOf(t, addr))
	return launchProxy(t, addr, "--config="+writeFile(t, filepath.Join(dir, "edge.toml"), cfg))
}

// TestFleetSharedUsersAndCertificate: two xpra-edge processes share one
// PostgreSQL (its password only in XPRA_EDGE_PG_PASSWORD). A user added
// once with `xpra-edge pg` logs in on both and reaches a real xpra
// server (the real xpra client attaches through node b); a user added while they run logs in at once. Both start at the
// same moment with ACME against Pebble, whose TLS-ALPN-01 validation
// reaches only node a's port: Pebble gets one order and both nodes serve
// the same certificate, verified against Pebble's root. The password is
// in neither log.
func TestFleetSharedUsersAndCertificate(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "xterm")
	backend := xpratest.StartServer(t, xpratest.ServerOptions{BindTCP: xpratest.FreeTCPAddr(t), Start: "xterm -T " + titleA})
	pg := pgtest.Start(t)
	t.Setenv("XPRA_EDGE_PG_PASSWORD", pg.Password)
	dsn := pg.DSNWithoutPassword()
	if out, code := edgeCmd(t, "pg", dsn, "add", tlsUser, tlsPassword, "nobody", "nobody", "tcp://"+backend.TCPAddr+"/"); code != 0 {
		t.Fatalf("xpra-edge pg add: %s", out)
	}

	addrA, addrB := xpratest.FreeTCPAddr(t), xpratest.FreeTCPAddr(t)
	ca := pebbletest.Start(t, pebbletest.Options{TLSPort: portOf(t, addrA)})
	name := pebbletest.Name("fleet")
	a := fleetNode(t, "a", addrA, dsn, ca, name)
	b := fleetNode(t, "b", addrB, dsn, ca, name)
	a.waitListening()
	b.waitListening()

	roots := ca.Roots(t)
	began := time.Now()
	ca1 := waitACMECert(t, addrA, name, roots, 90*time.Second)
	cb1 := waitACMECert(t, addrB, name, roots, 90*time.Second)
	leafA, leafB := ca1.ConnectionState().PeerCertificates[0], cb1.ConnectionState().PeerCertificates[0]
	t.Logf("both nodes serve %s after %v: serials %s / %s, Pebble orders %d", name, time.Since(began).Round(time.Millisecond),
		leafA.SerialNumber, leafB.SerialNumber, ca.NewOrders())
	if leafA.SerialNumber.Cmp(leafB.SerialNumber) != 0 {
		t.Fatalf("the nodes serve different certificates")
	}
	if n := ca.NewOrders(); n != 1 {
		t.Fatalf("Pebble got %d orders from two nodes, want 1", n)
	}
	// The user added once logs in on both nodes; the real xpra client,
	// trusting only Pebble's root, attaches through node b and sees the
	// backend's window.
	loginSees(t, ca1, backend).Close()
	loginSees(t, cb1, backend).Close()
	rootsPEM, err := ca.RootsPEM()
	if err != nil {
		t.Fatal(err)
	}
	rootFile := writeFile(t, filepath.Join(t.TempDir(), "pebble-root.pem"), string(rootsPEM))
	attachSees(t, "ssl://"+tlsUser+":"+tlsPassword+"@"+addrB+"/", titleA,
		"--ssl-ca-certs="+rootFile, "--ssl-server-hostname="+name).Stop()

	// A user added while the nodes run logs in on node b at its next
	// login; a wrong password is refused.
	if out, code := edgeCmd(t, "pg", dsn, "add", "late", "comer", "nobody", "nobody", "tcp://"+backend.TCPAddr+"/"); code != 0 {
		t.Fatalf("xpra-edge pg add: %s", out)
	}
	c := waitACMECert(t, addrB, name, roots, 10*time.Second)
	xc, caps, err := goLoginConn(c, "late", "comer")
	if err != nil {
		t.Fatalf("login of a user added at run time on node b: %v", err)
	}
	if d, _ := caps.Str("display"); d != backend.Display {
		t.Fatalf("reached %q", d)
	}
	xc.Close()

	// PostgreSQL stopped: logins fail closed with "authentication error"
	// on the edge, and count toward no ban (max_failures = 2: three
	// counted failures would ban 127.0.0.1); the certificate is still
	// served from memory. Back up, the same client logs in.
	pg.Stop()
	for i := range 3 {
		c := waitACMECert(t, addrB, name, roots, 10*time.Second)
		start := time.Now()
		_, _, err := goLoginConn(c, tlsUser, tlsPassword)
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "authentication error") {
			t.Fatalf("login %d with PostgreSQL down: %v", i, err)
		}
		t.Logf("login with PostgreSQL down refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	pg.Start()
	c = waitACMECert(t, addrB, name, roots, 10*time.Second)
	if xc, _, err := goLoginConn(c, tlsUser, tlsPassword); err != nil {
		t.Fatalf("login after PostgreSQL is back: %v", err)
	} else {
		xc.Close()
	}
	if strings.Contains(b.log.String(), "banned") {
		t.Fatalf("node b banned a client for PostgreSQL being down:\n%s", strings.Join(grepLines(b.log.String(), "banned"), "\n"))
	}

	c = waitACMECert(t, addrA, name, roots, 10*time.Second)
	if _, _, err := goLoginConn(c, "late", "wrong"); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong password on node a: %v", err)
	}
	c.Close()
	for _, p := range []*proxy{a, b} {
		if strings.Contains(p.log.String(), pg.Password) {
			t.Fatal("a node logged the PostgreSQL password")
		}
		if !strings.Contains(p.log.String(), "fleet database open") {
			t.Fatalf("no fleet line in the log:\n%s", p.log.String())
		}
	}
}
