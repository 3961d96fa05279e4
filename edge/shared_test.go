package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// fakeRegistry records what the server tells a shared registry and can
// be made unhealthy.
type fakeRegistry struct {
	mu       sync.Mutex
	down     error
	admitted []SessionRecord
	relaying int
	ended    map[string]string
	node     chan Node
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{ended: map[string]string{}, node: make(chan Node, 1)}
}

func (f *fakeRegistry) Admit(_ context.Context, rec SessionRecord, _ Limits) (Admission, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != nil {
		return nil, f.down
	}
	f.admitted = append(f.admitted, rec)
	return &fakeAdmission{f: f, uuid: rec.UUID}, nil
}

func (f *fakeRegistry) Run(ctx context.Context, n Node) {
	f.node <- n
	<-ctx.Done()
}

func (f *fakeRegistry) Health() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *fakeRegistry) setDown(err error) {
	f.mu.Lock()
	f.down = err
	f.mu.Unlock()
}

type fakeAdmission struct {
	f    *fakeRegistry
	uuid string
}

func (a *fakeAdmission) Relaying() {
	a.f.mu.Lock()
	a.f.relaying++
	a.f.mu.Unlock()
}

func (a *fakeAdmission) End(reason string, _, _ int64) {
	a.f.mu.Lock()
	a.f.ended[a.uuid] = reason
	a.f.mu.Unlock()
}

// countingBans is a BanStore that counts what it is told.
type countingBans struct {
	BanStore
	mu       sync.Mutex
	failures int
}

func (c *countingBans) Failure(ctx context.Context, key string, p BanPolicy) (bool, error) {
	c.mu.Lock()
	c.failures++
	c.mu.Unlock()
	return c.BanStore.Failure(ctx, key, p)
}

func (c *countingBans) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures
}

func sharedProxy(t *testing.T, a auth.Authenticator, reg SessionRegistry, bans BanStore, lim Limits) (string, *Server) {
	t.Helper()
	ln := loopback(t)
	lim.AuthFailDelay = -1
	srv := serveTest(t, Config{
		State: State{Router: &router.Router{}, Limits: lim, Bans: BanPolicy{MaxFailures: 2, Window: time.Minute, BanTime: time.Minute},
			Listeners: []*Listener{{Name: "t", Listener: ln, Auth: a, AllowPlain: true, Accept: []string{"xpra", "http"}}}},
		Registry: reg, BanStore: bans,
	})
	return ln.Addr().String(), srv
}

// A shared registry sees every session from its admission to its end;
// StopSession (a stop from another node) ends it with "socket request"
// told to the client.
func TestRegistrySeesSessionsAndStopsThem(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	reg := newFakeRegistry()
	addr, _ := sharedProxy(t, a, reg, nil, Limits{})
	var node Node
	select {
	case node = <-reg.node:
	case <-time.After(5 * time.Second):
		t.Fatal("the registry was not run")
	}
	c := connect(t, addr, xprawire.Rencode)
	if _, err := c.Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	if len(reg.admitted) != 1 || reg.relaying != 1 || reg.admitted[0].User != "u" || reg.admitted[0].ID == 0 || len(reg.admitted[0].UUID) != 32 {
		t.Fatalf("admitted %+v, relaying %d", reg.admitted, reg.relaying)
	}
	uuid := reg.admitted[0].UUID
	reg.mu.Unlock()
	if err := c.Send(xprawire.Packet{"echo-me", "x"}); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Read(time.Now().Add(5 * time.Second)); err != nil || p.Type() != "echoed" {
		t.Fatalf("relay: %v %v", p, err)
	}
	stats := node.SessionStats()
	if len(stats) != 1 || stats[0].UUID != uuid || stats[0].FromClient == 0 || stats[0].FromServer == 0 {
		t.Fatalf("stats %+v", stats)
	}
	if node.StopSession("no-such-uuid", "socket request") {
		t.Fatal("stopped a session that does not exist")
	}
	if !node.StopSession(uuid, "socket request") {
		t.Fatal("the live session was not found")
	}
	var told xprawire.Packet
	for i := 0; i < 100 && told == nil; i++ {
		p, err := c.Read(time.Now().Add(5 * time.Second))
		if err != nil {
			t.Fatalf("client: %v before a disconnect", err)
		}
		if p.Type() == "disconnect" {
			told = p
		}
	}
	if len(told) < 3 || told[2] != "socket request" {
		t.Fatalf("client told %v", told)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		reg.mu.Lock()
		r, ok := reg.ended[uuid]
		reg.mu.Unlock()
		if ok {
			if r != "socket request" {
				t.Fatalf("end recorded with %q", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the end was not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// While the shared store is down, logins are refused with "authentication
// error" before any password is checked (so nothing is counted toward a
// ban), /healthz says so with a 503, and logins work again once it is back.
func TestStoreDownRefusesLoginsWithoutBans(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	reg := newFakeRegistry()
	bans := &countingBans{BanStore: NewMemoryBans()}
	addr, srv := sharedProxy(t, a, reg, bans, Limits{})
	reg.setDown(errors.New("fleet: PostgreSQL unreachable"))
	for i := 0; i < 4; i++ {
		_, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("wrong"), true, false, 5*time.Second)
		var de *xpraclient.DisconnectError
		if !asDisconnect(err, &de) || de.Reasons[0] != "authentication error" {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if n := bans.count(); n != 0 || srv.banned(addr) {
		t.Fatalf("%d failures counted while the store was down", n)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "store unreachable\n" {
		t.Fatalf("healthz while down: %s %q", resp.Status, body)
	}
	reg.setDown(nil)
	if _, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	resp, err = http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after recovery: %s", resp.Status)
	}
	// Wrong passwords count again, through the store, and ban.
	for i := 0; i < 2; i++ {
		_, _ = connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("wrong"), true, false, 5*time.Second)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (bans.count() != 2 || !srv.banned(addr)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := bans.count(); n != 2 || !srv.banned(addr) {
		t.Fatalf("after recovery: %d failures, banned %v", n, srv.banned(addr))
	}
}

// max_sessions_per_user is enforced by the (default) registry.
func TestSessionsPerUser(t *testing.T) {
	rec := startRecorder(t)
	disp := []string{"tcp://" + rec.ln.Addr().String() + "/"}
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: disp}, auth.User{Name: "v", Password: "p", Displays: disp})
	addr, srv := miniProxy(t, a, Limits{MaxSessionsPerUser: 1})
	c := connect(t, addr, xprawire.Rencode)
	if _, err := c.Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || de.Reasons[0] != "server error" {
		t.Fatalf("second session of u: %v", err)
	}
	if _, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("v"), []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatalf("v: %v", err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.SessionCount() > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatalf("u after its session ended: %v", err)
	}
}

// stuckRegistry is a registry whose Run, once stopped, takes far longer
// than it is given (a store that answers nothing).
type stuckRegistry struct {
	*fakeRegistry
	stop    chan time.Time // the deadline Run was given
	release chan struct{}
}

func (r *stuckRegistry) Run(ctx context.Context, _ Node) {
	<-ctx.Done()
	r.stop <- StopDeadline(ctx, time.Hour)
	<-r.release
}

// TestServeBoundedWhateverTheRegistry: Serve gives its registry a
// RegistryStop deadline inside its bound and returns within drain + 1 s
// even when the registry's Run does not return.
func TestServeBoundedWhateverTheRegistry(t *testing.T) {
	reg := &stuckRegistry{fakeRegistry: newFakeRegistry(), stop: make(chan time.Time, 1), release: make(chan struct{})}
	defer close(reg.release)
	srv, err := New(Config{
		State:    State{Router: &router.Router{}, Listeners: []*Listener{{Name: "t", Listener: loopback(t), Auth: tomlAuth(t, auth.User{Name: "u", Password: "p"}), AllowPlain: true, Accept: []string{"xpra"}}}},
		Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, 300*time.Millisecond); close(done) }()
	time.Sleep(100 * time.Millisecond) // serving
	start := time.Now()
	cancel()
	var deadline time.Time
	select {
	case deadline = <-reg.stop:
	case <-time.After(5 * time.Second):
		t.Fatal("the registry was not stopped")
	}
	bound := start.Add(1300 * time.Millisecond)
	if deadline.After(bound) || deadline.Before(start) {
		t.Fatalf("registry deadline %v after the stop, bound %v", deadline.Sub(start), bound.Sub(start))
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	d := time.Since(start)
	t.Logf("Serve returned %v after the stop (drain 300ms), the registry's deadline at %v", d.Round(time.Millisecond), deadline.Sub(start).Round(time.Millisecond))
	// drain + 1 s, and scheduling jitter under -race on a loaded machine
	if d > 1500*time.Millisecond {
		t.Fatalf("Serve returned %v after the stop, with the registry stuck", d)
	}
}
