// Package pebbletest runs Pebble, Let's Encrypt's test ACME CA, in process
// on loopback for tests of certificate issuance: its ACME directory and
// management API over TLS, its validation authority pointed at ports the
// test chooses, and a DNS server that resolves every name under Zone to
// 127.0.0.1 so the validation reaches the test's own listeners.
//
// Its job is only to stand up the CA and tell the test how to reach and
// trust it. It must not be imported by non-test code of the proxy (it
// imports "testing"), never listens on anything but 127.0.0.1, and never
// reaches a real CA or the real DNS.
package pebbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
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

// Zone is the DNS zone the test's resolver answers: every name under it
// resolves to 127.0.0.1 (for Pebble's validation authority only; the
// system resolver knows nothing of it).
const Zone = "xpra-edge.test"

// Name returns label.Zone, e.g. Name("a") = "a.xpra-edge.test".
func Name(label string) string { return label + "." + Zone }

// EnvLog, when set to a non-empty value, sends Pebble's log to stderr.
const EnvLog = "PEBBLETEST_LOG"

// Options configures Start.
type Options struct {
	// HTTPPort is where the validation authority makes HTTP-01 requests
	// on 127.0.0.1; 0 disables HTTP-01 validation in practice (port 1).
	HTTPPort int
	// TLSPort is where the validation authority makes TLS-ALPN-01
	// handshakes on 127.0.0.1; 0 disables it in practice (port 1).
	TLSPort int
}

// CA is a running in-process Pebble.
type CA struct {
	// DirectoryURL is the ACME directory (https://127.0.0.1:PORT/dir).
	DirectoryURL string
	// RootPEM is a PEM file holding the root that signed the TLS
	// certificate of the directory and the management API: what an ACME
	// client must trust to talk to Pebble (tlsconf's ca_root). It is not
	// the root that issues certificates; see Roots.
	RootPEM string
	// ManagementURL is the base of Pebble's management API.
	ManagementURL string

	client    *http.Client
	newOrders atomic.Int32
}

// Start runs Pebble until the end of the test. It sets environment
// variables for the test (no validation sleeps, no nonce rejections, no
// authorization reuse), so the test must not be parallel.
func Start(t testing.TB, o Options) *CA {
	t.Helper()
	if o.HTTPPort == 0 {
		o.HTTPPort = 1
	}
	if o.TLSPort == 0 {
		o.TLSPort = 1
	}
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")

	dir := t.TempDir()
	pair, roots, rootPEM, err := serverCert(dir)
	if err != nil {
		t.Fatalf("pebbletest: %v", err)
	}
	logger := log.New(io.Discard, "pebble ", 0)
	if os.Getenv(EnvLog) != "" {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test profile"},
	})
	validator := va.New(logger, o.HTTPPort, o.TLSPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	c := &CA{
		RootPEM: rootPEM,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
		}},
	}
	acme := front.Handler()
	acmeSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			c.newOrders.Add(1)
		}
		acme.ServeHTTP(w, r)
	}))
	acmeSrv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	acmeSrv.StartTLS()
	t.Cleanup(acmeSrv.Close)
	mgmtSrv := httptest.NewUnstartedServer(front.ManagementHandler())
	mgmtSrv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	mgmtSrv.StartTLS()
	t.Cleanup(mgmtSrv.Close)

	c.DirectoryURL = acmeSrv.URL + wfe.DirectoryPath
	c.ManagementURL = mgmtSrv.URL
	return c
}

// NewOrders counts the new-order requests Pebble received.
func (c *CA) NewOrders() int { return int(c.newOrders.Load()) }

// RootsPEM fetches the PEM of Pebble's issuing root from its management
// API: what a TLS client must trust to verify certificates Pebble issued.
func (c *CA) RootsPEM() ([]byte, error) {
	resp, err := c.client.Get(c.ManagementURL + wfe.RootCertPath + "0")
	if err != nil {
		return nil, fmt.Errorf("pebble root: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("pebble root: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pebble root: %s", resp.Status)
	}
	return b, nil
}

// Roots is RootsPEM as a pool; it fails the test on error.
func (c *CA) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	b, err := c.RootsPEM()
	if err != nil {
		t.Fatalf("pebbletest: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebbletest: no certificate in Pebble's root")
	}
	return pool
}

// startDNS answers A queries for names under Zone with 127.0.0.1 over TCP
// (what Pebble's validation authority uses with a custom resolver), and
// returns its address.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pebbletest: %v", err)
	}
	zone := dns.Fqdn(Zone)
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA && dns.IsSubDomain(zone, strings.ToLower(q.Name)) {
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

// serverCert makes a throwaway root and a leaf for 127.0.0.1 and
// localhost signed by it; the root is written to dir/pebble-tls-root.pem.
func serverCert(dir string) (tls.Certificate, *x509.CertPool, string, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pebbletest directory root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	rootPEM := filepath.Join(dir, "pebble-tls-root.pem")
	if err := os.WriteFile(rootPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), 0o644); err != nil {
		return tls.Certificate{}, nil, "", err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	pair := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	return pair, pool, rootPEM, nil
}
