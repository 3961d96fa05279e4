package benchpeer

import (
	"bufio"
	"errors"
	"io"
	"net"
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
