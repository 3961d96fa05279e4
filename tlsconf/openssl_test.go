package tlsconf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSelfSignedPythonSSL connects with Python's ssl module (OpenSSL, what
// `xpra attach ssl://... --ssl-ca-certs=CA` uses) verifying against CAFile.
func TestSelfSignedPythonSSL(t *testing.T) {
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s missing: %v", py, err)
		}
		t.Skipf("%s missing", py)
	}
	m, err := New(Config{Mode: ModeSelfSigned, StateDir: filepath.Join(t.TempDir(), "s"), Domains: []string{"desk.test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	addr := serveTLS(t, m.TLSConfig())
	host, port, _ := strings.Cut(addr, ":")
	script := `
import socket, ssl, sys
host, port, name, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection((host, port), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname=name) as t:
        print(t.recv(2).decode(), t.version())
`
	for _, name := range []string{"localhost", "127.0.0.1", "desk.test"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c", script, host, port, name, m.CAFile()).CombinedOutput()
		cancel()
		if err != nil || !strings.HasPrefix(string(out), "ok TLS") {
			t.Fatalf("python ssl to %s: %v\n%s", name, err, out)
		}
		t.Logf("python ssl %s: %s", name, strings.TrimSpace(string(out)))
	}
	// The wrong name is refused by OpenSSL's verification.
	out, err := exec.Command(py, "-c", script, host, port, "other.test", m.CAFile()).CombinedOutput()
	if err == nil {
		t.Fatalf("python ssl accepted other.test: %s", out)
	}
}
