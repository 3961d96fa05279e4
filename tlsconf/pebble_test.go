package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/pebbletest"
)

// pebbleCA is internal/pebbletest's in-process Pebble under the names
// these tests use.
type pebbleCA struct {
	*pebbletest.CA
	dirURL    string // ACME directory
	caRootPEM string // PEM file of the CA that signed the directory's TLS certificate
	newOrders orderCounter
}

// orderCounter reads Pebble's count of new-order requests.
type orderCounter struct{ ca *pebbletest.CA }

func (o orderCounter) Load() int32 { return int32(o.ca.NewOrders()) }

// startPebble runs Pebble with its VA validating HTTP-01 on httpPort and
// TLS-ALPN-01 on tlsPort of 127.0.0.1.
func startPebble(t testing.TB, httpPort, tlsPort int) *pebbleCA {
	t.Helper()
	c := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort, TLSPort: tlsPort})
	return &pebbleCA{CA: c, dirURL: c.DirectoryURL, caRootPEM: c.RootPEM, newOrders: orderCounter{c}}
}

// root fetches Pebble's issuing root from its management API.
func (p *pebbleCA) root(t testing.TB) *x509.CertPool { return p.Roots(t) }

// edgeListener stands in for the edge: a loopback TCP listener serving a
// tls.Config, closing TLS-ALPN-01 validations after the handshake (as the
// edge does with IsACMEChallenge) and answering "ok" on other handshakes.
type edgeListener struct {
	ln         net.Listener
	challenges atomic.Int32
}

func listenEdge(t testing.TB) *edgeListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &edgeListener{ln: ln}
}

func (e *edgeListener) port() int { return e.ln.Addr().(*net.TCPAddr).Port }

func (e *edgeListener) serve(cfg *tls.Config) {
	go func() {
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				_ = tc.SetDeadline(time.Now().Add(60 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				if IsACMEChallenge(tc.ConnectionState()) {
					e.challenges.Add(1)
					return
				}
				_, _ = tc.Write([]byte("ok"))
			}()
		}
	}()
}

// handshake dials addr with SNI name and verifies the chain against roots;
// with nil roots it verifies nothing, so an error means the server refused.
func handshake(addr, name string, roots *x509.CertPool, timeout time.Duration) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	if string(b) != "ok" {
		return nil, io.ErrUnexpectedEOF
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitCert retries a verified handshake until it succeeds or the deadline
// passes (bounded by count and time).
func waitCert(t testing.TB, addr, name string, roots *x509.CertPool, within time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(within)
	var lastErr error
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		leaf, err := handshake(addr, name, roots, 5*time.Second)
		if err == nil {
			return leaf
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no certificate for %s verified by Pebble's root within %v: %v", name, within, lastErr)
	return nil
}

func testName(label string) string { return pebbletest.Name(label) }
