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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
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
	// gen is the generation the client speaks (Gen6: rencodeplus only).
	gen benchpeer.Gen
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

func runCmd(argv ...string) error { return runCmdEnv(nil, argv...) }

// runCmdEnv runs argv with env added to the bench's environment.
func runCmdEnv(env []string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(argv[0]), err, out)
	}
	return nil
}

// fleetDB makes the proxy under test a fleet node: [store] postgres is
// dsn (without the password, which goes in $XPRA_EDGE_PG_PASSWORD as an
// operator would give it), [store] node is node, and logins use the
// postgres auth module.
type fleetDB struct {
	dsn, password, node string
}

// startEdge starts bin with a fresh sqlite database whose one user maps to
// backend, a self-signed certificate and an admin listener with pprof.
// With fl the node is a fleet member instead: the same sqlite file is
// imported into the fleet's users (`xpra-edge pg DSN import`) and the
// listener authenticates with the postgres module.
func startEdge(ctx context.Context, bin, dir, backend string, fl *fleetDB) (*edgeInstance, error) {
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
	var env []string
	authArg := "--tcp-auth=sqlite,filename=" + db
	storeCfg := ""
	if fl != nil {
		env = []string{"XPRA_EDGE_PG_PASSWORD=" + fl.password}
		if err := runCmdEnv(env, bin, "pg", fl.dsn, "import", db); err != nil {
			return nil, fmt.Errorf("import users into PostgreSQL: %w", err)
		}
		authArg = "--tcp-auth=postgres"
		storeCfg = fmt.Sprintf("[store]\npostgres = %q\nnode = %q\n", fl.dsn, fl.node)
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
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[admin]\nbind = %q\npprof = true\n", adminAddr)+storeCfg), 0o600); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := []string{bin, "proxy", ":" + strconv.Itoa(20000+port%10000),
		"--bind-tcp=" + addr,
		authArg,
		"--socket-dir=" + filepath.Join(dir, "sock"),
		"--ssl-cert=" + certFile, "--ssl-key=" + keyFile,
		"--config=" + cfg,
	}
	p, err := startProc("xpra-edge", filepath.Join(dir, "xpra-edge.log"), argv, env)
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

// logStamp is the timestamp before each line of an xpra log.
var logStamp = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+`)

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
	sock, err := instanceSocketDir(dir)
	if err != nil {
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
	return launchXpra(ctx, "xpra proxy", filepath.Join(dir, "xpra-proxy.log"), argv, env, addr)
}

func (x *xpraInstance) target(name string, gen benchpeer.Gen) *target {
	return &target{name: name, addr: x.addr, user: benchUser, pass: benchPass, root: x.p.pid(), gen: gen,
		baseProcs: len(tree(x.p.pid())), stop: func() {}}
}

// xpra6NoInstance starts the skip reason of an xpra6 proxy that
// authenticates the client but cannot start the proxy instance process
// that would relay the session (xpra 6.5.5 as scripts/install-xpra6.sh
// builds it: see docs/BENCHMARKS.md).
const xpra6NoInstance = "xpra6 proxy authenticates but cannot start a proxy instance"

// probeXpra6 logs one 6.x-style session in through the xpra6 proxy and
// says why the scenario cannot run, or "".
func probeXpra6(ctx context.Context, t *target, x *xpraInstance, pool *benchpeer.Pool) string {
	s, err := login(ctx, t, pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err == nil {
		_ = s.Close()
		return ""
	}
	log, _ := os.ReadFile(x.p.log.Name())
	lines := strings.Split(string(log), "\n")
	var why []string
	for i, l := range lines {
		if strings.Contains(l, "Error starting proxy instance process") && i+1 < len(lines) {
			m := logStamp.ReplaceAllString(lines[i+1], "")
			if !slices.Contains(why, m) {
				why = append(why, m)
			}
		}
	}
	if len(why) > 0 {
		return xpra6NoInstance + ": " + strings.Join(why, "; ")
	}
	return "a session through the xpra6 proxy failed: " + err.Error() + ": " + x.p.tail(1000)
}

// isXpraProxy tells the scenarios whose proxy is xpra's (one python
// process per session).
func isXpraProxy(name string) bool { return name == "xpra-proxy" || name == "xpra6-proxy" }

// startXpra6 starts xpra 6.x's `xpra proxy` (through its wrapper bin) with
// multifile auth, whose one user maps to backend. As for 3.1.3 the
// instance processes run as nobody; 6.x has no --dbus-proxy and no sqlite
// tool the bench could call, so the user is a line of a multifile password
// file (username|password|uid|gid|displays|env|session options).
func startXpra6(ctx context.Context, bin, dir, backend string) (*xpraInstance, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("xpra6: %w", err)
	}
	sock, err := instanceSocketDir(dir)
	if err != nil {
		return nil, err
	}
	users := filepath.Join(dir, "users.txt")
	line := fmt.Sprintf("%s|%s|nobody|nogroup|tcp://%s/||\n", benchUser, benchPass, backend)
	if err := os.WriteFile(users, []byte(line), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := []string{bin, "proxy", ":" + strconv.Itoa(40000+port%10000), "--daemon=no",
		"--bind-tcp=" + addr,
		"--tcp-auth=multifile:filename=" + users,
		"--socket-dir=" + sock, "--socket-dirs=" + sock,
		// not --audio=no, --webcam=no and the like: 6.5.5 then blocks
		// those python packages, and the instance process that imports
		// them anyway fails to start
		"--mdns=no", "--dbus-control=no", "--html=off", "--systemd-run=no",
	}
	// 6.x makes its runtime directory itself and refuses one that others
	// can read (dir is 0755 for the instance processes)
	env := []string{"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"), "HOME=" + dir}
	return launchXpra(ctx, "xpra6 proxy", filepath.Join(dir, "xpra6-proxy.log"), argv, env, addr)
}

// instanceSocketDir makes DIR/sock, where xpra's proxy instance processes
// (they run as nobody) make their control sockets, reachable for them.
func instanceSocketDir(dir string) (string, error) {
	sock := filepath.Join(dir, "sock")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		return "", err
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return "", err
		}
	}
	return sock, os.Chmod(sock, 0o1777)
}

// launchXpra starts an xpra proxy and waits until it listens on addr.
func launchXpra(ctx context.Context, name, logPath string, argv, env []string, addr string) (*xpraInstance, error) {
	p, err := startProc(name, logPath, argv, env)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, p, addr, 30*time.Second); err != nil {
		p.stop(3 * time.Second)
		return nil, err
	}
	return &xpraInstance{p: p, addr: addr}, nil
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
