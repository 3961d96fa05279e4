package tlsconf

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkGetCertificate measures the per-handshake lookup (no crypto).
func BenchmarkGetCertificate(b *testing.B) {
	dir := b.TempDir()
	self, err := New(Config{Mode: ModeSelfSigned, StateDir: filepath.Join(dir, "s")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := self.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	static, err := New(Config{Mode: ModeStatic, CertFile: filepath.Join(dir, "s", devCertFile), KeyFile: filepath.Join(dir, "s", devKeyFile)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	for _, bc := range []struct {
		name string
		m    *Manager
	}{{"self-signed", self}, {"static", static}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.m.GetCertificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGetCertificateACME measures the lookup of a managed certificate
// held in certmagic's cache (obtained from Pebble first).
func BenchmarkGetCertificateACME(b *testing.B) {
	edge := listenEdge(b)
	p := startPebble(b, 1, edge.port())
	name := testName("bench")
	m, err := New(Config{Mode: ModeACME, Domains: []string{name}, CA: p.dirURL, CARoot: p.caRootPEM,
		StateDir: b.TempDir(), TLSPort: edge.port()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	edge.serve(m.TLSConfig())
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Stop()
	waitCert(b, edge.ln.Addr().String(), name, p.root(b), 60*time.Second)
	hello := &tls.ClientHelloInfo{ServerName: name}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.GetCertificate(hello); err != nil {
			b.Fatal(err)
		}
	}
}
