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

// Issue 11, item 3: idle HTTP keep-alive connections count as
// unauthenticated (in total and per address) until they close, and the
// proxy closes them after DefaultWebIdleTimeout (10 s; it was 120 s).
// Before, 200 idle ones were held with max_unauthenticated = 4 and a
// login still got in.
func TestIdleKeepAliveCountsAsUnauthenticated(t *testing.T) {
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.MaxUnauthenticated = 4 })
	var idle []net.Conn
	for range 4 {
		c := dialFrom(t, "127.0.0.1", f.addr)
		keepAlive(t, c)
		idle = append(idle, c)
	}
	waitUnauth(t, f.srv, 4)
	// Every slot is held: a login (from another address) is refused.
	if _, err := benchpeer.Login(dialFrom(t, "127.0.0.2", f.addr), f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: benchpeerIdle, Timeout: 5 * time.Second}); err == nil {
		t.Fatal("a login got in while 4 idle keep-alive connections held max_unauthenticated = 4")
	}
	// The proxy closes them within its idle timeout, and their slots are free.
	start := time.Now()
	for i, c := range idle {
		if !closedByProxy(c, DefaultWebIdleTimeout+3*time.Second-time.Since(start)) {
			t.Fatalf("idle keep-alive connection %d still open after %v", i, time.Since(start).Round(time.Second))
		}
	}
	t.Logf("idle keep-alive connections closed after %v", time.Since(start).Round(100*time.Millisecond))
	waitUnauth(t, f.srv, 0)
	s, err := benchpeer.Login(dialFrom(t, "127.0.0.2", f.addr), f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: benchpeerIdle, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("no login after the idle connections closed: %v", err)
	}
	s.Close()
}
