package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/pebbletest"
	"github.com/xpra-edge/xpra-edge/internal/wsconn"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Issue #4: one port takes tcp, ssl, ws and wss from the real xpra 3.1.3
// client and xpra's HTML5 client from a browser; SNI and WebSocket paths
// pick backends; certificates come from a real ACME CA (Pebble) through
// the proxy's own port; slow clients are cut at the sniff deadline.

// Host names of the SNI routes; pebbletest's zone, which nothing outside
// the tests resolves: clients dial 127.0.0.1 and send the name as SNI.
var (
	hostA = pebbletest.Name("a")
	hostB = pebbletest.Name("b")
)

// backendPair is two real xpra servers whose xterm windows carry different
// titles, so a client can tell which one it reached from the window alone.
type backendPair struct {
	a, b *xpratest.Server
	gen  xpratest.Gen // of the servers, and of the clients the tests attach
}

const (
	titleA = "edge-backend-a"
	titleB = "edge-backend-b"
)

func startBackendPair(t *testing.T) backendPair { return startBackendPairGen(t, xpratest.Xpra3) }

func startBackendPairGen(t *testing.T, gen xpratest.Gen) backendPair {
	t.Helper()
	xpratest.RequirePeers(t, gen.String(), "Xvfb", "xterm")
	return backendPair{
		a:   xpratest.StartServer(t, xpratest.ServerOptions{Gen: gen, BindTCP: xpratest.FreeTCPAddr(t), Start: "xterm -T " + titleA}),
		b:   xpratest.StartServer(t, xpratest.ServerOptions{Gen: gen, BindTCP: xpratest.FreeTCPAddr(t), Start: "xterm -T " + titleB}),
		gen: gen,
	}
}

// oneport is a proxy with a self-signed development CA on one port: user
// foo (password bar) whose own session is backend a, SNI routes hostA ->
// a and hostB -> b, and path routes /desk-a -> a and /desk-b -> b; user
// two (password pw2) has both sessions and must name one.
type oneport struct {
	*proxy
	caFile string
	ctlDir string
	be     backendPair
}

const (
	tlsUser     = "foo"
	tlsPassword = "bar"
	twoUser     = "two"
	twoPassword = "pw2"
)

func startOnePort(t *testing.T, be backendPair, extra string) *oneport {
	t.Helper()
	dir := t.TempDir()
	addr := xpratest.FreeTCPAddr(t)
	state := filepath.Join(dir, "tls")
	ctl := filepath.Join(dir, "ctl")
	cfg := fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "toml"

[[listener]]
bind = %q

[tls]
mode = "self-signed"
state_dir = %q
domains = [%q, %q]

[[user]]
name = %q
password = %q
displays = ["tcp://%s/"]

[[user]]
name = %q
password = %q
displays = ["tcp://%s/%d", "tcp://%s/%d"]

[[route]]
name = "sni-a"
host = %q
targets = ["tcp://%s/"]

[[route]]
name = "sni-b"
host = %q
targets = ["tcp://%s/"]

[[route]]
name = "path-a"
path_prefix = "/desk-a"
targets = ["tcp://%s/"]

[[route]]
name = "path-b"
path_prefix = "/desk-b"
targets = ["tcp://%s/"]

[bans]
max_failures = 0
%s`, xpratest.FreeDisplay(t), ctl, addr, state, hostA, hostB, tlsUser, tlsPassword, be.a.TCPAddr,
		twoUser, twoPassword, be.a.TCPAddr, be.a.DisplayNum, be.b.TCPAddr, be.b.DisplayNum, hostA, be.a.TCPAddr, hostB, be.b.TCPAddr, be.a.TCPAddr, be.b.TCPAddr, extra)
	p := startProxy(t, addr, "--config="+writeFile(t, filepath.Join(dir, "edge.toml"), cfg))
	op := &oneport{proxy: p, caFile: filepath.Join(state, "ca.pem"), ctlDir: ctl, be: be}
	if _, err := os.Stat(op.caFile); err != nil {
		out, _ := exec.Command("ss", "-tanp").CombinedOutput()
		t.Fatalf("self-signed CA not written: %v (sockets on the port of %s: %q)", err, addr, grepLines(string(out), strings.Split(addr, ":")[1]))
	}
	return op
}

// attachSees attaches the real xpra client to url and waits for the xterm
// of the backend titled want; it fails the test otherwise.
func attachSees(t *testing.T, url, want string, args ...string) *xpratest.Client {
	t.Helper()
	return attachSeesGen(t, xpratest.Xpra3, url, want, args...)
}

// attachSeesGen is attachSees with a client of generation gen.
func attachSeesGen(t *testing.T, gen xpratest.Gen, url, want string, args ...string) *xpratest.Client {
	t.Helper()
	c := xpratest.Attach(t, url, xpratest.ClientOptions{Gen: gen, Args: args})
	if err := c.WaitOutput(xpratest.AttachedLine, attachTimeout); err != nil {
		t.Fatalf("xpra attach %s: %v\n%s", redact(url), err, c.Output())
	}
	w, err := c.WaitWindowInfo("xterm", attachTimeout)
	if err != nil {
		t.Fatalf("xpra attach %s: xterm window: %v\n%s", redact(url), err, c.Output())
	}
	// The client shows "TITLE on URL"; the title may arrive just after
	// the window is mapped.
	is := func(w xpratest.Window) bool { return w.Title == want || strings.HasPrefix(w.Title, want+" on ") }
	deadline := time.Now().Add(10 * time.Second)
	for !is(w) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if w, err = c.WaitWindowInfo("xterm", time.Second); err != nil {
			break
		}
	}
	if !is(w) {
		t.Fatalf("xpra attach %s reached the window %q, want %q", redact(url), w.Title, want)
	}
	return c
}

func redact(url string) string { return strings.Replace(url, ":"+tlsPassword+"@", ":***@", 1) }

// TestEdgeOnePort: one proxy port with a self-signed development CA in
// front of two real xpra servers, shared by the subtests.
func TestEdgeOnePort(t *testing.T) {
	be := startBackendPair(t)
	op := startOnePort(t, be, "")
	t.Run("transports", func(t *testing.T) { testTransports(t, op) })
	t.Run("routing", func(t *testing.T) { testRouting(t, op) })
	t.Run("html5", func(t *testing.T) { testHTML5(t, op) })
	t.Run("slow-clients", func(t *testing.T) { testSlowClients(t, be) })
	t.Run("strict-routing", func(t *testing.T) { testStrictRouting(t, be) })
	t.Run("proxy-header-split", func(t *testing.T) { testProxyHeaderSplit(t, be) })
	t.Run("unauthenticated-limit", func(t *testing.T) { testUnauthenticatedLimit(t, be) })
}

// testUnauthenticatedLimit: [limits] max_unauthenticated counts clients
// that have not logged in yet however they came: silent WebSocket clients
// (upgraded, no hello) fill it like silent xpra clients do, a further
// client is refused meanwhile, and one gets in once they are gone.
func testUnauthenticatedLimit(t *testing.T, be backendPair) {
	op := startOnePort(t, be, "\n[limits]\nmax_unauthenticated = 3\n")
	roots := caPool(t, op.caFile)
	var silent []net.Conn
	for range 3 {
		silent = append(silent, dialWS(t, op.addr, "", "/", roots))
	}
	// The three hold every slot: a fourth client, xpra over TLS, is refused.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", op.addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: roots})
	if err == nil {
		_, err = goLogin(c, tlsUser, tlsPassword)
		c.Close()
	}
	if err == nil {
		t.Fatal("a fourth client logged in while three silent WebSocket clients held max_unauthenticated = 3")
	}
	if !op.waitLog("too many unauthenticated connections", 5*time.Second) {
		t.Errorf("the proxy did not log the refusal; the fourth client got: %v", err)
	}
	for _, c := range silent {
		c.Close()
	}
	// Once they are gone, a client gets in (bounded retries while the
	// proxy notices the closes).
	var last error
	for i := 0; i < 50; i++ {
		var c net.Conn
		if c, last = dialWSErr(op.addr, "", "/", roots); last == nil {
			_, last = goLogin(c, tlsUser, tlsPassword)
			c.Close()
		}
		if last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("no login after the silent clients left: %v", last)
	}
}

// splitConn sends a PROXY v1 header with the first byte of what the
// client writes, then, 200 ms later, everything else written meanwhile in
// one piece: how a balancer that sends its header at once forwards a
// client's bytes as they come.
type splitConn struct {
	net.Conn
	header string

	mu      sync.Mutex
	started bool
	flushed bool
	pending []byte
}

func (c *splitConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.flushed || len(p) == 0:
		return c.Conn.Write(p)
	case !c.started:
		c.started = true
		if _, err := c.Conn.Write(append([]byte(c.header), p[0])); err != nil {
			return 0, err
		}
		c.pending = append(c.pending, p[1:]...)
		time.AfterFunc(200*time.Millisecond, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.flushed = true
			_, _ = c.Conn.Write(c.pending)
		})
	default:
		c.pending = append(c.pending, p...)
	}
	return len(p), nil
}

// testProxyHeaderSplit: behind a trusted PROXY-protocol balancer, a
// client whose bytes arrive split after the header is sniffed right, in
// the clear and over TLS, and logs in with its real address.
func testProxyHeaderSplit(t *testing.T, be backendPair) {
	dir := t.TempDir()
	addr := xpratest.FreeTCPAddr(t)
	state := filepath.Join(dir, "tls")
	cfg := fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "toml"

[[listener]]
bind = %q
proxy_protocol_from = ["127.0.0.1/32"]

[tls]
mode = "self-signed"
state_dir = %q

[[user]]
name = %q
password = %q
displays = ["tcp://%s/"]
`, xpratest.FreeDisplay(t), filepath.Join(dir, "ctl"), addr, state, tlsUser, tlsPassword, be.a.TCPAddr)
	p := startProxy(t, addr, "--config="+writeFile(t, filepath.Join(dir, "edge.toml"), cfg))
	for i, overTLS := range []bool{false, true} {
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		real := fmt.Sprintf("192.0.2.%d", 10+i)
		var c net.Conn = &splitConn{Conn: raw, header: "PROXY TCP4 " + real + " 127.0.0.1 40000 443\r\n"}
		if overTLS {
			tc := tls.Client(c, &tls.Config{ServerName: "127.0.0.1", RootCAs: caPool(t, filepath.Join(state, "ca.pem"))})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake after a split PROXY header: %v", err)
			}
			c = tc
		}
		loginSees(t, c, be.a)
		if !p.waitLog("remote="+real, 5*time.Second) {
			t.Errorf("the proxy did not log the real client %s", real)
		}
	}
}

// testStrictRouting: with [routing] strict = true, a host name or path no
// route names reaches nothing, not even the user's own session, while the
// routed names and paths still work.
func testStrictRouting(t *testing.T, be backendPair) {
	op := startOnePort(t, be, "\n[routing]\nstrict = true\n")
	roots := caPool(t, op.caFile)
	login := func(t *testing.T, c net.Conn) (string, error) {
		defer c.Close()
		caps, err := goLogin(c, tlsUser, tlsPassword)
		if err != nil {
			return "", err
		}
		d, _ := caps.Str("display")
		return d, nil
	}
	tlsTo := func(t *testing.T, host string) net.Conn {
		// the development certificate does not name unknown hosts:
		// routing, not verification, is under test for those
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", op.addr,
			&tls.Config{ServerName: host, RootCAs: roots, InsecureSkipVerify: host == pebbletest.Name("c")})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		conn func(t *testing.T) net.Conn
		want *xpratest.Server // nil: refused
	}{
		{"sni-b", func(t *testing.T) net.Conn { return tlsTo(t, hostB) }, be.b},
		{"sni-unknown", func(t *testing.T) net.Conn { return tlsTo(t, pebbletest.Name("c")) }, nil},
		{"no-sni", func(t *testing.T) net.Conn { return tlsTo(t, "127.0.0.1") }, nil},
		{"plain-tcp", func(t *testing.T) net.Conn {
			c, err := net.DialTimeout("tcp", op.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, nil},
		{"path-a-wss", func(t *testing.T) net.Conn { return dialWS(t, op.addr, "", "/desk-a", roots) }, be.a},
		{"path-unknown-wss", func(t *testing.T) net.Conn { return dialWS(t, op.addr, "", "/elsewhere", roots) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := login(t, tc.conn(t))
			switch {
			case tc.want != nil && err != nil:
				t.Fatalf("login: %v", err)
			case tc.want != nil && d != tc.want.Display:
				t.Fatalf("reached display %q, want %q", d, tc.want.Display)
			case tc.want == nil && err == nil:
				t.Fatalf("strict routing let an unrouted connection reach display %q", d)
			case tc.want == nil:
				var de *xpraclient.DisconnectError
				if !errors.As(err, &de) || !strings.Contains(strings.Join(de.Reasons, " "), "session not found") {
					t.Fatalf("refused with %v, want a \"session not found\" disconnect", err)
				}
			}
		})
	}
}

// testTransports: the real xpra 3.1.3 client attaches through one proxy
// port with tcp://, ssl:// (verifying the development CA), ws:// and
// wss://, and the xterm of the user's session reaches it each time.
func testTransports(t *testing.T, op *oneport) {
	ca := "--ssl-ca-certs=" + op.caFile
	for _, tc := range []struct {
		scheme string
		args   []string
	}{
		{"tcp", nil},
		{"ssl", []string{ca}},
		{"ws", nil},
		{"wss", []string{ca}},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			url := tc.scheme + "://" + tlsUser + ":" + tlsPassword + "@" + op.addr + "/"
			began := time.Now()
			c := attachSeesGen(t, op.be.gen, url, titleA, tc.args...)
			t.Logf("%s: xterm of the user's session after %v", tc.scheme, time.Since(began).Round(time.Millisecond))
			c.Stop()
		})
	}
	// Without the CA the client refuses the self-signed certificate: the
	// ssl test above really verified it.
	t.Run("ssl-unverified", func(t *testing.T) {
		c := xpratest.Attach(t, "ssl://"+tlsUser+":"+tlsPassword+"@"+op.addr+"/", xpratest.ClientOptions{Gen: op.be.gen})
		code, err := c.Wait(30 * time.Second)
		if err != nil || code == 0 || strings.Contains(c.Output(), xpratest.AttachedLine) {
			t.Fatalf("attached without trusting the CA: exit %d, %v\n%s", code, err, c.Output())
		}
		if !strings.Contains(strings.ToLower(c.Output()), "certificate") {
			t.Errorf("no certificate error shown:\n%s", c.Output())
		}
	})
	// A wrong password over wss is refused.
	t.Run("wss-wrong-password", func(t *testing.T) {
		c := xpratest.Attach(t, "wss://"+tlsUser+":nope@"+op.addr+"/", xpratest.ClientOptions{Gen: op.be.gen, Args: []string{ca}})
		code, err := c.Wait(30 * time.Second)
		if err != nil || code == 0 || strings.Contains(c.Output(), xpratest.AttachedLine) {
			t.Fatalf("wrong password over wss: exit %d, %v\n%s", code, err, c.Output())
		}
		if !strings.Contains(c.Output(), "authentication failed") {
			t.Errorf("wrong password over wss: the client was not told why (exit %d):\n%s", code, c.Output())
		}
	})
}

// testRouting: on one port, the TLS server name picks the backend (the
// real xpra client's --ssl-server-hostname sends it while it dials
// 127.0.0.1), and so does the WebSocket path.
func testRouting(t *testing.T, op *oneport) {
	be := op.be
	ca := "--ssl-ca-certs=" + op.caFile
	creds := tlsUser + ":" + tlsPassword + "@"
	for _, tc := range []struct {
		name, url, want string
		args            []string
	}{
		{"sni-a", "ssl://" + creds + op.addr + "/", titleA, []string{ca, "--ssl-server-hostname=" + hostA}},
		{"sni-b", "ssl://" + creds + op.addr + "/", titleB, []string{ca, "--ssl-server-hostname=" + hostB}},
		{"sni-b-wss", "wss://" + creds + op.addr + "/", titleB, []string{ca, "--ssl-server-hostname=" + hostB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := attachSeesGen(t, be.gen, tc.url, tc.want, tc.args...)
			// xpra's own info on the session's control socket names the
			// backend the proxy chose.
			target := be.a.TCPAddr
			if tc.want == titleB {
				target = be.b.TCPAddr
			}
			if info := newestSessionInfo(t, op); !strings.Contains(info, "proxy.target=tcp://"+target+"\n") {
				t.Errorf("xpra info of the session lacks proxy.target=tcp://%s:\n%s", target, strings.Join(grepLines(info, "proxy."), "\n"))
			}
			c.Stop()
		})
	}
	// WebSocket paths, from the Go WebSocket and request clients: the
	// backend's own hello names its display.
	for _, tc := range []struct {
		name, path string
		tls        bool
		want       *xpratest.Server
	}{
		{"path-a-wss", "/desk-a", true, be.a},
		{"path-b-wss", "/desk-b", true, be.b},
		{"path-b-ws", "/desk-b/sub?x=1", false, be.b},
		{"path-none-wss", "/", true, be.a}, // no route: the user's own session
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, op.addr, "", tc.path, rootsIf(tc.tls, caPool(t, op.caFile)))
			defer c.Close()
			_, caps, err := goLoginConnEnc(c, helloEncoding(be.gen), tlsUser, tlsPassword)
			if err != nil {
				t.Fatalf("login over ws %s: %v", tc.path, err)
			}
			if d, _ := caps.Str("display"); d != tc.want.Display {
				t.Fatalf("ws %s reached display %q, want %q (%s)", tc.path, d, tc.want.Display, tc.want.TCPAddr)
			}
		})
	}
	// The real xpra client sends its URL path as the WebSocket path and as
	// the display of its hello; the path route still picks the backend.
	for _, tc := range []struct {
		name, url, want string
		args            []string
	}{
		{"path-a-wss-xpra-client", "wss://" + creds + op.addr + "/desk-a", titleA, []string{ca}},
		{"path-b-wss-xpra-client", "wss://" + creds + op.addr + "/desk-b", titleB, []string{ca}},
		{"path-b-ws-xpra-client", "ws://" + creds + op.addr + "/desk-b", titleB, nil},
		// no route for the path: the display in the URL picks the session
		{"display-b-wss-xpra-client", "wss://" + twoUser + ":" + twoPassword + "@" + op.addr + "/" + strconv.Itoa(be.b.DisplayNum), titleB, []string{ca}},
		{"display-a-ssl-xpra-client", "ssl://" + twoUser + ":" + twoPassword + "@" + op.addr + "/" + strconv.Itoa(be.a.DisplayNum), titleA, []string{ca}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := attachSeesGen(t, be.gen, tc.url, tc.want, tc.args...)
			c.Stop()
		})
	}
	// The Go TLS and request clients: the certificate names the host asked
	// for, and the backend's own hello names the display behind it.
	for _, tc := range []struct {
		host string
		want *xpratest.Server
	}{{hostA, be.a}, {hostB, be.b}} {
		t.Run("sni-go-"+tc.host, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", op.addr, &tls.Config{ServerName: tc.host, RootCAs: caPool(t, op.caFile)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if leaf := c.ConnectionState().PeerCertificates[0]; !slices.Contains(leaf.DNSNames, tc.host) {
				t.Errorf("certificate for %v", leaf.DNSNames)
			}
			_, caps, err := goLoginConnEnc(c, helloEncoding(be.gen), tlsUser, tlsPassword)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if d, _ := caps.Str("display"); d != tc.want.Display {
				t.Fatalf("SNI %s reached display %q, want %q", tc.host, d, tc.want.Display)
			}
		})
	}
}

// newestSessionInfo runs `xpra list` on the proxy's control directory and
// returns `xpra info` of the newest relayed session (:proxy-N, highest N).
func newestSessionInfo(t *testing.T, op *oneport) string {
	t.Helper()
	out, code := xpratest.RunGen(t, op.be.gen, 30*time.Second, "list", "--socket-dirs="+op.ctlDir)
	if code != 0 {
		t.Fatalf("xpra list: exit %d\n%s", code, out)
	}
	newest := 0
	for _, l := range grepLines(out, "LIVE session at :proxy-") {
		var n int
		if _, err := fmt.Sscanf(l[strings.Index(l, ":proxy-"):], ":proxy-%d", &n); err == nil && n > newest {
			newest = n
		}
	}
	if newest == 0 {
		t.Fatalf("xpra list shows no relayed session:\n%s", out)
	}
	out, code = xpratest.RunGen(t, op.be.gen, 30*time.Second, "info", fmt.Sprintf(":proxy-%d", newest), "--socket-dirs="+op.ctlDir)
	if code != 0 {
		t.Fatalf("xpra info :proxy-%d: exit %d\n%s", newest, code, out)
	}
	return out
}

// rootsIf returns roots when tls is set, else nil (plain ws).
func rootsIf(tls bool, roots *x509.CertPool) *x509.CertPool {
	if tls {
		return roots
	}
	return nil
}

// dialWS opens a WebSocket to addr at path: over TLS with SNI host (may be
// empty) verified against roots, or plain when roots is nil.
func dialWS(t *testing.T, addr, host, path string, roots *x509.CertPool) net.Conn {
	t.Helper()
	ws, err := dialWSErr(addr, host, path, roots)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// dialWSErr is dialWS returning its error (for retries: the proxy may
// still hold the slots of clients that have just closed).
func dialWSErr(addr, host, path string, roots *x509.CertPool) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var c net.Conn = raw
	if roots != nil {
		tc := tls.Client(raw, &tls.Config{ServerName: host, RootCAs: roots})
		if host == "" {
			tc = tls.Client(raw, &tls.Config{ServerName: "127.0.0.1", RootCAs: roots})
		}
		c = tc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := wsconn.Dial(ctx, c, addr, path)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("websocket %s: %w", path, err)
	}
	return ws, nil
}

// caPool reads a PEM file of roots.
func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", file)
	}
	return pool
}

// goLogin logs in as user over c with the Go request client and returns
// the hello that comes back (the backend's, relayed by the proxy).
func goLogin(c net.Conn, user, password string) (xprawire.Caps, error) {
	_, caps, err := goLoginConn(c, user, password)
	return caps, err
}

// goLoginConn is goLogin returning the client, to read on from it (a new
// client over c would lose what the first one buffered).
func goLoginConn(c net.Conn, user, password string) (*xpraclient.Conn, xprawire.Caps, error) {
	return goLoginConnEnc(c, xprawire.Rencode, user, password)
}

// helloEncoding is the packet encoding a client of generation gen starts
// with: rencode for 3.1.3, rencodeplus (the only one it has) for 6.x.
func helloEncoding(gen xpratest.Gen) xprawire.Encoding {
	if gen == xpratest.Xpra6 {
		return xprawire.RencodePlus
	}
	return xprawire.Rencode
}

func goLoginConnEnc(c net.Conn, enc xprawire.Encoding, user, password string) (*xpraclient.Conn, xprawire.Caps, error) {
	xc := xpraclient.New(c, enc)
	caps := xpraclient.BaseCaps(user)
	// what a real xpra server needs to accept a client
	caps.Set("encodings", []any{"rgb24", "rgb32", "png"})
	caps.Set("encoding", "rgb24")
	hello, err := xc.Hello(caps, []byte(password), true, false, 20*time.Second)
	return xc, hello, err
}

// testHTML5: xpra's HTML5 client from Debian's package, served by the
// proxy itself (its default web root), in headless chromium, connects over
// wss through the proxy to a real xpra server and draws the xterm; the
// ?path= parameter routes it like any WebSocket path; a wrong password
// shows the failure in the page.
//
// Chromium runs with IgnoreCertErrors: the harness has no option to trust
// one CA. The xpra client tests above verify the same certificate.
func testHTML5(t *testing.T, op *oneport) {
	xpratest.RequirePeers(t, "chromium")
	if _, err := os.Stat("/usr/share/xpra/www/index.html"); err != nil {
		xpratest.RequirePeers(t, "xpra-html5 (/usr/share/xpra/www)")
	}
	t.Run("files", func(t *testing.T) {
		want, err := os.ReadFile("/usr/share/xpra/www/index.html")
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: caPool(t, op.caFile)},
		}}
		for _, u := range []string{"https://" + op.addr + "/index.html", "http://" + op.addr + "/index.html", "https://" + op.addr + "/healthz"} {
			resp, err := client.Get(u)
			if err != nil {
				t.Fatalf("GET %s: %v", u, err)
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s %v", u, resp.Status, err)
			}
			switch {
			case strings.HasSuffix(u, "/healthz"):
				if string(body) != "ok\n" {
					t.Errorf("GET %s: %q", u, body)
				}
			case string(body) != string(want):
				t.Errorf("GET %s: not Debian's HTML5 client page (%d bytes)", u, len(body))
			}
			if hsts := resp.Header.Get("Strict-Transport-Security"); strings.HasPrefix(u, "https:") != (hsts != "") {
				t.Errorf("GET %s: Strict-Transport-Security %q", u, hsts)
			}
		}
	})
	page := "https://" + op.addr + "/index.html?username=" + tlsUser + "&ssl=1&password="
	opts := xpratest.BrowserOptions{IgnoreCertErrors: true, Lifetime: 2 * time.Minute}
	for _, tc := range []struct {
		name, query, want string
	}{
		{"own-session", "", titleA},
		{"path-b", "&path=/desk-b", titleB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			b := xpratest.OpenHTML5With(t, page+tlsPassword+tc.query, opts)
			if err := b.WaitDrawn(60 * time.Second); err != nil {
				t.Fatalf("%v\npage: %q", err, b.PageText())
			}
			t.Logf("HTML5 client drew the xterm %v after opening the page", time.Since(began).Round(time.Millisecond))
			if text := b.PageText(); !strings.Contains(text, tc.want) {
				t.Errorf("page does not show the window %q of the expected backend: %q", tc.want, text)
			}
			// The screenshot shows the xterm drawn: where its canvas is, a
			// white terminal with black text (xterm's bitmap font has no
			// other colours) over the page's dark blue background.
			var r struct{ X, Y, W, H float64 }
			if err := b.Eval(`(() => { const c = document.querySelector("div.window canvas").getBoundingClientRect();
				return {X: c.x, Y: c.y, W: c.width, H: c.height}; })()`, &r); err != nil {
				t.Fatal(err)
			}
			shot := filepath.Join(t.ArtifactDir(), "html5.png") // kept with go test -artifacts
			if err := b.Screenshot(shot); err != nil {
				t.Fatal(err)
			}
			img := readPNG(t, shot)
			rect := image.Rect(int(r.X), int(r.Y), int(r.X+r.W), int(r.Y+r.H))
			if rect.Dx() < 100 || rect.Dy() < 50 {
				t.Fatalf("xterm canvas is %v", rect)
			}
			if n := xpratest.DistinctColors(img, rect, 1, 64); n < 2 {
				t.Errorf("the xterm's area of the screenshot %v has %d colour(s): not drawn", rect, n)
			}
			white, black := 0, 0
			for y := rect.Min.Y; y < rect.Max.Y; y++ {
				for x := rect.Min.X; x < rect.Max.X; x++ {
					switch c := img.RGBAAt(x, y); {
					case c.R > 240 && c.G > 240 && c.B > 240:
						white++
					case c.R < 16 && c.G < 16 && c.B < 16:
						black++
					}
				}
			}
			if area := rect.Dx() * rect.Dy(); white < area/2 || black < 20 {
				t.Errorf("the xterm's area %v of the screenshot (%s) has %d white and %d black pixels of %d: not a drawn terminal", rect, shot, white, black, area)
			}
			if bg := img.RGBAAt(rect.Max.X+20, rect.Max.Y+20); bg.R > 240 && bg.G > 240 && bg.B > 240 {
				t.Errorf("the page around the window is white too (%v): the screenshot proves nothing", bg)
			}
			b.Close()
		})
	}
	// A user with two sessions names one with ?display=, or is told to.
	twoPage := "https://" + op.addr + "/index.html?username=" + twoUser + "&ssl=1&password=" + twoPassword
	t.Run("display-param", func(t *testing.T) {
		b := xpratest.OpenHTML5With(t, twoPage+"&display="+strconv.Itoa(op.be.b.DisplayNum), opts)
		if err := b.WaitDrawn(60 * time.Second); err != nil {
			t.Fatalf("%v\npage: %q", err, b.PageText())
		}
		if text := b.PageText(); !strings.Contains(text, titleB) {
			t.Errorf("page does not show the window %q of the display asked for: %q", titleB, text)
		}
	})
	t.Run("no-display", func(t *testing.T) {
		b := xpratest.OpenHTML5With(t, twoPage, opts)
		err := b.WaitDrawn(30 * time.Second)
		if !errors.Is(err, xpratest.ErrDisconnected) || !strings.Contains(err.Error(), "please specify a display") {
			t.Fatalf("two sessions, no display: %v; page: %q", err, b.PageText())
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		b := xpratest.OpenHTML5With(t, page+"nope", opts)
		err := b.WaitDrawn(30 * time.Second)
		if !errors.Is(err, xpratest.ErrDisconnected) {
			t.Fatalf("wrong password: %v, want %v; page: %q", err, xpratest.ErrDisconnected, b.PageText())
		}
		t.Logf("page shows: %v", err)
		if !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("the page does not say authentication failed: %v", err)
		}
	})
}

// readPNG decodes a PNG file into RGBA.
func readPNG(t *testing.T, path string) *image.RGBA {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	img := image.NewRGBA(src.Bounds())
	draw.Draw(img, img.Bounds(), src, src.Bounds().Min, draw.Src)
	return img
}

// loginSees logs in as foo over c and checks that the backend's hello
// names want's display.
func loginSees(t *testing.T, c net.Conn, want *xpratest.Server) *xpraclient.Conn {
	t.Helper()
	xc, caps, err := goLoginConn(c, tlsUser, tlsPassword)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if d, _ := caps.Str("display"); d != want.Display {
		t.Fatalf("reached display %q, want %q", d, want.Display)
	}
	return xc
}

// testSlowClients: a second proxy with [limits] sniff_timeout = "1s" cuts
// clients that send nothing, dribble a TLS handshake, or finish the
// handshake and then stay silent, at that deadline, while a client that
// speaks logs in meanwhile.
func testSlowClients(t *testing.T, be backendPair) {
	const sniff = time.Second
	const login = 2 * time.Second
	// Many slow clients from one address: above the per-address limit of
	// unauthenticated connections (8), which is not what this tests.
	op := startOnePort(t, be, "\n[limits]\nsniff_timeout = \"1s\"\nlogin_timeout = \"2s\"\nmax_unauthenticated_per_ip = 64\n")
	roots := caPool(t, op.caFile)
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", op.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	type slow struct {
		name   string
		c      net.Conn
		opened time.Time
		done   chan time.Duration // how long until the proxy closed it
	}
	var slows []*slow
	watch := func(name string, c net.Conn, opened time.Time) {
		s := &slow{name: name, c: c, opened: opened, done: make(chan time.Duration, 1)}
		slows = append(slows, s)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * sniff))
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						s.done <- -1
					} else {
						s.done <- time.Since(s.opened)
					}
					return
				}
			}
		}()
	}

	// Ten clients that connect and say nothing.
	for i := range 10 {
		opened := time.Now()
		watch(fmt.Sprintf("silent-%d", i), dial(), opened)
	}
	// A client that sends a TLS record header and part of a ClientHello,
	// then one byte every 200 ms (never finishing within the deadline).
	opened := time.Now()
	dribbler := dial()
	if _, err := dribbler.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}); err != nil {
		t.Fatal(err)
	}
	stopDribble := make(chan struct{})
	defer close(stopDribble)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for range 50 {
			select {
			case <-stopDribble:
				return
			case <-tick.C:
				if _, err := dribbler.Write([]byte{0x42}); err != nil {
					return
				}
			}
		}
	}()
	watch("tls-dribbler", dribbler, opened)
	// A client that completes the TLS handshake and then sends nothing.
	opened = time.Now()
	hs := tls.Client(dial(), &tls.Config{ServerName: "127.0.0.1", RootCAs: roots})
	if err := hs.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	watch("tls-then-silent", hs, opened)

	// Clients that send the first bytes of a protocol and then nothing:
	// one xpra 'P', the start of an HTTP request line, and the same inside
	// TLS. Both protocols need more than these to be told apart.
	for _, start := range []string{"P", "GE", "OPTIO"} {
		opened := time.Now()
		c := dial()
		if _, err := c.Write([]byte(start)); err != nil {
			t.Fatal(err)
		}
		watch("partial-"+start, c, opened)
	}
	opened = time.Now()
	hsG := tls.Client(dial(), &tls.Config{ServerName: "127.0.0.1", RootCAs: roots})
	if _, err := hsG.Write([]byte("G")); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	watch("tls-then-partial-G", hsG, opened)

	// HTTP clients that send a request line, then dribble header lines
	// that never end, in the clear and inside TLS.
	for _, overTLS := range []bool{false, true} {
		opened := time.Now()
		var c net.Conn = dial()
		name := "http-header-dribbler"
		if overTLS {
			c = tls.Client(c, &tls.Config{ServerName: "127.0.0.1", RootCAs: roots})
			name = "https-header-dribbler"
		}
		if _, err := c.Write([]byte("GET /index.html HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		go func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for i := range 50 {
				select {
				case <-stopDribble:
					return
				case <-tick.C:
					if _, err := fmt.Fprintf(c, "X-%d: y\r\n", i); err != nil {
						return
					}
				}
			}
		}()
		watch(name, c, opened)
	}

	// A WebSocket client that upgrades and then sends no hello is past
	// sniffing: the login deadline cuts it (the proxy then drains the
	// connection for up to 1 s so a client can read why it was refused).
	wsOpened := time.Now()
	silentWS := dialWS(t, op.addr, "", "/", roots)
	defer silentWS.Close()
	wsDone := make(chan time.Duration, 1)
	go func() {
		_ = silentWS.SetReadDeadline(time.Now().Add(5 * login))
		buf := make([]byte, 512)
		for {
			if _, err := silentWS.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					wsDone <- -1
				} else {
					wsDone <- time.Since(wsOpened)
				}
				return
			}
		}
	}()

	// Meanwhile a client that speaks logs in over TLS.
	began := time.Now()
	good, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", op.addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: roots})
	if err != nil {
		t.Fatalf("a client that speaks could not connect: %v", err)
	}
	defer good.Close()
	goodXC := loginSees(t, good, be.a)
	// So does one over wss, and an HTTPS client fetches a file over a
	// connection it keeps open.
	wss := dialWS(t, op.addr, "", "/desk-b", roots)
	defer wss.Close()
	wssXC := loginSees(t, wss, be.b)
	keep, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", op.addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	keepR := bufio.NewReader(keep)
	getHealth := func(when string) {
		_ = keep.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := keep.Write([]byte("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
			t.Fatalf("keep-alive GET %s: %v", when, err)
		}
		resp, err := http.ReadResponse(keepR, nil)
		if err != nil {
			t.Fatalf("keep-alive GET %s: %v", when, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("keep-alive GET %s: %s", when, resp.Status)
		}
	}
	getHealth("first")
	if d := time.Since(began); d >= sniff {
		t.Logf("note: the good login took %v, longer than the sniff deadline", d)
	}
	for _, s := range slows {
		if d := <-s.done; d < 0 {
			t.Errorf("%s: still open %v after connecting; sniff_timeout is %v", s.name, 10*sniff, sniff)
		} else if d < sniff-200*time.Millisecond || d > 2*sniff {
			t.Errorf("%s: closed after %v, want about %v", s.name, d, sniff)
		} else {
			t.Logf("%s: closed after %v", s.name, d.Round(time.Millisecond))
		}
	}
	switch d := <-wsDone; {
	case d < 0:
		t.Errorf("silent WebSocket client: still open %v after the upgrade; login_timeout is %v", 5*login, login)
	case d < login-300*time.Millisecond || d > login+1500*time.Millisecond:
		t.Errorf("silent WebSocket client: closed after %v, want %v (+ up to 1 s of draining)", d, login)
	default:
		t.Logf("silent WebSocket client: closed after %v", d.Round(time.Millisecond))
	}
	// Past the deadline, the logged-in clients (xpra over TLS, over wss)
	// and the kept-open HTTPS connection still work: the sniff deadline
	// ends with sniffing.
	if d := time.Since(began); d < sniff+200*time.Millisecond {
		time.Sleep(sniff + 200*time.Millisecond - d)
	}
	for name, xc := range map[string]*xpraclient.Conn{"ssl": goodXC, "wss": wssXC} {
		if err := xc.Send(xprawire.Packet{"ping", int64(1)}); err != nil {
			t.Fatalf("the client logged in over %s was cut: %v", name, err)
		}
		for i := 0; ; i++ {
			pk, err := xc.Read(time.Now().Add(10 * time.Second))
			if err != nil || i == 100 {
				t.Fatalf("the client logged in over %s was cut: %v", name, err)
			}
			if pk.Type() == "ping_echo" {
				break
			}
		}
	}
	getHealth("after the sniff deadline")
	// A plain xpra request also still works on the port.
	c := dial()
	if _, err := xpraclient.New(c, xprawire.Rencode).Request("version", 10*time.Second); err != nil {
		t.Fatalf("version after the slow clients: %v", err)
	}
}
