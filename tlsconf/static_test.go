package tlsconf

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair issues a leaf for names from a throwaway CA in dir and copies
// it to certFile/keyFile; it returns the CA pool and the leaf serial.
func writePair(t *testing.T, caDir string, names []string, certFile, keyFile string) string {
	t.Helper()
	caCert, caKey, err := loadDevCA(caDir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(caDir, 0o700); err != nil {
			t.Fatal(err)
		}
		caCert, caKey, err = makeDevCA(caDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := makeDevLeaf(caDir, caCert, caKey, names); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{devCertFile: certFile, devKeyFile: keyFile} {
		b, err := os.ReadFile(filepath.Join(caDir, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := writeAtomic(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	leaf, err := x509.ParseCertificate(mustPairLeaf(t, certFile, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

func mustPairLeaf(t *testing.T, certFile, keyFile string) []byte {
	t.Helper()
	c, err := (&staticSource{certFile: certFile, keyFile: keyFile}).loadPair()
	if err != nil {
		t.Fatal(err)
	}
	return c.Certificate[0]
}

func TestStaticServedAndReplaced(t *testing.T) {
	old := staticCheckEvery
	staticCheckEvery = 10 * time.Millisecond
	t.Cleanup(func() { staticCheckEvery = old })

	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writePair(t, caDir, []string{"static.test"}, certFile, keyFile)
	roots, err := readRoots(filepath.Join(caDir, devCAFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Mode: ModeStatic, CertFile: certFile, KeyFile: keyFile}
	m, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if m.CAFile() != "" {
		t.Fatalf("CAFile %q in static mode", m.CAFile())
	}
	addr := serveTLS(t, m.TLSConfig())
	leaf, err := dial(addr, "static.test", roots)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.String() != first {
		t.Fatalf("served %s, want %s", leaf.SerialNumber, first)
	}
	if m.Expiry()["static.test"].IsZero() {
		t.Fatalf("expiry %v", m.Expiry())
	}

	// A broken write (garbage key) keeps the old certificate in service.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if leaf, err = dial(addr, "static.test", roots); err != nil || leaf.SerialNumber.String() != first {
		t.Fatalf("after a broken key: %v, serial %v", err, leaf)
	}

	// The files change: the next handshake (after the check interval)
	// serves the new pair, without Reload.
	second := writePair(t, caDir, []string{"static.test", "new.test"}, certFile, keyFile)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		leaf, err = dial(addr, "new.test", roots)
		if err == nil && leaf.SerialNumber.String() == second {
			break
		}
		if i > 500 || time.Now().After(deadline) {
			t.Fatalf("new pair not served after the files changed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if first == second {
		t.Fatal("test wrote the same serial twice")
	}

	// Explicit Reload to other files.
	cert2, key2 := filepath.Join(dir, "c2.pem"), filepath.Join(dir, "k2.pem")
	third := writePair(t, caDir, []string{"third.test"}, cert2, key2)
	if err := m.Reload(Config{Mode: ModeStatic, CertFile: cert2, KeyFile: key2}); err != nil {
		t.Fatal(err)
	}
	if leaf, err = dial(addr, "third.test", roots); err != nil || leaf.SerialNumber.String() != third {
		t.Fatalf("after Reload: %v", err)
	}
	// A Reload to unreadable files fails and keeps the current pair.
	if err := m.Reload(Config{Mode: ModeStatic, CertFile: filepath.Join(dir, "missing.pem"), KeyFile: key2}); err == nil {
		t.Fatal("Reload with a missing file succeeded")
	}
	if leaf, err = dial(addr, "third.test", roots); err != nil || leaf.SerialNumber.String() != third {
		t.Fatalf("after a failed Reload: %v", err)
	}
	// Mode changes need a restart.
	if err := m.Reload(Config{Mode: ModeSelfSigned, StateDir: dir}); !errors.Is(err, ErrModeChange) {
		t.Fatalf("mode change: %v", err)
	}
}

func TestStaticCombinedPEM(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, filepath.Join(dir, "ca"), []string{"both.test"}, certFile, keyFile)
	c, _ := os.ReadFile(certFile)
	k, _ := os.ReadFile(keyFile)
	both := filepath.Join(dir, "both.pem")
	if err := os.WriteFile(both, append(c, k...), 0o600); err != nil {
		t.Fatal(err)
	}
	// xpra's --ssl-cert alone: one PEM with certificate and key.
	if _, err := New(Config{Mode: ModeStatic, CertFile: both, KeyFile: both}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Mode: ModeStatic, CertFile: certFile, KeyFile: certFile}, nil); err == nil {
		t.Fatal("a certificate without its key loaded")
	}
}
