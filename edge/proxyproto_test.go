package edge

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

func proxyProtoServer(t *testing.T, trusted []netip.Prefix, bans BanPolicy) (string, *testLog) {
	t.Helper()
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	ln := loopback(t)
	lg := &testLog{}
	serveTest(t, Config{
		Logger: slog.New(slog.NewTextHandler(lg, nil)),
		State: State{Router: &router.Router{}, Limits: Limits{AuthFailDelay: -1}, Bans: bans,
			Listeners: []*Listener{{Name: "t", Listener: ln, Auth: a, AllowPlain: true, ProxyFrom: trusted}}},
	})
	return ln.Addr().String(), lg
}

// dialVia connects, sends a PROXY header naming client, and logs in.
func dialVia(t *testing.T, addr string, version byte, client string, password string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	src, _ := net.ResolveTCPAddr("tcp", client)
	dst, _ := net.ResolveTCPAddr("tcp", addr)
	h := proxyproto.HeaderProxyFromAddrs(version, src, dst)
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	_, err = xpraclient.New(c, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte(password), true, false, 5*time.Second)
	return err
}

func TestProxyProtocolFromTrustedNetworks(t *testing.T) {
	addr, lg := proxyProtoServer(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		BanPolicy{MaxFailures: 2, Window: time.Minute, BanTime: time.Minute})
	for _, v := range []byte{1, 2} {
		if err := dialVia(t, addr, v, "203.0.113.7:4242", "p"); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
	}
	// The session's log line may follow the client's hello by a moment.
	if !waitLog(lg, "remote=203.0.113.7:4242") {
		t.Fatalf("the real client address is not in the log:\n%s", lg.String())
	}
	// Failures ban the real client, not the load balancer.
	for i := 0; i < 2; i++ {
		if err := dialVia(t, addr, 2, "198.51.100.9:1", "bad"); err == nil {
			t.Fatal("bad password accepted")
		}
	}
	if err := dialVia(t, addr, 1, "198.51.100.9:2", "p"); err == nil {
		t.Fatal("banned client got in through the load balancer")
	}
	if err := dialVia(t, addr, 1, "203.0.113.7:4243", "p"); err != nil {
		t.Fatalf("another client behind the same balancer: %v", err)
	}
	// Plain connections from the trusted network still work.
	if _, err := connect(t, addr, xprawire.Rencode).Request("version", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestProxyProtocolFromUntrustedIsRefused(t *testing.T) {
	addr, _ := proxyProtoServer(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, BanPolicy{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, "untrusted") {
		t.Fatalf("got %q", line)
	}
}

func TestAcceptListSelectsProtocols(t *testing.T) {
	cert, pool := testCert(t)
	_ = pool
	a := tomlAuth(t, auth.User{Name: "u", Password: "p"})
	ln := loopback(t)
	newTLSOnly(t, ln, a, cert, []string{"ssl"})
	addr := ln.Addr().String()
	// Plain xpra refused.
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	_, _ = c.Write([]byte("P\x01\x00\x00\x00\x00\x00\x10"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.Contains(line, "requires TLS") {
		t.Fatalf("plain xpra: %q", line)
	}
	// Plain HTTP refused.
	c2, _ := net.Dial("tcp", addr)
	defer c2.Close()
	_, _ = io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := bufio.NewReader(c2).ReadString('\n'); !strings.Contains(line, "requires TLS") {
		t.Fatalf("plain http: %q", line)
	}
	// xpra over TLS accepted.
	if _, err := dialTLS(t, addr, "localhost", pool).Request("version", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
