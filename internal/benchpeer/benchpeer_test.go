package benchpeer

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

var testPool = NewPool()

func startServer(t *testing.T) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(testPool)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = ln.Close()
		srv.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return ln.Addr().String(), srv
}

func dialLogin(t *testing.T, addr string, w Workload) *Session {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Login(c, testPool, LoginOptions{Workload: w, Timeout: 10 * time.Second})
	if err != nil {
		_ = c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStreamVerifiesEverything(t *testing.T) {
	addr, srv := startServer(t)
	const draws = 200
	w := Workload{Mode: ModeStream, Seed: 42, Draws: draws, Window: 8}
	s := dialLogin(t, addr, w)
	if v, _ := s.ServerCaps.Str("version"); v != "3.1.3" {
		t.Errorf("server version %q", v)
	}
	st, err := s.Stream(time.Now().Add(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for i := 0; i < draws; i++ {
		want += int64(DrawSize(42, i))
	}
	cursors, icons := (draws+CursorEvery-1)/CursorEvery, (draws+IconEvery-1)/IconEvery
	want += int64(cursors*CursorSize + icons*IconSize)
	if st.Draws != draws || st.Cursors != cursors || st.Icons != icons || st.Bytes != want {
		t.Fatalf("got %+v, want %d draws %d cursors %d icons %d bytes", st, draws, cursors, icons, want)
	}
	if st.Pings != (draws+PingEvery-1)/PingEvery {
		t.Errorf("pings %d", st.Pings)
	}
	if got := srv.Stats(); got.Sessions != 1 || got.Errors != 0 {
		t.Errorf("server stats %+v", got)
	}
}

func TestStreamUntilDeadline(t *testing.T) {
	addr, _ := startServer(t)
	s := dialLogin(t, addr, Workload{Mode: ModeStream, Seed: 7})
	st, err := s.Stream(time.Now().Add(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if st.Draws == 0 || st.Bytes == 0 {
		t.Fatalf("nothing streamed: %+v", st)
	}
}

func TestSmallStream(t *testing.T) {
	addr, _ := startServer(t)
	w := Workload{Mode: ModeStream, Seed: 11, Draws: 300, Small: true, Window: 64}
	s := dialLogin(t, addr, w)
	st, err := s.Stream(time.Now().Add(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for i := 0; i < 300; i++ {
		n := w.Size(i)
		if n > SmallDrawMax || n < 64 {
			t.Fatalf("small draw %d has %d bytes", i, n)
		}
		want += int64(n)
	}
	want += int64((300+CursorEvery-1)/CursorEvery*CursorSize + (300+IconEvery-1)/IconEvery*IconSize)
	if st.Draws != 300 || st.Bytes != want {
		t.Fatalf("got %+v, want 300 draws, %d bytes", st, want)
	}
}

func TestPing(t *testing.T) {
	addr, _ := startServer(t)
	s := dialLogin(t, addr, Workload{Mode: ModeIdle})
	rtts, err := s.Ping(20, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rtts) != 20 {
		t.Fatalf("%d round trips", len(rtts))
	}
	for _, d := range rtts {
		if d <= 0 || d > 5*time.Second {
			t.Fatalf("round trip %s", d)
		}
	}
}

// corruptingRelay copies frames from the server to the client and flips one
// byte in the payload of the nth raw chunk; the client must notice.
func corruptingRelay(t *testing.T, backend string, nth int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		defer b.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(b, c)
			_ = b.Close()
		}()
		fr := xprawire.NewFrameReader(bufio.NewReader(b))
		fr.SetMaxSize(64 << 20)
		fw := xprawire.NewFrameWriter(c)
		chunks := 0
		for {
			h, p, err := fr.Next()
			if err != nil {
				_ = c.Close()
				return
			}
			if h.Index > 0 {
				chunks++
				if chunks == nth {
					p = append([]byte(nil), p...)
					p[len(p)/2] ^= 0x01
				}
			}
			if err := fw.WriteFrame(h, p); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}

func TestCorruptionIsCaught(t *testing.T) {
	addr, _ := startServer(t)
	relay := corruptingRelay(t, addr, 10)
	c, err := net.DialTimeout("tcp", relay, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Login(c, testPool, LoginOptions{Workload: Workload{Mode: ModeStream, Seed: 3, Draws: 50}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Stream(time.Now().Add(20 * time.Second))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("want ErrCorrupt, got %v", err)
	}
}

func TestWorkloadCapsRoundTrip(t *testing.T) {
	w := Workload{Mode: ModeStream, Seed: 1<<63 + 5, Draws: 12, Window: 3}
	d := xprawire.Dict{}
	w.setCaps(&d)
	got, err := workloadFromCaps(xprawire.Caps{Dict: d})
	if err != nil || got != w {
		t.Fatalf("got %+v %v, want %+v", got, err, w)
	}
	d.Set(capMode, "bogus")
	if _, err := workloadFromCaps(xprawire.Caps{Dict: d}); !errors.Is(err, ErrBadWorkload) {
		t.Fatalf("bogus mode: %v", err)
	}
}

func TestDrawSizes(t *testing.T) {
	var small, mid, large int
	for i := 0; i < 10000; i++ {
		n := DrawSize(9, i)
		switch {
		case n < 256 || n > MaxDrawSize:
			t.Fatalf("draw %d size %d out of range", i, n)
		case n < 16<<10:
			small++
		case n < 1<<20:
			mid++
		default:
			large++
		}
		if p := testPool.Draw(9, i); len(p) != n {
			t.Fatalf("draw %d slice %d != %d", i, len(p), n)
		}
	}
	// 60/30/10 within a few percent
	if small < 5500 || small > 6500 || mid < 2500 || mid > 3500 || large < 700 || large > 1300 {
		t.Fatalf("mix %d/%d/%d", small, mid, large)
	}
}

// flagsRelay copies frames both ways and records the protocol flags of
// every main packet, per direction.
type flagsRelay struct {
	mu                 sync.Mutex
	toServer, toClient []xprawire.Flags
}

func (fr *flagsRelay) start(t *testing.T, backend string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	copyFrames := func(dst, src net.Conn, rec *[]xprawire.Flags) {
		defer wg.Done()
		defer dst.Close()
		r := xprawire.NewFrameReader(bufio.NewReader(src))
		r.SetMaxSize(64 << 20)
		w := xprawire.NewFrameWriter(dst)
		for {
			h, p, err := r.Next()
			if err != nil {
				return
			}
			if h.Index == 0 {
				fr.mu.Lock()
				*rec = append(*rec, h.Flags)
				fr.mu.Unlock()
			}
			if err := w.WriteFrame(h, p); err != nil {
				return
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", backend)
		if err != nil {
			_ = c.Close()
			return
		}
		wg.Add(2)
		go copyFrames(b, c, &fr.toServer)
		go copyFrames(c, b, &fr.toClient)
	}()
	return ln.Addr().String()
}

// TestGen6SpeaksRencodePlus: a Gen6 client says it is 6.5.5 with
// rencodeplus only and lz4/none, writes every packet in rencodeplus, and
// the server answers like a 6.x server, in rencodeplus, both ways.
func TestGen6SpeaksRencodePlus(t *testing.T) {
	addr, srv := startServer(t)
	var fr flagsRelay
	relay := fr.start(t, addr)
	c, err := net.DialTimeout("tcp", relay, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const draws = 100
	s, err := Login(c, testPool, LoginOptions{Gen: Gen6, Workload: Workload{Mode: ModeStream, Seed: 66, Draws: draws, Window: 8}, Timeout: 10 * time.Second})
	if err != nil {
		_ = c.Close()
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.ServerCaps.Str("version"); v != "6.5.5" {
		t.Errorf("server version %q, want 6.5.5", v)
	}
	if e := s.ServerCaps.StrList("encoders"); len(e) != 1 || e[0] != "rencodeplus" {
		t.Errorf("server encoders %q", e)
	}
	st, err := s.Stream(time.Now().Add(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Draws != draws {
		t.Fatalf("%d draws", st.Draws)
	}
	if _, err := s.Ping(5, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// let the relay's copies see the last frames
	time.Sleep(100 * time.Millisecond)
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if len(fr.toServer) < draws || len(fr.toClient) < draws {
		t.Fatalf("relay saw %d packets to the server, %d to the client", len(fr.toServer), len(fr.toClient))
	}
	for dir, flags := range map[string][]xprawire.Flags{"client->server": fr.toServer, "server->client": fr.toClient} {
		for i, f := range flags {
			if f != xprawire.FlagRencodePlus {
				t.Fatalf("%s packet %d: flags 0x%02x, want rencodeplus only", dir, i, byte(f))
			}
		}
	}
	if got := srv.Stats(); got.Sessions != 1 || got.Errors != 0 {
		t.Errorf("server stats %+v", got)
	}
	// the hello itself
	hello := clientHello(LoginOptions{Gen: Gen6})
	hc := xprawire.Caps{Dict: hello}
	if v, _ := hc.Str("version"); v != "6.5.5" {
		t.Errorf("client version %q", v)
	}
	if e := hc.StrList("encoders"); len(e) != 1 || e[0] != "rencodeplus" {
		t.Errorf("client encoders %q", e)
	}
	if cs := hc.StrList("compressors"); len(cs) != 2 || cs[0] != "lz4" || cs[1] != "none" {
		t.Errorf("client compressors %q", cs)
	}
	if hc.Bool("rencode", true) || hc.Bool("bencode", true) || hc.Bool("zlib", true) {
		t.Errorf("6.x hello offers rencode, bencode or zlib: %v", hello)
	}
}

// TestGen6RefusesOtherEncodings: a Gen6 client fails a peer that answers
// in rencode, and the server fails a rencodeplus session whose peer then
// writes rencode: either would break a real 6.x peer.
func TestGen6RefusesOtherEncodings(t *testing.T) {
	// a fake server that answers every hello in rencode
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		pr := xprawire.NewPacketReader(bufio.NewReader(c))
		if _, _, err := pr.ReadPacket(); err != nil {
			return
		}
		pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(c), xprawire.Rencode)
		_ = pw.WritePacket(xprawire.Packet{"hello", serverHello(xprawire.Rencode)})
		_, _, _ = pr.ReadPacket()
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Login(c, testPool, LoginOptions{Gen: Gen6, Workload: Workload{Mode: ModeIdle}, Timeout: 5 * time.Second}); !errors.Is(err, ErrEncoding) {
		t.Fatalf("Gen6 login against a rencode server: %v, want ErrEncoding", err)
	}

	// a peer that offers rencodeplus, then pings in rencode
	addr, srv := startServer(t)
	c2, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s, err := Login(c2, testPool, LoginOptions{Gen: Gen6, Workload: Workload{Mode: ModeIdle}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.pw = xprawire.NewPacketWriter(xprawire.NewFrameWriter(s.bw), xprawire.Rencode)
	if _, err := s.Ping(1, 5*time.Second); err == nil {
		t.Fatal("the server answered a rencode ping in a rencodeplus session")
	}
	for i := 0; i < 100 && srv.Stats().Errors == 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if st := srv.Stats(); st.Errors != 1 || !strings.Contains(st.LastErr, "rencodeplus session") {
		t.Fatalf("server stats %+v, want the rencode packet as its error", st)
	}
}

// TestGen6ResponseHelloAsksNoChallenge: the hello that carries a Gen6
// client's challenge response no longer says "challenge" (a 6.x server
// answers one that does with another, fake, challenge); Gen3's keeps it,
// as 3.1.3 clients do.
func TestGen6ResponseHelloAsksNoChallenge(t *testing.T) {
	for _, gen := range []Gen{Gen3, Gen6} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan []bool, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			pr := xprawire.NewPacketReader(bufio.NewReader(c))
			enc := xprawire.Rencode
			if gen == Gen6 {
				enc = xprawire.RencodePlus
			}
			pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(c), enc)
			var asks []bool
			for i := 0; i < 2; i++ {
				p, _, err := pr.ReadPacket()
				if err != nil {
					break
				}
				d, _ := p[1].(xprawire.Dict)
				asks = append(asks, xprawire.Caps{Dict: d}.Bool("challenge", false))
				if i == 0 {
					_ = pw.WritePacket(xprawire.Packet{"challenge", []byte("0123456789abcdef0123456789abcdef"), "", "hmac+sha256", "hmac+sha256"})
				} else {
					_ = pw.WritePacket(xprawire.Packet{"hello", serverHello(enc)})
				}
			}
			got <- asks
		}()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Login(c, testPool, LoginOptions{Gen: gen, Username: "u", Password: "p", Workload: Workload{Mode: ModeIdle}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("%v: %v", gen, err)
		}
		if !s.Challenged {
			t.Errorf("%v: not challenged", gen)
		}
		asks := <-got
		_ = s.Close()
		_ = ln.Close()
		if want := []bool{true, gen == Gen3}; len(asks) != 2 || asks[0] != want[0] || asks[1] != want[1] {
			t.Errorf("%v: hellos ask for a challenge %v, want %v", gen, asks, want)
		}
	}
}
