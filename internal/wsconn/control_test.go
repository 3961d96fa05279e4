package wsconn

import (
	"bytes"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestPongWriteIsBounded: a peer that sends a ping and reads nothing
// cannot hold Read past its read deadline (before, the pong write had no
// deadline and Read blocked forever).
func TestPongWriteIsBounded(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := NewServerConn(a, nil)
	go func() { _, _ = b.Write(frame(true, opPing, []byte{1, 2, 3, 4}, []byte("are you there"))) }()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		var buf [16]byte
		_, err := c.Read(buf[:])
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read returned data")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Read returned after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read is still blocked in the pong write")
	}
}

// TestPingFloodIsRateLimited: of 500 pings read at once, only the burst
// is answered; the data after them still arrives.
func TestPingFloodIsRateLimited(t *testing.T) {
	var in bytes.Buffer
	for i := 0; i < 500; i++ {
		in.Write(frame(true, opPing, []byte{9, 8, 7, 6}, []byte("ping")))
	}
	in.Write(frame(true, opBinary, []byte{9, 8, 7, 6}, []byte("data")))
	sc := newScript(in.Bytes())
	c := NewServerConn(sc, nil)
	got, err := readAll(c, 64)
	if string(got) != "data" {
		t.Fatalf("read %q, %v", got, err)
	}
	pongs := 0
	for _, f := range sc.written(t) {
		if f.op == opPong {
			pongs++
		}
	}
	if pongs < 16 || pongs > 18 {
		t.Fatalf("%d pongs for 500 pings, want about 16", pongs)
	}
}

// TestIsUpgrade: the one rule, by tokens. Before, the edge's own check
// took "Connection: upgraded" (a substring) and refused "Upgrade:
// websocket, h2c" (a list), unlike Upgrade.
func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		upgrade, connection string
		want                bool
	}{
		{"websocket", "Upgrade", true},
		{"WebSocket", "keep-alive, Upgrade", true},
		{"h2c, websocket", "upgrade", true},
		{"websocket", "upgraded", false},
		{"websocket", "", false},
		{"", "upgrade", false},
		{"websockets", "upgrade", false},
	} {
		h := http.Header{}
		if tc.upgrade != "" {
			h.Set("Upgrade", tc.upgrade)
		}
		if tc.connection != "" {
			h.Set("Connection", tc.connection)
		}
		if got := IsUpgrade(h); got != tc.want {
			t.Errorf("Upgrade %q, Connection %q: %v, want %v", tc.upgrade, tc.connection, got, tc.want)
		}
	}
}

// countConn counts the writes a Conn makes.
type countConn struct {
	scriptConn
	writes int
}

func (c *countConn) Write(p []byte) (int, error) { c.writes++; return c.scriptConn.Write(p) }

// TestOneWritePerFrame: over a connection without writev (TLS), a frame
// is one write (one TLS record), masked or not; before, header and
// payload were two.
func TestOneWritePerFrame(t *testing.T) {
	for _, client := range []bool{false, true} {
		cc := &countConn{scriptConn: *newScript(nil)}
		c := newConn(cc, nil, client)
		payload := bytes.Repeat([]byte("x"), 3000)
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		if cc.writes != 1 {
			t.Fatalf("client=%v: %d writes for one frame", client, cc.writes)
		}
		if !client {
			fs := cc.written(t)
			if len(fs) != 1 || !bytes.Equal(fs[0].payload, payload) {
				t.Fatalf("frames: %+v", fs)
			}
		}
	}
}
