package tlsconf

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 11, item 17: TLS 1.2 is served with ECDHE+AEAD suites only; a
// client offering only CBC (SHA-1 or SHA-256 MACs) or RSA key exchange
// fails its handshake, one offering GCM or ChaCha20 succeeds, and TLS 1.3
// is unaffected. Before, ECDHE-*-AES-CBC-SHA was accepted.
func TestTLS12AEADOnly(t *testing.T) {
	m, err := New(Config{Mode: ModeSelfSigned, StateDir: filepath.Join(t.TempDir(), "state"), Domains: []string{"desk.test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	for _, id := range m.TLSConfig().CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is served", name)
		}
	}
	addr := serveTLS(t, m.TLSConfig())
	handshake := func(max uint16, suites ...uint16) (uint16, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{InsecureSkipVerify: true, MaxVersion: max, CipherSuites: suites}) //nolint:gosec // only the suite matters here
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.ConnectionState().CipherSuite, nil
	}
	for _, id := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	} {
		if got, err := handshake(tls.VersionTLS12, id); err == nil {
			t.Errorf("TLS 1.2 with only %s: negotiated %s", tls.CipherSuiteName(id), tls.CipherSuiteName(got))
		}
	}
	for _, id := range TLS12CipherSuites {
		if got, err := handshake(tls.VersionTLS12, id); err != nil && strings.Contains(tls.CipherSuiteName(id), "_ECDSA_") {
			t.Errorf("TLS 1.2 with %s: %v", tls.CipherSuiteName(id), err)
		} else if err == nil && got != id {
			t.Errorf("TLS 1.2 with %s: negotiated %s", tls.CipherSuiteName(id), tls.CipherSuiteName(got))
		}
	}
	if _, err := handshake(tls.VersionTLS13); err != nil {
		t.Errorf("TLS 1.3: %v", err)
	}
}
