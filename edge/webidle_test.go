package edge

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
)

// keepAlive makes one HTTP/1.1 request on c and leaves it idle, open.
func keepAlive(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %s, close %v", resp.Status, resp.Close)
	}
	_ = c.SetDeadline(time.Time{})
}

// openByProxy counts the connections the proxy has not closed.
func openByProxy(conns []net.Conn) int {
	n := 0
	for _, c := range conns {
		if !closedByProxy(c, 50*time.Millisecond) {
			n++
		}
	}
	return n
}

// Issue 11, item 3: idle HTTP keep-alive connections count as
// unauthenticated (in total and per address): never more are open than
// the limits allow; one gives its slot up (and is closed) when a
// connection needs a slot and none is free, so they never keep a login
// out; and the proxy closes them after DefaultWebIdleTimeout (10 s; it was
// 120 s). Before, they were not counted: 200 were held with
// max_unauthenticated = 4.
func TestIdleKeepAliveCountsAsUnauthenticated(t *testing.T) {
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.MaxUnauthenticated = 4 })
	var idle []net.Conn
	for range 6 {
		c := dialFrom(t, "127.0.0.1", f.addr)
		keepAlive(t, c)
		idle = append(idle, c)
	}
	waitUnauth(t, f.srv, 4)
	if n := openByProxy(idle); n != 4 {
		t.Fatalf("%d idle keep-alive connections open with max_unauthenticated = 4", n)
	}
	// A login takes an idle connection's slot.
	s, err := benchpeer.Login(dialFrom(t, "127.0.0.2", f.addr), f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: benchpeerIdle, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("a login was kept out by idle keep-alive connections: %v", err)
	}
	s.Close()
	if n := openByProxy(idle); n != 3 {
		t.Errorf("%d idle keep-alive connections open after a login took a slot, want 3", n)
	}
	// The proxy closes the rest within its idle timeout, and their slots are free.
	start := time.Now()
	for i, c := range idle {
		if !closedByProxy(c, DefaultWebIdleTimeout+3*time.Second-time.Since(start)) {
			t.Fatalf("idle keep-alive connection %d still open after %v", i, time.Since(start).Round(time.Second))
		}
	}
	t.Logf("idle keep-alive connections closed after %v", time.Since(start).Round(100*time.Millisecond))
	waitUnauth(t, f.srv, 0)
}

// Per address the same: 8 idle keep-alive connections from one address
// (a browser that fetched the HTML5 client) do not keep its next
// connection, a login, out.
func TestIdleKeepAliveGivesWayPerAddress(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	var idle []net.Conn
	for range 8 {
		c := dialFrom(t, "127.0.0.1", f.addr)
		keepAlive(t, c)
		idle = append(idle, c)
	}
	waitUnauth(t, f.srv, 8)
	s, err := f.login("foo", "bar", benchpeerIdle)
	if err != nil {
		t.Fatalf("a login from an address with 8 idle keep-alive connections: %v", err)
	}
	s.Close()
	if n := openByProxy(idle); n != 7 {
		t.Errorf("%d idle keep-alive connections open, want 7", n)
	}
}
