package edge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/wsconn"
	"github.com/xpra-edge/xpra-edge/router"
)

// fakePortal records what the edge hands it.
type fakePortal struct {
	mu      sync.Mutex
	served  []string
	tickets []string // Cookie headers of the upgrades it was asked about
}

func (p *fakePortal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.served = append(p.served, r.Method+" "+r.URL.Path)
	p.mu.Unlock()
	info, ok := RequestInfoOf(r)
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	_, _ = io.WriteString(w, "portal "+r.Method+" tls="+boolString(info.TLS)+" ok="+boolString(ok)+" listener="+info.Listener)
}

func boolString(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (p *fakePortal) Paths() []string { return []string{"/{$}", "/login"} }

func (p *fakePortal) TicketAuth(r *http.Request) (auth.Authenticator, bool) {
	p.mu.Lock()
	p.tickets = append(p.tickets, r.Header.Get("Cookie"))
	p.mu.Unlock()
	return nil, false
}

// A portal the edge is given serves its paths (any method, its own CSP);
// the HTML5 client files are at /client/ and still at their old paths, for
// GET and HEAD only; every WebSocket upgrade is shown to the portal.
func TestPortalMounted(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("the html5 client"), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := &fakePortal{}
	addr := webProxy(t, Web{Root: root, Portal: fp})
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "portal GET tls=no ok=yes listener=t"},
		{"POST", "/login", 200, "portal POST"},
		{"GET", "/client/", 200, "the html5 client"},
		{"GET", "/client/index.html", 200, "the html5 client"},
		{"GET", "/index.html", 200, "the html5 client"},
		{"POST", "/index.html", 405, ""},
		{"POST", "/client/index.html", 405, ""},
		{"GET", "/client", 307, ""},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, strings.NewReader("x=1"))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.HasPrefix(string(b), tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
		if strings.HasPrefix(tc.body, "portal") && resp.Header.Get("Content-Security-Policy") != "default-src 'none'" {
			t.Errorf("%s %s: the edge's CSP replaced the portal's: %q", tc.method, tc.path, resp.Header.Get("Content-Security-Policy"))
		}
	}
	resp, _ := rawGet(t, addr, "/client/index.html", append([]string{"Cookie: __Host-x=1"}, wsHeaders...)...)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if len(fp.tickets) != 1 || fp.tickets[0] != "__Host-x=1" {
		t.Errorf("the portal was asked about upgrades %q", fp.tickets)
	}
}

// ticketPortal takes WebSocket upgrades on /ticket: their login is the
// secret "tkt" for user t, bound to target.
type ticketPortal struct {
	fakePortal
	target router.Target
}

func (p *ticketPortal) TicketAuth(r *http.Request) (auth.Authenticator, bool) {
	if r.URL.Path != "/ticket" {
		return nil, false
	}
	return ticketModule{p.target}, true
}

type ticketModule struct{ target router.Target }

func (ticketModule) Name() string { return "ticket-test" }

func (m ticketModule) Begin(username string, tr auth.Transport) auth.Login {
	bl := &boundTestLogin{target: m.target}
	bl.Login = auth.NewSecretLogin("ticket-test", username, tr, func(_ context.Context, user string, match func([]byte) bool) (auth.Identity, error) {
		if user != "t" || !match([]byte("tkt")) {
			return auth.Identity{}, fmt.Errorf("ticket-test: %w", auth.ErrFailed)
		}
		bl.ok = true
		return auth.Identity{Username: "t", Module: "ticket-test"}, nil
	})
	return bl
}

type boundTestLogin struct {
	auth.Login
	target router.Target
	ok     bool
}

func (l *boundTestLogin) Target() (router.Target, bool) { return l.target, l.ok }

// A portal's ticket module replaces the listener's for the WebSocket it
// takes, and its BoundLogin's target replaces routing: user t has no
// sessions of their own and asks for another display, yet reaches the
// bound backend; a wrong ticket is an authentication failure (counted
// like any); other WebSockets keep the listener's module.
func TestPortalTicketBindsTarget(t *testing.T) {
	users := append([]auth.User{{Name: "t", Password: "not-the-ticket"}}, fooUser...)
	var tp *ticketPortal
	f := newFixture(t, users, func(c *Config) {
		tp = &ticketPortal{}
		c.Web.Portal = tp
	})
	backendAddr, _ := startBackend(t, f.pool)
	tp.target = router.Target{Scheme: "tcp", Address: backendAddr, Display: ":7"}
	ws := func(path string) net.Conn {
		c := f.dial()
		wc, err := wsconn.Dial(context.Background(), c, f.addr, path)
		if err != nil {
			t.Fatalf("ws %s: %v", path, err)
		}
		return wc
	}
	s, err := benchpeer.Login(ws("/ticket?display=:99"), f.pool, benchpeer.LoginOptions{Username: "t", Password: "tkt", Workload: benchpeerIdle, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("ticket login: %v", err)
	}
	s.Close()
	if !strings.Contains(f.log.String(), "module=ticket-test") {
		t.Errorf("the session is not the ticket module's:\n%s", f.log.String())
	}
	if _, err := benchpeer.Login(ws("/ticket"), f.pool, benchpeer.LoginOptions{Username: "t", Password: "not-the-ticket", Workload: benchpeerIdle, Timeout: 10 * time.Second}); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("the user's password on a ticket WebSocket: %v", err)
	}
	// Elsewhere the listener's module: t's password works but t has no session.
	if _, err := benchpeer.Login(ws("/"), f.pool, benchpeer.LoginOptions{Username: "t", Password: "not-the-ticket", Workload: benchpeerIdle, Timeout: 10 * time.Second}); err == nil || !strings.Contains(err.Error(), "no sessions found") {
		t.Errorf("t on a plain WebSocket: %v", err)
	}
	if _, err := benchpeer.Login(ws("/"), f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: benchpeerIdle, Timeout: 10 * time.Second}); err != nil {
		t.Errorf("foo on a plain WebSocket: %v", err)
	}
}
