package edge

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// dialFrom connects to addr from the loopback address local (any of
// 127.0.0.0/8 on Linux).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// holdLogin starts an xpra packet (a header announcing a payload that
// never comes), as an attacker renewing idle "P..." connections does: the
// proxy waits for the hello until its login timeout.
func holdLogin(t *testing.T, c net.Conn) {
	t.Helper()
	var h [xprawire.HeaderSize]byte
	xprawire.Header{Flags: xprawire.FlagRencode, Size: 100}.Put(h[:])
	if _, err := c.Write(h[:]); err != nil {
		t.Fatal(err)
	}
}

// closedByProxy reports whether the proxy hangs up on c within d.
func closedByProxy(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func waitUnauth(t *testing.T, s *Server, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.unauthIP.mu.Lock()
		keys := len(s.unauthIP.byKey)
		s.unauthIP.mu.Unlock()
		n := s.unauth.Load()
		if n == want && (want > 0 || keys == 0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unauthenticated connections: %d (%d addresses), want %d", n, keys, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 11, item 2: one address holding idle logins gets no more than
// max_unauthenticated_per_ip (default 8) of the proxy-wide slots, so a
// client from another address still logs in. Before, 127.0.0.1 took all
// ten and 127.0.0.2 was refused.
func TestUnauthenticatedLimitPerAddress(t *testing.T) {
	if DefaultLimits.MaxUnauthenticatedPerIP != 8 {
		t.Fatalf("documented default is 8, got %d", DefaultLimits.MaxUnauthenticatedPerIP)
	}
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.MaxUnauthenticated = 10 })
	for range 8 {
		holdLogin(t, dialFrom(t, "127.0.0.1", f.addr))
	}
	waitUnauth(t, f.srv, 8)
	for i := range 2 {
		c := dialFrom(t, "127.0.0.1", f.addr)
		holdLogin(t, c)
		if !closedByProxy(c, 2*time.Second) {
			t.Errorf("connection %d from 127.0.0.1 beyond its 8 was kept", 9+i)
		}
	}
	if !waitLog(f.log, "too many unauthenticated connections from this address") {
		t.Error("the refusal was not logged")
	}
	s, err := benchpeer.Login(dialFrom(t, "127.0.0.2", f.addr), f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: benchpeerIdle, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("a client from 127.0.0.2 could not log in while 127.0.0.1 held its cap: %v", err)
	}
	s.Close()
}

// Behind a trusted balancer the real client (the PROXY header's) is
// counted, not the balancer.
func TestUnauthenticatedLimitPerAddressBehindProxy(t *testing.T) {
	ln := loopback(t)
	srv := serveTest(t, Config{State: State{Router: &router.Router{}, Limits: Limits{AuthFailDelay: -1, MaxUnauthenticatedPerIP: 2},
		Listeners: []*Listener{{Name: "t", Listener: ln, Auth: tomlAuth(t), AllowPlain: true, ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}}})
	via := func(client string) net.Conn {
		c := dialFrom(t, "127.0.0.1", ln.Addr().String())
		src, _ := net.ResolveTCPAddr("tcp", client)
		if _, err := proxyproto.HeaderProxyFromAddrs(1, src, ln.Addr().(*net.TCPAddr)).WriteTo(c); err != nil {
			t.Fatal(err)
		}
		holdLogin(t, c)
		return c
	}
	for i := range 4 {
		via(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 1000).String())
		via(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 1001).String())
	}
	waitUnauth(t, srv, 8)
	if c := via("203.0.113.1:1002"); !closedByProxy(c, 2*time.Second) {
		t.Error("a third connection of 203.0.113.1 was kept")
	}
}

func waitLog(l *testLog, s string) bool {
	for range 100 {
		if strings.Contains(l.String(), s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
