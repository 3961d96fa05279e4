package wsconn

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"unsafe"
)

// choppedConn delivers its input in pieces of random size and records
// where each Read of the Conn landed.
type choppedConn struct {
	scriptConn
	rng   *rand.Rand
	max   int
	dests []uintptr
}

func (c *choppedConn) Read(p []byte) (int, error) {
	if len(p) > 0 {
		c.dests = append(c.dests, uintptr(unsafe.Pointer(&p[0])))
	}
	n := 1 + c.rng.IntN(c.max)
	if n < len(p) {
		p = p[:n]
	}
	return c.in.Read(p)
}

// TestDeframingAcrossAnyCut: frames of every kind (masked or not, control
// frames between fragments, 7-, 16- and 64-bit lengths) cut anywhere by the
// connection and read with reads of any size come out as the same stream.
func TestDeframingAcrossAnyCut(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var input, want []byte
	for i := 0; i < 300; i++ {
		size := rng.IntN(300)
		if i%50 == 7 {
			size = 70000
		}
		payload := make([]byte, size)
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		var m []byte
		if rng.IntN(2) == 0 {
			m = mask
		}
		if i%5 == 0 {
			input = append(input, frame(false, opBinary, m, payload[:size/2])...)
			input = append(input, frame(true, opPong, m, []byte("pong"))...)
			input = append(input, frame(true, opContinuation, m, payload[size/2:])...)
		} else {
			input = append(input, frame(true, opBinary, m, payload)...)
		}
		want = append(want, payload...)
	}
	for _, tc := range []struct{ cut, read int }{{1, 1}, {3, 5000}, {20, 7}, {200, 4096}, {5000, 300}, {100000, 1 << 20}} {
		sc := &choppedConn{scriptConn: scriptConn{in: bytes.NewReader(input)}, rng: rand.New(rand.NewPCG(3, uint64(tc.cut))), max: tc.cut}
		c := newConn(sc, nil, false)
		got, err := readAll(c, tc.read)
		if err != io.EOF || !bytes.Equal(got, want) {
			t.Fatalf("cut %d, reads of %d: %d of %d bytes, equal %v, err %v", tc.cut, tc.read, len(got), len(want), bytes.Equal(got, want), err)
		}
	}
}

// TestReadsLandInTheCallersBuffer: a Read of at least minDirectRead bytes
// reads the connection straight into the caller's buffer (no buffer of the
// Conn's own in between).
func TestReadsLandInTheCallersBuffer(t *testing.T) {
	var input []byte
	for i := 0; i < 100; i++ {
		input = append(input, frame(true, opBinary, mask, bytes.Repeat([]byte{byte(i)}, 1000))...)
	}
	sc := &choppedConn{scriptConn: scriptConn{in: bytes.NewReader(input)}, rng: rand.New(rand.NewPCG(5, 6)), max: 3000}
	c := newConn(sc, nil, false)
	buf := make([]byte, 4096)
	lo, hi := uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&buf[len(buf)-1]))
	total := 0
	for {
		n, err := c.Read(buf)
		total += n
		if err != nil {
			break
		}
	}
	if total != 100*1000 {
		t.Fatalf("read %d bytes", total)
	}
	for i, d := range sc.dests {
		if d < lo || d > hi {
			t.Fatalf("read %d of the connection went to another buffer", i)
		}
	}
	if c.sbuf != nil {
		t.Fatal("the small-read buffer was allocated for large reads")
	}
}

// countingConn counts the writes to it.
type countingConn struct {
	scriptConn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.scriptConn.Write(p)
}

// TestWriteMessageIsOneFrame: a record's header and payload handed over
// together go out as one frame (unmasked from a server, masked from a
// client), in one write up to joinMax and in two beyond (a record's worth
// joined, the rest of a large payload as it is).
func TestWriteMessageIsOneFrame(t *testing.T) {
	for _, client := range []bool{false, true} {
		for _, size := range []int{0, 100, 70000, 300000} {
			cc := &countingConn{}
			c := newConn(cc, nil, client)
			hdr := []byte("PHEADER!")
			payload := bytes.Repeat([]byte{0xab}, size)
			if err := c.WriteMessage(hdr, payload); err != nil {
				t.Fatal(err)
			}
			fs := cc.written(t)
			if len(fs) != 1 || fs[0].op != opBinary || fs[0].masked != client || !bytes.Equal(fs[0].payload, append(hdr, payload...)) {
				t.Fatalf("client %v, %d bytes: %d frames", client, size, len(fs))
			}
			want := 1
			if size+len(hdr) > joinMax {
				want = 2
			}
			if cc.writes != want {
				t.Fatalf("client %v, %d bytes: %d writes, want %d", client, size, cc.writes, want)
			}
		}
	}
}

// through is a wrapper that adds nothing to writes.
type through struct{ net.Conn }

func (t through) WriteConn() net.Conn { return t.Conn }

// TestWritesGoThroughToTheSocket: under wrappers that add nothing to
// writes (the edge's replaying and web-server wrappers), frames are
// written on the socket itself, one writev each.
func TestWritesGoThroughToTheSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := newConn(through{through{tc}}, nil, false)
	if c.wconn != tc || !c.vectored {
		t.Fatalf("frames are written to %T (vectored %v), not the socket", c.wconn, c.vectored)
	}
	if err := c.WriteMessage([]byte("PHEADER!"), make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
}
