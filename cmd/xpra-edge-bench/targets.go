package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/wsconn"
)

// Bench credentials: a throwaway user in a throwaway database.
const (
	benchUser = "bench"
	benchPass = "bench-password"
)

// target is one way for a client to reach the synthetic server.
type target struct {
	name     string
	addr     string
	tls      *tls.Config
	user     string
	pass     string
	allowXOR bool
	// ws makes the client speak WebSocket (after TLS when tls is set), as
	// the HTML5 client does.
	ws bool
	// root is the proxy's pid (0 for direct).
	root int
	// baseProcs is how many processes the proxy has with no session.
	baseProcs int
	// heap reads the proxy's Go heap in bytes, when it can.
	heap func() (int64, bool)
	// profile fetches a CPU profile of the proxy over d, when it can.
	profile func(d time.Duration) ([]byte, error)
	// heapProfile fetches a heap profile of the proxy, when it can.
	heapProfile func() ([]byte, error)
	stop        func()
}

func (t *target) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if t.tls != nil {
		tc := tls.Client(c, t.tls)
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	if !t.ws {
		return c, nil
	}
	wc, err := wsconn.Dial(hctx, c, "localhost", "/")
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	return wc, nil
}

func directTarget(serverAddr string) *target {
	return &target{name: "direct", addr: serverAddr, stop: func() {}}
}

// edgeInstance is one running xpra-edge serving plain TCP and TLS on one
// port.
type edgeInstance struct {
	p         *proc
	addr      string
	adminAddr string
	tlsConfig *tls.Config
}

func runCmd(argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(argv[0]), err, out)
	}
	return nil
}

// startEdge starts bin with a fresh sqlite database whose one user maps to
// backend, a self-signed certificate and an admin listener with pprof.
func startEdge(ctx context.Context, bin, dir, backend string) (*edgeInstance, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("xpra-edge binary: %w (run make build)", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sock"), 0o700); err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "users.sqlite")
	if err := runCmd(bin, "sqlite", db, "create"); err != nil {
		return nil, err
	}
	if err := runCmd(bin, "sqlite", db, "add", benchUser, benchPass, "nobody", "nogroup", "tcp://"+backend+"/"); err != nil {
		return nil, err
	}
	certPEM, keyPEM, pool, err := selfSigned()
	if err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	aport, err := freePort()
	if err != nil {
		return nil, err
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(aport)
	cfg := filepath.Join(dir, "bench.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[admin]\nbind = %q\npprof = true\n", adminAddr)), 0o600); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := []string{bin, "proxy", ":" + strconv.Itoa(20000+port%10000),
		"--bind-tcp=" + addr,
		"--tcp-auth=sqlite,filename=" + db,
		"--socket-dir=" + filepath.Join(dir, "sock"),
		"--ssl-cert=" + certFile, "--ssl-key=" + keyFile,
		"--config=" + cfg,
	}
	p, err := startProc("xpra-edge", filepath.Join(dir, "xpra-edge.log"), argv, nil)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, p, addr, 15*time.Second); err != nil {
		p.stop(2 * time.Second)
		return nil, err
	}
	return &edgeInstance{p: p, addr: addr, adminAddr: adminAddr,
		tlsConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}}, nil
}

// target is the client's way into this instance: transport is tcp, tls,
// ws or wss (all on the one port).
func (e *edgeInstance) target(name, transport string) *target {
	t := &target{name: name, addr: e.addr, user: benchUser, pass: benchPass, root: e.p.pid(),
		baseProcs: len(tree(e.p.pid())), heap: e.heap, profile: e.profile, heapProfile: e.heapProfile, stop: func() {},
		ws: transport == "ws" || transport == "wss"}
	if transport == "tls" || transport == "wss" {
		t.tls = e.tlsConfig
		t.allowXOR = true
	}
	return t
}

var heapInuse = regexp.MustCompile(`(?m)^# HeapInuse = (\d+)`)
var heapMetric = regexp.MustCompile(`(?m)^go_memstats_heap_inuse_bytes (\S+)`)

// profile fetches a CPU profile over d from the admin listener.
func (e *edgeInstance) profile(d time.Duration) ([]byte, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	c := http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.adminAddr, secs))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pprof: %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 256<<20))
}

// heapProfile fetches the heap profile (after a GC) from the admin listener.
func (e *edgeInstance) heapProfile() ([]byte, error) {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + e.adminAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pprof: %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 256<<20))
}

// heap reads HeapInuse from pprof, or the Prometheus Go collector.
func (e *edgeInstance) heap() (int64, bool) {
	get := func(path string) string {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + e.adminAddr + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return ""
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		return string(b)
	}
	// the heap profile forces no GC; ask for one first so the number is
	// live memory, not garbage
	if m := heapInuse.FindStringSubmatch(get("/debug/pprof/heap?debug=1&gc=1")); m != nil {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		return v, true
	}
	if m := heapMetric.FindStringSubmatch(get("/metrics")); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		return int64(v), true
	}
	return 0, false
}

// xpraInstance is Debian's xpra proxy with sqlite auth.
type xpraInstance struct {
	p    *proc
	addr string
}

// startXpra starts `xpra proxy` whose one sqlite user maps to backend.
func startXpra(ctx context.Context, bin, dir, backend string) (*xpraInstance, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("xpra: %w", err)
	}
	// the instance processes run as nobody and make their control
	// sockets here
	sock := filepath.Join(dir, "sock")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(sock, 0o1777); err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "users.sqlite")
	py := "/usr/bin/python3"
	if err := runCmd(py, "-m", "xpra.server.auth.sqlite_auth", db, "create"); err != nil {
		return nil, err
	}
	if err := runCmd(py, "-m", "xpra.server.auth.sqlite_auth", db, "add", benchUser, benchPass, "nobody", "nogroup", "tcp://"+backend+"/"); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := []string{bin, "proxy", ":" + strconv.Itoa(30000+port%10000), "--no-daemon",
		"--bind-tcp=" + addr,
		"--tcp-auth=sqlite:filename=" + db,
		"--socket-dir=" + sock, "--socket-dirs=" + sock,
		"--mdns=no", "--dbus-proxy=no", "--dbus-control=no", "--html=off", "--ssh=no", "--notifications=no",
	}
	env := []string{"XDG_RUNTIME_DIR=" + dir, "HOME=" + dir}
	p, err := startProc("xpra proxy", filepath.Join(dir, "xpra-proxy.log"), argv, env)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, p, addr, 30*time.Second); err != nil {
		p.stop(3 * time.Second)
		return nil, err
	}
	return &xpraInstance{p: p, addr: addr}, nil
}

func (x *xpraInstance) target() *target {
	return &target{name: "xpra-proxy", addr: x.addr, user: benchUser, pass: benchPass, root: x.p.pid(),
		baseProcs: len(tree(x.p.pid())), stop: func() {}}
}

// selfSigned makes an ECDSA P-256 certificate for localhost/127.0.0.1.
func selfSigned() (certPEM, keyPEM []byte, pool *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), pool, nil
}
