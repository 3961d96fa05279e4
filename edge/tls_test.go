package edge

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// testCert makes a self-signed certificate for localhost names.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost", "a.test", "b.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func tlsProxy(t *testing.T, a auth.Authenticator, allowPlain bool, routes *router.Table) (string, *x509.CertPool) {
	t.Helper()
	cert, pool := testCert(t)
	ln := loopback(t)
	serveTest(t, Config{
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		State: State{Router: &router.Router{Routes: routes}, Limits: Limits{AuthFailDelay: -1, SniffTimeout: 500 * time.Millisecond},
			Listeners: []*Listener{{Name: "t", Listener: ln, Auth: a, AllowPlain: allowPlain, AllowTLS: true}}},
	})
	return ln.Addr().String(), pool
}

func dialTLS(t *testing.T, addr, sni string, pool *x509.CertPool) *xpraclient.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: sni})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return xpraclient.New(c, xprawire.Rencode)
}

func TestTLSOnTheSamePort(t *testing.T) {
	recA, recB := startRecorder(t), startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p"})
	routes := &router.Table{Strict: true, Routes: []router.Route{
		{Host: "a.test", Targets: []string{"tcp://" + recA.ln.Addr().String() + "/"}},
		{Host: "b.test", Targets: []string{"tcp://" + recB.ln.Addr().String() + "/"}},
	}}
	addr, pool := tlsProxy(t, a, true, routes)
	// SNI picks the backend.
	for _, c := range []struct {
		sni string
		rec *recorder
	}{{"a.test", recA}, {"b.test", recB}} {
		if _, err := dialTLS(t, addr, c.sni, pool).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, true, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", c.sni, err)
		}
		c.rec.lastHello(t)
	}
	// An unknown name is refused with a clear reason.
	_, err := dialTLS(t, addr, "localhost", pool).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, true, 5*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || !strings.Contains(strings.Join(de.Reasons, " "), "no route for host 'localhost'") {
		t.Fatalf("unknown host: %v", err)
	}
	// Plain xpra on the same port still works when allowed.
	if _, err := connect(t, addr, xprawire.Rencode).Request("version", 5*time.Second); err != nil {
		t.Fatalf("plain on the TLS port: %v", err)
	}
}

func TestTLSOnlyPortRefusesPlain(t *testing.T) {
	a := tomlAuth(t, auth.User{Name: "u", Password: "p"})
	addr, pool := tlsProxy(t, a, false, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("P\x01\x00\x00\x00\x00\x00\x10"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if line != "disconnect: protocol error: this port requires TLS\n" {
		t.Fatalf("got %q", line)
	}
	if _, err := dialTLS(t, addr, "localhost", pool).Request("version", 5*time.Second); err != nil {
		t.Fatalf("TLS on a TLS-only port: %v", err)
	}
}

func TestHashedPasswordsUseXOROnlyOverTLS(t *testing.T) {
	rec := startRecorder(t)
	hash := auth.HashPassword([]byte("s3cret"))
	a := tomlAuth(t, auth.User{Name: "h", PasswordHash: hash, Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	addr, pool := tlsProxy(t, a, true, nil)
	if _, err := dialTLS(t, addr, "localhost", pool).Hello(xpraclient.BaseCaps("h"), []byte("s3cret"), true, true, 5*time.Second); err != nil {
		t.Fatalf("hashed password over TLS: %v", err)
	}
	_, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("h"), []byte("s3cret"), true, false, 5*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || de.Reasons[0] != "authentication error" || !strings.Contains(strings.Join(de.Reasons, " "), "encrypted") {
		t.Fatalf("hashed password over plain TCP: %v", err)
	}
}

func TestSlowTLSHandshakeIsCut(t *testing.T) {
	a := tomlAuth(t, auth.User{Name: "u", Password: "p"})
	addr, pool := tlsProxy(t, a, true, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // a TLS record that never completes
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("expected the connection to be cut")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut after %v", d)
	}
	if _, err := dialTLS(t, addr, "localhost", pool).Request("version", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// newTLSOnly serves on ln with TLS and an explicit accept list.
func newTLSOnly(t *testing.T, ln net.Listener, a auth.Authenticator, cert tls.Certificate, accept []string) *Server {
	t.Helper()
	return serveTest(t, Config{
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		State: State{Router: &router.Router{}, Limits: Limits{AuthFailDelay: -1},
			Listeners: []*Listener{{Name: "t", Listener: ln, Auth: a, Accept: accept}}},
	})
}
