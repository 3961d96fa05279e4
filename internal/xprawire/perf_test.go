package xprawire

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// cycler yields the same bytes forever without allocating.
type cycler struct {
	b   []byte
	off int
}

func (c *cycler) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.b[c.off:])
		n += k
		c.off = (c.off + k) % len(c.b)
	}
	return n, nil
}

func framePathFixture(size int) (*FrameReader, *FrameWriter, []byte) {
	payload := bytes.Repeat([]byte{0xc3}, size)
	stream := rec(Header{Flags: FlagRencode}, payload)
	fr := NewFrameReader(bufio.NewReaderSize(&cycler{b: stream}, 64<<10))
	return fr, NewFrameWriter(io.Discard), stream
}

// TestFramePathAllocs: reading a record and writing it back (a relay's steady
// state) allocates nothing once a payload of that size has been seen.
func TestFramePathAllocs(t *testing.T) {
	for _, size := range []int{0, 100, 4096, 100 << 10} {
		fr, fw, _ := framePathFixture(size)
		step := func() {
			h, p, err := fr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if err := fw.WriteFrame(h, p); err != nil {
				t.Fatal(err)
			}
		}
		step()
		if n := testing.AllocsPerRun(200, step); n != 0 {
			t.Errorf("payload %d: %.1f allocations per frame, want 0", size, n)
		}
	}
	// WriteFrames of already-seen counts does not allocate either.
	fw := NewFrameWriter(io.Discard)
	frames := []Frame{{Header{Index: 1}, []byte("chunk")}, {Header{Flags: FlagRencode}, pingRencode}}
	if n := testing.AllocsPerRun(100, func() { _ = fw.WriteFrames(frames) }); n != 0 {
		t.Errorf("WriteFrames: %.1f allocations", n)
	}
	// PeekType on an uncompressed record of a common type does not allocate.
	b := h(wireVectors[0].wire)
	hd, _ := ParseHeader(b)
	if n := testing.AllocsPerRun(100, func() { _, _ = PeekType(hd, b[HeaderSize:]) }); n != 0 {
		t.Errorf("PeekType: %.1f allocations", n)
	}
}

// TestFramePathAllocsTCP: the same over a loopback TCP connection, where
// WriteFrame is a writev.
func TestFramePathAllocsTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fr, _, _ := framePathFixture(4096)
	fw := NewFrameWriter(conn)
	step := func() {
		h, p, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if err := fw.WriteFrame(h, p); err != nil {
			t.Fatal(err)
		}
	}
	step()
	n := testing.AllocsPerRun(500, step)
	conn.Close()
	<-done
	if n != 0 {
		t.Errorf("%.2f allocations per frame over TCP, want 0", n)
	}
}

func BenchmarkFramePath(b *testing.B) {
	for _, size := range []int{64, 4096, 64 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			fr, fw, stream := framePathFixture(size)
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				h, p, err := fr.Next()
				if err != nil {
					b.Fatal(err)
				}
				if err := fw.WriteFrame(h, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<10:
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string { return strconv.Itoa(n) }

// helloBodies returns the real 3.1.3 hello packet and its encoding in each format.
func helloBodies(b *testing.B) (Packet, map[Encoding][]byte) {
	hd, payload := realHello(b)
	p, err := DecodeMain(hd, payload)
	if err != nil {
		b.Fatal(err)
	}
	bodies := map[Encoding][]byte{}
	for _, e := range []Encoding{Bencode, Rencode, RencodePlus} {
		if bodies[e], err = Marshal(e, p); err != nil {
			b.Fatal(err)
		}
	}
	return p, bodies
}

func BenchmarkDecodeHello(b *testing.B) {
	_, bodies := helloBodies(b)
	for _, e := range []Encoding{Rencode, Bencode, RencodePlus} {
		b.Run(e.String(), func(b *testing.B) {
			body := bodies[e]
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Unmarshal(e, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeHello(b *testing.B) {
	p, bodies := helloBodies(b)
	for _, e := range []Encoding{Rencode, Bencode, RencodePlus} {
		b.Run(e.String(), func(b *testing.B) {
			buf := make([]byte, 0, 2*len(bodies[e]))
			b.SetBytes(int64(len(bodies[e])))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = AppendMarshal(buf[:0], e, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeMainHello: the real record as received (zlib level 1 + rencode).
func BenchmarkDecodeMainHello(b *testing.B) {
	hd, payload := realHello(b)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMain(hd, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPeekType(b *testing.B) {
	p, bodies := helloBodies(b)
	for _, c := range []Compressor{NoCompression, LZ4, Zlib, Brotli} {
		payload, lvl, err := Compress(nil, c, 1, bodies[Rencode])
		if err != nil {
			b.Fatal(err)
		}
		hd := Header{Flags: FlagRencode, Level: lvl}
		b.Run(c.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if t, err := PeekType(hd, payload); err != nil || t != p.Type() {
					b.Fatal(t, err)
				}
			}
		})
	}
}

func BenchmarkCompressHello(b *testing.B) {
	_, bodies := helloBodies(b)
	body := bodies[Rencode]
	for _, c := range []Compressor{Zlib, LZ4, Brotli} {
		out, lvl, _ := Compress(nil, c, 1, body)
		b.Run(c.String()+"/compress", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			buf := make([]byte, 0, 2*len(body))
			for b.Loop() {
				buf, _, _ = Compress(buf[:0], c, 1, body)
			}
		})
		b.Run(c.String()+"/decompress", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			buf := make([]byte, 0, 2*len(body))
			for b.Loop() {
				var err error
				if buf, err = Decompress(buf[:0], lvl, out, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWritePacketAllocs: writing small packets through a PacketWriter reuses
// its buffers; compressing large ones costs only the compressor's own state.
func TestWritePacketAllocs(t *testing.T) {
	pw := NewPacketWriter(NewFrameWriter(io.Discard), Rencode)
	ping := Packet{"ping", int64(5)}
	_ = pw.WritePacket(ping)
	if n := testing.AllocsPerRun(100, func() { _ = pw.WritePacket(ping) }); n != 0 {
		t.Errorf("small packet: %.1f allocations", n)
	}
	if raceEnabled {
		// make unit runs this test again without -race, where it asserts.
		t.Skip("the lz4 compressor comes from a sync.Pool, which drops entries at random under -race")
	}
	pw.Compressor, pw.CompressionLevel = LZ4, 1
	big := Packet{"info-response", Dict{{"k", strings.Repeat("v", 2000)}}}
	_ = pw.WritePacket(big)
	if n := testing.AllocsPerRun(100, func() { _ = pw.WritePacket(big) }); n != 0 {
		t.Errorf("lz4 packet: %.1f allocations", n)
	}
}

func BenchmarkWritePacket(b *testing.B) {
	_, bodies := helloBodies(b)
	hd, payload := realHello(b)
	hello, _ := DecodeMain(hd, payload)
	for _, c := range []Compressor{NoCompression, LZ4, Zlib} {
		b.Run("hello/"+c.String(), func(b *testing.B) {
			pw := NewPacketWriter(NewFrameWriter(io.Discard), Rencode)
			pw.Compressor, pw.CompressionLevel = c, 1
			b.SetBytes(int64(len(bodies[Rencode])))
			b.ReportAllocs()
			for b.Loop() {
				if err := pw.WritePacket(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("ping", func(b *testing.B) {
		pw := NewPacketWriter(NewFrameWriter(io.Discard), Rencode)
		ping := Packet{"ping", int64(123456)}
		b.ReportAllocs()
		for b.Loop() {
			if err := pw.WritePacket(ping); err != nil {
				b.Fatal(err)
			}
		}
	})
}
