package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveTLS accepts on a loopback listener with cfg until the test ends and
// completes each handshake, then closes the connection.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() == nil {
					_, _ = tc.Write([]byte("ok"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dial completes a handshake with SNI name against roots and returns the
// server's leaf.
func dial(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestSelfSignedMadeOnceAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cfg := Config{Mode: ModeSelfSigned, StateDir: dir, Domains: []string{"desk.test"}}
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("New wrote to the state dir: %v", err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if got, want := m.CAFile(), filepath.Join(dir, "ca.pem"); got != want {
		t.Fatalf("CAFile = %q, want %q", got, want)
	}
	for _, f := range []string{devCAKey, devKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	roots, err := readRoots(m.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.TLSConfig())
	var serial string
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "desk.test"} {
		leaf, err := dial(addr, name, roots)
		if err != nil {
			t.Fatalf("verify %s against the dev CA: %v", name, err)
		}
		if serial == "" {
			serial = leaf.SerialNumber.String()
		}
	}
	if _, err := dial(addr, "other.test", roots); err == nil {
		t.Fatal("other.test verified; the leaf must not cover it")
	}
	exp := m.Expiry()
	if exp["desk.test"].Before(time.Now().Add(300 * 24 * time.Hour)) {
		t.Fatalf("expiry %v", exp)
	}

	// A second New reuses the CA and the leaf (same serial), even before Start.
	m2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m2.Stop()
	leaf, err := dial(serveTLS(t, m2.TLSConfig()), "localhost", roots)
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.SerialNumber.String(); got != serial {
		t.Fatalf("second New served serial %s, want the kept %s", got, serial)
	}

	// A new name remakes the leaf from the same CA.
	cfg.Domains = append(cfg.Domains, "more.test")
	if err := m2.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	leaf, err = dial(serveTLS(t, m2.TLSConfig()), "more.test", roots)
	if err != nil {
		t.Fatalf("after reload with a new name: %v", err)
	}
	if leaf.SerialNumber.String() == serial {
		t.Fatal("leaf not remade for the new name")
	}
}

func TestSelfSignedConcurrentFirstStart(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	serials := make(chan string, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			s, err := loadOrMakeDev(dir, []string{"desk.test"}, testLogger(t))
			if err != nil {
				errs <- err
				return
			}
			serials <- s.cert.Leaf.SerialNumber.String()
		}()
	}
	var first string
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			t.Fatal(err)
		case s := <-serials:
			if first == "" {
				first = s
			} else if s != first {
				t.Fatalf("concurrent starts made different leaves: %s and %s", first, s)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("timeout")
		}
	}
	if _, err := loadDev(dir, []string{"desk.test"}); err != nil {
		t.Fatalf("kept files inconsistent: %v", err)
	}
}
