package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/sockdir"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// testLog collects log output so tests can assert on it (and on what it
// must never contain).
type testLog struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.Write(p)
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

type fixture struct {
	t       *testing.T
	srv     *Server
	addr    string
	sockDir string
	log     *testLog
	backend *benchpeer.Server
	// backendAddr is the synthetic backend's address (BACKEND in displays).
	backendAddr string
	pool        *benchpeer.Pool
	cancel      context.CancelFunc
	done        chan error
}

// startBackend runs a synthetic xpra server on loopback.
func startBackend(t *testing.T, pool *benchpeer.Pool) (string, *benchpeer.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := benchpeer.NewServer(pool)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close(); ln.Close() })
	return ln.Addr().String(), s
}

func newFixture(t *testing.T, users []auth.User, mutate func(*Config)) *fixture {
	t.Helper()
	pool := benchpeer.NewPool()
	backendAddr, backend := startBackend(t, pool)
	users = append([]auth.User(nil), users...)
	for i := range users {
		ds := make([]string, len(users[i].Displays))
		for j, d := range users[i].Displays {
			ds[j] = strings.ReplaceAll(d, "BACKEND", backendAddr)
		}
		users[i].Displays = ds
	}
	a, err := auth.New(auth.Spec{Name: "toml"}, auth.Options{Users: users})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sockDir := t.TempDir()
	lg := &testLog{}
	cfg := Config{
		Display:   ":" + fmt.Sprint(40000+os.Getpid()%20000),
		SocketDir: sockDir,
		Logger:    slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug})),
		State: State{
			Router:    &router.Router{},
			Listeners: []*Listener{{Name: "test", Listener: ln, Auth: a, AllowPlain: true}},
			Limits:    Limits{AuthFailDelay: 10 * time.Millisecond},
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{t: t, srv: srv, addr: ln.Addr().String(), sockDir: sockDir, log: lg, backend: backend, backendAddr: backendAddr, pool: pool, cancel: cancel, done: make(chan error, 1)}
	go func() { f.done <- srv.Serve(ctx, 0) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
		if t.Failed() {
			t.Logf("log:\n%s", lg.String())
		}
	})
	return f
}

func (f *fixture) dial() net.Conn {
	f.t.Helper()
	c, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

func (f *fixture) login(user, password string, w benchpeer.Workload) (*benchpeer.Session, error) {
	return benchpeer.Login(f.dial(), f.pool, benchpeer.LoginOptions{Username: user, Password: password, Workload: w, Timeout: 10 * time.Second})
}

// rawLogin logs in with the request client, which reports disconnects.
func (f *fixture) rawLogin(user, password string) *xpraclient.Conn {
	f.t.Helper()
	c := xpraclient.New(f.dial(), xprawire.Rencode)
	caps := xpraclient.BaseCaps(user)
	caps.Set("bench.mode", "idle")
	if _, err := c.Hello(caps, []byte(password), true, false, 10*time.Second); err != nil {
		f.t.Fatalf("login: %v", err)
	}
	return c
}

// waitDisconnect reads until a disconnect packet and returns its reasons.
func waitDisconnect(t *testing.T, c *xpraclient.Conn, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		p, err := c.Read(deadline)
		if err != nil {
			t.Fatalf("no disconnect packet: %v", err)
		}
		if p.Type() == "disconnect" {
			return xpraclient.Reasons(p)
		}
	}
}

var benchpeerIdle = benchpeer.Workload{Mode: benchpeer.ModeIdle}

var fooUser = []auth.User{{Name: "foo", Password: "bar", Displays: []string{"tcp://BACKEND/"}}}

func TestRelayDeliversEveryByte(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	s, err := f.login("foo", "bar", benchpeer.Workload{Mode: benchpeer.ModeStream, Seed: 7, Draws: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Challenged {
		t.Fatal("the proxy did not challenge")
	}
	if v, _ := s.ServerCaps.Str("proxy.edge-version"); v != Version {
		t.Fatalf("forwarded hello lacks proxy.edge-version: %q", v)
	}
	if v, _ := s.ServerCaps.Str("proxy.version"); v == "" || strings.Trim(v, "0123456789.") != "" {
		t.Fatalf("proxy.version %q is not a numeric xpra version", v)
	}
	if s.ServerCaps.Has("aliases") {
		t.Fatal("forwarded hello still carries aliases")
	}
	st, err := s.Stream(time.Now().Add(30 * time.Second))
	if err != nil {
		t.Fatalf("stream through the proxy: %v", err)
	}
	if st.Draws != 300 {
		t.Fatalf("draws = %d, want 300", st.Draws)
	}
	rtts, err := s.Ping(5, 5*time.Second)
	if err != nil || len(rtts) != 5 {
		t.Fatalf("ping: %v %v", rtts, err)
	}
	if n := f.srv.SessionCount(); n != 1 {
		t.Fatalf("sessions = %d", n)
	}
}

func TestManySessionsConcurrently(t *testing.T) {
	// 16 logins at once from one address: above the default per-address
	// limit of unauthenticated connections (8).
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.MaxUnauthenticatedPerIP = 16 })
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := f.login("foo", "bar", benchpeer.Workload{Mode: benchpeer.ModeStream, Seed: uint64(i), Draws: 40, Small: i%2 == 0})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if _, err := s.Stream(time.Now().Add(30 * time.Second)); err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWrongPasswordIsRefusedAfterDelay(t *testing.T) {
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.AuthFailDelay = 300 * time.Millisecond })
	start := time.Now()
	_, err := f.login("foo", "wrong-password", benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("err = %v, want authentication failed", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("refused after %v, before the delay", d)
	}
	// Unknown users look the same as wrong passwords.
	_, err = f.login("nobody-here", "x", benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("unknown user: err = %v", err)
	}
	if strings.Contains(f.log.String(), "wrong-password") {
		t.Fatal("the log contains the password")
	}
}

func TestVersionNeedsNoPassword(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	c := xpraclient.New(f.dial(), xprawire.Rencode)
	caps, err := c.Request("version", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := caps.Str("xpra-edge.version"); v != Version {
		t.Fatalf("version answer: %v", caps)
	}
}

func TestInfoAndIDNeedAuthentication(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	c := xpraclient.New(f.dial(), xprawire.Bencode)
	caps := xpraclient.BaseCaps("foo")
	caps.Set("request", "info")
	got, err := c.Hello(caps, []byte("bar"), true, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := got.Str("server.mode"); m != "proxy" {
		t.Fatalf("info: %v", got)
	}
	if got.Has("instances.count") {
		t.Fatal("network info must not list sessions")
	}
	c2 := xpraclient.New(f.dial(), xprawire.Rencode)
	caps = xpraclient.BaseCaps("foo")
	caps.Set("request", "id")
	if _, err := c2.Hello(caps, []byte("nope"), true, false, 5*time.Second); err == nil {
		t.Fatal("id with a wrong password was answered")
	}
}

func TestGarbageGetsTextDisconnect(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	c := f.dial()
	if _, err := c.Write([]byte("\x00\x01garbage\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "disconnect: protocol error") {
		t.Fatalf("got %q", line)
	}
	// A bad xpra header is refused too, with a text disconnect.
	c = f.dial()
	_, _ = c.Write([]byte("PPPPPPPPPPPPPPPP"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ = bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "disconnect: ") {
		t.Fatalf("bad header: got %q", line)
	}
}

func TestSilentClientIsCutAtSniffDeadline(t *testing.T) {
	f := newFixture(t, fooUser, func(c *Config) { c.State.Limits.SniffTimeout = 200 * time.Millisecond })
	c := f.dial()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut after %v", d)
	}
	// Others still log in meanwhile.
	s, err := f.login("foo", "bar", benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestBackendDeathTellsClient(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	c := f.rawLogin("foo", "bar")
	start := time.Now()
	f.backend.Close() // closes its connections: the backend is gone
	reasons := waitDisconnect(t, c, 5*time.Second)
	if len(reasons) < 2 || reasons[0] != "server shutdown" || reasons[1] != "backend connection lost" {
		t.Fatalf("after the backend died: %q", reasons)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("told after %v", d)
	}
}

func TestControlSocketsInfoAndStop(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	s1 := f.rawLogin("foo", "bar")
	s2, err := f.login("foo", "bar", benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ctl := func(display string) *xpraclient.Conn {
		path := filepath.Join(f.sockDir, sockdir.SocketName(display))
		c, err := net.DialTimeout("unix", path, 2*time.Second)
		if err != nil {
			t.Fatalf("control socket %s: %v", display, err)
		}
		t.Cleanup(func() { c.Close() })
		return xpraclient.New(c, xprawire.Rencode)
	}
	info, err := ctl(f.srv.cfg.Display).Request("info", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := info.Int("instances.count"); n != 2 {
		t.Fatalf("instances.count = %d", n)
	}
	info, err = ctl(":proxy-1").Request("info", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := info.Str("proxy.user"); u != "foo" {
		t.Fatalf("session info: %v", info)
	}
	reasons, err := ctl(":proxy-1").Stop(10 * time.Second)
	if err != nil || len(reasons) == 0 || reasons[0] != "server shutdown" {
		t.Fatalf("stop: %v %v", reasons, err)
	}
	// Session 1's client was told; session 2 lives on.
	if r := waitDisconnect(t, s1, 5*time.Second); len(r) < 2 || r[0] != "server shutdown" || r[1] != "socket request" {
		t.Fatalf("stopped session was told %q", r)
	}
	if _, err := s2.Ping(1, 5*time.Second); err != nil {
		t.Fatalf("other session: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.sockDir, sockdir.SocketName(":proxy-1"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket of the stopped session remains: %v", err)
	}
	// Stopping the proxy through its own socket ends Serve.
	if _, err := ctl(f.srv.cfg.Display).Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.done:
		f.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not stop")
	}
}

func TestBanAfterRepeatedFailures(t *testing.T) {
	f := newFixture(t, fooUser, func(c *Config) {
		c.State.Bans = BanPolicy{MaxFailures: 3, Window: time.Minute, BanTime: 500 * time.Millisecond}
	})
	for i := 0; i < 3; i++ {
		if _, err := f.login("foo", "bad", benchpeer.Workload{Mode: benchpeer.ModeIdle}); err == nil {
			t.Fatal("bad password accepted")
		}
	}
	_, err := f.login("foo", "bar", benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err == nil || !strings.Contains(err.Error(), "too many failed logins") {
		t.Fatalf("banned address: %v", err)
	}
	// Another address logs in meanwhile.
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s2, err := benchpeer.Login(other, f.pool, benchpeer.LoginOptions{Username: "foo", Password: "bar", Workload: benchpeer.Workload{Mode: benchpeer.ModeIdle}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("another address while one is banned: %v", err)
	}
	s2.Close()
	if !strings.Contains(f.log.String(), "address banned") {
		t.Fatal("the ban was not logged")
	}
	time.Sleep(600 * time.Millisecond)
	s, err := f.login("foo", "bar", benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatalf("after the ban expired: %v", err)
	}
	s.Close()
}

func TestShutdownTellsClients(t *testing.T) {
	f := newFixture(t, fooUser, nil)
	c := f.rawLogin("foo", "bar")
	f.cancel()
	reasons := waitDisconnect(t, c, 10*time.Second)
	if len(reasons) < 2 || reasons[0] != "server shutdown" {
		t.Fatalf("told %q", reasons)
	}
}

// TestSessionOutlivesLoginDeadlines: the deadlines of the handshake
// (login, challenge) must not follow a session into the relay.
func TestSessionOutlivesLoginDeadlines(t *testing.T) {
	f := newFixture(t, fooUser, func(c *Config) {
		c.State.Limits.LoginTimeout = 500 * time.Millisecond
		c.State.Limits.ChallengeTimeout = 500 * time.Millisecond
	})
	s, err := f.login("foo", "bar", benchpeerIdle)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(1500 * time.Millisecond)
	if _, err := s.Ping(3, 5*time.Second); err != nil {
		t.Fatalf("the session died after the login deadline: %v", err)
	}
}
