package edge

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// hookConn runs hook once, before the first write that follows a read:
// for a client, between the server's challenge and the client's answer.
type hookConn struct {
	net.Conn
	mu   sync.Mutex
	read bool
	hook func()
}

func (c *hookConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.read = true
		c.mu.Unlock()
	}
	return n, err
}

func (c *hookConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	h := c.hook
	if c.read && h != nil {
		c.hook = nil
	} else {
		h = nil
	}
	c.mu.Unlock()
	if h != nil {
		h()
	}
	return c.Conn.Write(p)
}

// TestReloadMidLoginKeepsTheLoginsSnapshot: a reload between a client's
// hello and its answer to the challenge, which swaps the listener's
// authentication module (the user's password changes) and lowers the
// session limit to 1 while one session is live, does not change that
// login: it is verified by the old module and gets its session under the
// old limits. The next connection sees the new state: the old password
// fails, the new one meets the limit, and logs in once the sessions are
// gone. Before, the login re-read the live limits (and router, dialer,
// starter) at each phase and was refused by the limit it never started
// under.
func TestReloadMidLoginKeepsTheLoginsSnapshot(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	first, err := f.login("foo", "bar", benchpeerIdle)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	newAuth, err := auth.New(auth.Spec{Name: "toml"}, auth.Options{Users: []auth.User{
		{Name: "foo", Password: "new", Displays: []string{"tcp://" + f.backendAddr + "/"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 1)
	reload := func() {
		st := *f.srv.snapshot()
		l := *st.Listeners[0]
		l.Auth = newAuth
		st.Listeners = []*Listener{&l}
		st.Limits.MaxSessions = 1 // the first session holds it
		reloaded <- f.srv.Reload(st)
	}
	c := &hookConn{Conn: f.dial(), hook: reload}
	xc := xpraclient.New(c, xprawire.Rencode)
	defer xc.Close()
	caps := xpraclient.BaseCaps("foo")
	caps.Set("bench.mode", "idle")
	if _, err := xc.Hello(caps, []byte("bar"), true, false, 10*time.Second); err != nil {
		t.Fatalf("the login that began before the reload: %v", err)
	}
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	default:
		t.Fatal("the reload did not run between the challenge and its answer")
	}
	if n := f.srv.SessionCount(); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	// The next logins run under the new state.
	if _, err = f.login("foo", "bar", benchpeerIdle); err == nil || !strings.Contains(err.Error(), reasonAuthFailed) {
		t.Fatalf("the old password after the reload: %v", err)
	}
	if _, err := f.login("foo", "new", benchpeerIdle); err == nil || !strings.Contains(err.Error(), "session limit") {
		t.Fatalf("a third session under the reloaded limit of 1: %v", err)
	}
	first.Close()
	xc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.SessionCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sessions did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s, err := f.login("foo", "new", benchpeerIdle)
	if err != nil {
		t.Fatalf("the new password after the reload: %v", err)
	}
	s.Close()
}

// TestStateIsReadOnlyOnArrival: the live reloadable state is read only
// where a connection arrives (and by New, Bind and Reload); every phase of
// a login uses the snapshot its connection carries. A new call of
// s.snapshot() or s.state.Load() elsewhere fails here.
func TestStateIsReadOnlyOnArrival(t *testing.T) {
	allowed := map[string]bool{"snapshot": true, "New": true, "Bind": true, "Reload": true, "acceptLoop": true, "serveControl": true, "portalState": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := gotoken.NewFileSet()
	var bad []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				reads := sel.Sel.Name == "snapshot"
				if inner, ok := sel.X.(*ast.SelectorExpr); ok && inner.Sel.Name == "state" && sel.Sel.Name == "Load" {
					reads = true
				}
				if reads && !allowed[fd.Name.Name] {
					bad = append(bad, fset.Position(sel.Pos()).String()+" in "+fd.Name.Name)
				}
				return true
			})
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Fatalf("the live state is read outside a connection's arrival:\n%s", strings.Join(bad, "\n"))
	}
}
