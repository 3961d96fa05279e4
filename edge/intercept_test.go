package edge

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// recorder is a minimal xpra backend that records what reaches it.
type recorder struct {
	mu      sync.Mutex
	hellos  []xprawire.Caps
	packets []string
	ln      net.Listener
	early   atomic.Bool // send a packet before the hello
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	ln := loopback(t)
	r := &recorder{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

// serveTest runs a server built from cfg until the test ends.
func serveTest(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, 0); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// loopback listens on a free loopback port.
func loopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (r *recorder) serve(c net.Conn) {
	defer c.Close()
	pr := xprawire.NewPacketReader(bufio.NewReader(c))
	pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(c), xprawire.Rencode)
	for {
		p, _, err := pr.ReadPacket()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.packets = append(r.packets, p.Type())
		r.mu.Unlock()
		switch p.Type() {
		case "hello":
			if r.early.Load() {
				// As xpra 3.1.3 may: a window announced before the hello.
				_ = pw.WritePacket(xprawire.Packet{"window-metadata", int64(1), xprawire.Dict{{Key: "title", Value: "early"}}})
			}
			d, _ := p[1].(xprawire.Dict)
			r.mu.Lock()
			r.hellos = append(r.hellos, xprawire.Caps{Dict: d})
			r.mu.Unlock()
			hello := xprawire.Dict{}
			hello.Set("version", "3.1.3")
			hello.Set("rencode", true)
			hello.Set("bencode", true)
			hello.Set("encoders", []any{"rencode", "bencode"})
			hello.Set("compressors", []any{"zlib", "lz4"})
			hello.Set("lz4", true)
			hello.Set("zlib", true)
			hello.Set("aliases", xprawire.Dict{{Key: "draw", Value: int64(3)}})
			_ = pw.WritePacket(xprawire.Packet{"hello", hello})
		case "info-request":
			_ = pw.WritePacket(xprawire.Packet{"info-response", xprawire.Dict{{Key: "server.name", Value: "recorder"}}})
		case "echo-me":
			_ = pw.WritePacket(xprawire.Packet{"echoed", int64(len(p))})
		}
	}
}

func (r *recorder) lastHello(t *testing.T) xprawire.Caps {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.hellos) == 0 {
		t.Fatal("the backend got no hello")
	}
	return r.hellos[len(r.hellos)-1]
}

func (r *recorder) saw(typ string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.packets {
		if p == typ {
			return true
		}
	}
	return false
}

// miniProxy runs a proxy with the given module and limits.
func miniProxy(t *testing.T, a auth.Authenticator, lim Limits) (addr string, srv *Server) {
	t.Helper()
	ln := loopback(t)
	lim.AuthFailDelay = -1
	srv = serveTest(t, Config{
		State: State{Router: &router.Router{}, Limits: lim,
			Listeners: []*Listener{{Name: "t", Listener: ln, Auth: a, AllowPlain: true}}},
	})
	return ln.Addr().String(), srv
}

func tomlAuth(t *testing.T, users ...auth.User) auth.Authenticator {
	t.Helper()
	a, err := auth.New(auth.Spec{Name: "toml"}, auth.Options{Users: users})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func connect(t *testing.T, addr string, enc xprawire.Encoding) *xpraclient.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return xpraclient.New(c, enc)
}

func TestBackendHelloFilteringAndSessionOptions(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "moo", Password: "cow", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"},
		SessionOptions: map[string]string{"compression": "0"}})
	addr, _ := miniProxy(t, a, Limits{})
	c := connect(t, addr, xprawire.Rencode)
	caps := xpraclient.BaseCaps("moo")
	caps.Set("aliases", xprawire.Dict{{Key: "hello", Value: int64(1)}})
	caps.Set("cipher", "AES")
	caps.Set("compression_level", int64(5))
	caps.Set("display", xprawire.Dict{{Key: "name", Value: "html5 18+ display caps"}})
	caps.Set("ui-thing", "kept")
	got, err := c.Hello(caps, []byte("cow"), true, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.Has("aliases") {
		t.Fatal("the client was offered aliases")
	}
	if v, _ := got.Str("version"); v != "3.1.3" {
		t.Fatalf("backend version not forwarded: %q", v)
	}
	h := rec.lastHello(t)
	if lvl, ok := h.Int("compression_level"); !ok || lvl != 0 {
		t.Fatalf("compression=0 did not reach the backend as compression_level=0: %v %v", lvl, ok)
	}
	for _, k := range []string{"aliases", "cipher", "challenge", "challenge_response"} {
		if h.Has(k) {
			t.Fatalf("backend hello still has %q", k)
		}
	}
	if v, _ := h.Str("ui-thing"); v != "kept" {
		t.Fatal("client caps were not forwarded")
	}
	if !h.Bool("proxy", false) || !h.Has("proxy.hostname") {
		t.Fatal("backend hello lacks proxy info")
	}
	if l := h.StrList("encoders"); strings.Join(l, ",") != "rencodeplus,rencode,bencode" {
		t.Fatalf("encoders toward the backend = %v", l)
	}

	// set_deflate is echoed to the client, never forwarded.
	if err := c.Send(xprawire.Packet{"set_deflate", int64(3)}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Read(time.Now().Add(5 * time.Second))
	if err != nil || p.Type() != "set_deflate" {
		t.Fatalf("set_deflate echo: %v %v", p, err)
	}
	// info-response gets the proxy's view added.
	if err := c.Send(xprawire.Packet{"info-request", []any{}, []any{}, []any{}}); err != nil {
		t.Fatal(err)
	}
	p, err = c.Read(time.Now().Add(5 * time.Second))
	if err != nil || p.Type() != "info-response" {
		t.Fatalf("info-response: %v %v", p, err)
	}
	info := xprawire.Caps{Dict: p[1].(xprawire.Dict)}
	if u, _ := info.Str("proxy.user"); u != "moo" {
		t.Fatalf("info-response lacks proxy.user: %v", info)
	}
	if n, _ := info.Str("server.name"); n != "recorder" {
		t.Fatal("info-response lost the server's own info")
	}
	// Anything else passes unchanged, both ways.
	if err := c.Send(xprawire.Packet{"echo-me", "a", int64(2)}); err != nil {
		t.Fatal(err)
	}
	p, err = c.Read(time.Now().Add(5 * time.Second))
	if err != nil || p.Type() != "echoed" {
		t.Fatalf("echo: %v %v", p, err)
	}
	if rec.saw("set_deflate") {
		t.Fatal("set_deflate reached the backend")
	}
}

func TestDisplayDictFromHTML5ClientIsIgnored(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	addr, _ := miniProxy(t, a, Limits{})
	caps := xpraclient.BaseCaps("u")
	caps.Set("display", xprawire.Dict{{Key: "name", Value: ":1"}, {Key: "depth", Value: int64(24)}})
	if _, err := connect(t, addr, xprawire.Bencode).Hello(caps, []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatalf("a display dict broke session lookup: %v", err)
	}
}

func TestRequestsAnsweredByTheProxy(t *testing.T) {
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://127.0.0.1:1/"}})
	addr, _ := miniProxy(t, a, Limits{})
	caps := xpraclient.BaseCaps("u")
	caps.Set("connect_test_request", "ping?")
	got, err := connect(t, addr, xprawire.Rencode).Hello(caps, []byte("p"), true, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Str("connect_test_response"); v != "ping?" {
		t.Fatalf("connect_test: %v", got)
	}
	for _, req := range []string{"screenshot", "event", "print", "exit"} {
		caps := xpraclient.BaseCaps("u")
		caps.Set("request", req)
		_, err := connect(t, addr, xprawire.Rencode).Hello(caps, []byte("p"), true, false, 5*time.Second)
		var de *xpraclient.DisconnectError
		if !asDisconnect(err, &de) || de.Reasons[0] != "invalid request" {
			t.Fatalf("%s: %v", req, err)
		}
	}
	// stop over the network is refused: only the control socket stops.
	caps = xpraclient.BaseCaps("u")
	caps.Set("request", "stop")
	_, err = connect(t, addr, xprawire.Rencode).Hello(caps, []byte("p"), true, false, 5*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || de.Reasons[0] != "permission error" {
		t.Fatalf("stop: %v", err)
	}
}

func asDisconnect(err error, de **xpraclient.DisconnectError) bool {
	d, ok := err.(*xpraclient.DisconnectError)
	if ok {
		*de = d
	}
	return ok && len(d.Reasons) > 0
}

func TestFakeChallengeWhenNoPasswordIsNeeded(t *testing.T) {
	a, err := auth.New(auth.Spec{Name: "none"}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := miniProxy(t, a, Limits{})
	caps := xpraclient.BaseCaps("whoever")
	caps.Set("request", "id")
	// The client holds a password: it is challenged (with a fake
	// challenge) and then answered, so it does not give up.
	got, err := connect(t, addr, xprawire.Rencode).Hello(caps, []byte("anything"), true, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Str("session-type"); v != "proxy" {
		t.Fatalf("id: %v", got)
	}
}

func TestSessionLimits(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	addr, srv := miniProxy(t, a, Limits{MaxSessionsPerIP: 2})
	var live []*xpraclient.Conn
	for i := 0; i < 2; i++ {
		c := connect(t, addr, xprawire.Rencode)
		if _, err := c.Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		live = append(live, c)
	}
	_, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || de.Reasons[0] != "server error" {
		t.Fatalf("third session: %v", err)
	}
	live[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.SessionCount() > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
}

func TestModuleTroubleIsNotAFailedLogin(t *testing.T) {
	// A "database" that is a directory: the module cannot read it.
	a, err := auth.New(auth.Spec{Name: "sqlite", Options: map[string]string{"filename": t.TempDir()}}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, srv := miniProxy(t, a, Limits{})
	st := *srv.state.Load()
	st.Bans = BanPolicy{MaxFailures: 1, Window: time.Minute, BanTime: time.Minute}
	srv.state.Store(&st)
	for i := 0; i < 3; i++ {
		_, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second)
		var de *xpraclient.DisconnectError
		if !asDisconnect(err, &de) || de.Reasons[0] != "authentication error" {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if srv.bans.Count() != 0 {
		t.Fatal("module trouble banned the client")
	}
}

func TestPacketsBeforeTheBackendHelloReachTheClient(t *testing.T) {
	rec := startRecorder(t)
	rec.early.Store(true)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	addr, _ := miniProxy(t, a, Limits{})
	c := connect(t, addr, xprawire.Rencode)
	if _, err := c.Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
		t.Fatalf("a backend that speaks before its hello: %v", err)
	}
	p, err := c.Read(time.Now().Add(5 * time.Second))
	if err != nil || p.Type() != "window-metadata" {
		t.Fatalf("the early packet did not follow the hello: %v %v", p, err)
	}
}
