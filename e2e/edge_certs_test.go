package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/pebbletest"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// Certificates for the one port (issue #4): ACME from a real CA (Pebble,
// in process) through the proxy's own port, and xpra's --ssl-cert files.

// acmeProxy starts the proxy binary with [tls] mode = "acme" against ca,
// keeping its state in dir: user foo's session is backend, tlsExtra adds
// [tls] keys.
func acmeProxy(t *testing.T, dir, addr string, ca *pebbletest.CA, backend *xpratest.Server, tlsExtra string) *proxy {
	t.Helper()
	cfg := fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "toml"

[[listener]]
bind = %q

[[user]]
name = %q
password = %q
displays = ["tcp://%s/"]

[bans]
max_failures = 0

[tls]
mode = "acme"
ca = %q
ca_root = %q
state_dir = %q
%s
`, xpratest.FreeDisplay(t), filepath.Join(dir, "ctl"), addr, tlsUser, tlsPassword, backend.TCPAddr,
		ca.DirectoryURL, ca.RootPEM, filepath.Join(dir, "tls"), tlsExtra)
	return startProxy(t, addr, "--config="+writeFile(t, filepath.Join(dir, "edge.toml"), cfg))
}

// portOf is the port of host:port.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := fmt.Sscan(p, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitACMECert retries a TLS handshake with addr as name, verified against
// Pebble's issuing roots, until it succeeds (bounded in count and time);
// it returns the verified connection.
func waitACMECert(t *testing.T, addr, name string, roots *x509.CertPool, within time.Duration) *tls.Conn {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for i := 0; i < 600 && time.Now().Before(deadline); i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err == nil {
			return c
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no certificate for %s verified by Pebble's root within %v: %v", name, within, last)
	return nil
}

// TestEdgeCertificates: the proxy binary obtains certificates from a real
// ACME CA (Pebble, in process) through its own port with TLS-ALPN-01, and
// with HTTP-01 on http_bind; it serves them on the next handshakes, where
// the real xpra client (trusting only Pebble's root) and the Go request
// client log in. On-demand issuance covers only allowed names. xpra's
// --ssl-cert flag serves a file, and a replaced file without a restart.
func TestEdgeCertificates(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "xterm")
	backend := xpratest.StartServer(t, xpratest.ServerOptions{BindTCP: xpratest.FreeTCPAddr(t), Start: "xterm -T " + titleA})

	t.Run("tls-alpn-01", func(t *testing.T) {
		addr := xpratest.FreeTCPAddr(t)
		ca := pebbletest.Start(t, pebbletest.Options{TLSPort: portOf(t, addr)})
		name, okName, badName := pebbletest.Name("acme"), pebbletest.Name("od-ok"), pebbletest.Name("od-no")
		dir := t.TempDir()
		tlsKeys := fmt.Sprintf(`domains = [%q]
tls_port = %d
on_demand = true
on_demand_allow = [%q]
`, name, portOf(t, addr), okName)
		p := acmeProxy(t, dir, addr, ca, backend, tlsKeys)
		roots := ca.Roots(t)
		began := time.Now()
		c := waitACMECert(t, addr, name, roots, 90*time.Second)
		t.Logf("certificate for %s obtained through TLS-ALPN-01 on the proxy's port and served after %v", name, time.Since(began).Round(time.Millisecond))
		if leaf := c.ConnectionState().PeerCertificates[0]; !slices.Contains(leaf.DNSNames, name) {
			t.Fatalf("leaf for %v", leaf.DNSNames)
		}
		loginSees(t, c, backend)
		c.Close()

		// The real xpra client, trusting only Pebble's root, attaches.
		rootsPEM, err := ca.RootsPEM()
		if err != nil {
			t.Fatal(err)
		}
		rootFile := writeFile(t, filepath.Join(t.TempDir(), "pebble-root.pem"), string(rootsPEM))
		x := attachSees(t, "ssl://"+tlsUser+":"+tlsPassword+"@"+addr+"/", titleA,
			"--ssl-ca-certs="+rootFile, "--ssl-server-hostname="+name)
		x.Stop()

		// On demand: an allowed name gets its certificate at its first
		// handshake; any other name is refused without asking the CA.
		orders := ca.NewOrders()
		c = waitACMECert(t, addr, okName, roots, 60*time.Second)
		loginSees(t, c, backend)
		c.Close()
		if ca.NewOrders() == orders {
			t.Fatalf("no new order for the on-demand name %s", okName)
		}
		orders = ca.NewOrders()
		bad, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: badName, InsecureSkipVerify: true})
		if err == nil {
			leaf := bad.ConnectionState().PeerCertificates[0]
			bad.Close()
			t.Fatalf("the proxy served a certificate for %v to a handshake for the unlisted %s", leaf.DNSNames, badName)
		}
		if ca.NewOrders() != orders {
			t.Fatalf("the proxy asked the CA for the unlisted %s", badName)
		}
		if strings.Contains(p.log.String(), "level=ERROR") {
			t.Errorf("errors logged:\n%s", strings.Join(grepLines(p.log.String(), "level=ERROR"), "\n"))
		}

		// A restarted proxy serves the stored certificates at once and
		// orders nothing new.
		if err := p.stop(syscall.SIGTERM, 15*time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		orders = ca.NewOrders()
		acmeProxy(t, dir, addr, ca, backend, tlsKeys)
		for _, n := range []string{name, okName} {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: n, RootCAs: roots})
			if err != nil {
				t.Fatalf("after a restart, %s: %v", n, err)
			}
			c.Close()
		}
		if ca.NewOrders() != orders {
			t.Fatalf("the restarted proxy ordered %d new certificates", ca.NewOrders()-orders)
		}
	})

	t.Run("http-01", func(t *testing.T) {
		addr, httpAddr := xpratest.FreeTCPAddr(t), xpratest.FreeTCPAddr(t)
		ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: portOf(t, httpAddr)})
		name := pebbletest.Name("http01")
		acmeProxy(t, t.TempDir(), addr, ca, backend, fmt.Sprintf(`domains = [%q]
http_bind = %q
disable_tls_alpn = true
`, name, httpAddr))
		began := time.Now()
		c := waitACMECert(t, addr, name, ca.Roots(t), 90*time.Second)
		t.Logf("certificate for %s obtained through HTTP-01 on http_bind and served after %v", name, time.Since(began).Round(time.Millisecond))
		loginSees(t, c, backend)
		c.Close()
	})

	t.Run("ssl-cert-flag", func(t *testing.T) { testStaticCertFlag(t, backend) })
}

// testStaticCertFlag: `xpra-edge proxy --ssl-cert=FILE` (one PEM with the
// certificate and its key, as xpra takes it) serves that certificate to
// the real xpra client over ssl and wss; replacing the file (a rename over
// it, as certificate tools do) changes what the next handshakes get,
// without a restart.
func testStaticCertFlag(t *testing.T, backend *xpratest.Server) {
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "edge.pem")
	ca1 := writeTestPKI(t, dir, "one", pemFile)
	addr := xpratest.FreeTCPAddr(t)
	cfg := fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "toml"

[[listener]]
bind = %q

[[user]]
name = %q
password = %q
displays = ["tcp://%s/"]
`, xpratest.FreeDisplay(t), filepath.Join(dir, "ctl"), addr, tlsUser, tlsPassword, backend.TCPAddr)
	startProxy(t, addr, "--config="+writeFile(t, filepath.Join(dir, "edge.toml"), cfg), "--ssl-cert="+pemFile)
	creds := tlsUser + ":" + tlsPassword + "@"
	for _, scheme := range []string{"ssl", "wss"} {
		c := attachSees(t, scheme+"://"+creds+addr+"/", titleA, "--ssl-ca-certs="+ca1)
		c.Stop()
	}
	// A new certificate from another CA replaces the file.
	next := filepath.Join(dir, "next.pem")
	ca2 := writeTestPKI(t, dir, "two", next)
	if err := os.Rename(next, pemFile); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	pool := caPool(t, ca2)
	var last error
	for i := 0; i < 100; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: pool})
		if err == nil {
			c.Close()
			last = nil
			break
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("the replaced certificate was not served: %v", last)
	}
	t.Logf("replaced certificate served after %v", time.Since(began).Round(time.Millisecond))
	c := attachSees(t, "ssl://"+creds+addr+"/", titleA, "--ssl-ca-certs="+ca2)
	c.Stop()
	// and the old CA no longer verifies it
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: caPool(t, ca1)}); err == nil {
		c.Close()
		t.Fatal("the old certificate is still served")
	}
}

// writeTestPKI makes a CA and a leaf for 127.0.0.1 signed by it; the leaf
// and its key go to pemFile (one PEM), the CA to DIR/NAME-ca.pem, whose
// path it returns.
func writeTestPKI(t *testing.T, dir, name, pemFile string) string {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e CA " + name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	both := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	writeFile(t, pemFile, string(both))
	return writeFile(t, filepath.Join(dir, name+"-ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
}
