package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// testZone is served by the test's DNS server: every name under it
// resolves to 127.0.0.1, so Pebble's VA validates against our listeners.
const testZone = "xpra-edge.test."

// pebbleCA is Pebble (ACME CA, VA and management API) running in process
// on loopback, with its VA pointed at the test's own ports.
type pebbleCA struct {
	dirURL    string // ACME directory
	caRootPEM string // PEM file of the CA that signed the directory's TLS certificate
	mgmt      string // management API base URL
	client    *http.Client
	newOrders atomic.Int32 // POSTs to new-order
}

// startDNS answers A queries for names under testZone with 127.0.0.1 (TCP,
// which is what Pebble's VA uses with a custom resolver).
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA && dns.IsSubDomain(testZone, q.Name) {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// startPebble runs Pebble with its VA validating HTTP-01 on httpPort and
// TLS-ALPN-01 on tlsPort of 127.0.0.1.
func startPebble(t testing.TB, httpPort, tlsPort int) *pebbleCA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")

	// The directory's own TLS certificate, from a throwaway CA (the
	// development-CA code of this package); tls.ca_root trusts it.
	dir := t.TempDir()
	caCert, caKey, err := makeDevCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := makeDevLeaf(dir, caCert, caKey, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, devCertFile), filepath.Join(dir, devKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)

	logger := log.New(io.Discard, "pebble ", 0)
	if os.Getenv("TLSCONF_PEBBLE_LOG") != "" {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test profile"},
	})
	validator := va.New(logger, httpPort, tlsPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	p := &pebbleCA{
		caRootPEM: filepath.Join(dir, devCAFile),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
		}},
	}
	acmeHandler := front.Handler()
	acmeSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.newOrders.Add(1)
		}
		acmeHandler.ServeHTTP(w, r)
	}))
	acmeSrv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	acmeSrv.StartTLS()
	t.Cleanup(acmeSrv.Close)
	mgmtSrv := httptest.NewUnstartedServer(front.ManagementHandler())
	mgmtSrv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	mgmtSrv.StartTLS()
	t.Cleanup(mgmtSrv.Close)

	p.dirURL = acmeSrv.URL + wfe.DirectoryPath
	p.mgmt = mgmtSrv.URL
	return p
}

// root fetches Pebble's issuing root from its management API.
func (p *pebbleCA) root(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %v %s", err, resp.Status)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: no PEM in %q", b)
	}
	return pool
}

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

func testName(label string) string { return label + "." + strings.TrimSuffix(testZone, ".") }
