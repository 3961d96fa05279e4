package xprawire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/andybalholm/brotli"
)

// readerOver returns a PacketReader over the given records.
func readerOver(t *testing.T, frames ...Frame) *PacketReader {
	t.Helper()
	var buf bytes.Buffer
	if err := NewFrameWriter(&buf).WriteFrames(frames); err != nil {
		t.Fatal(err)
	}
	return NewPacketReader(bufio.NewReader(&buf))
}

func compressed(t *testing.T, c Compressor, data []byte) ([]byte, Level) {
	t.Helper()
	out, lvl, err := Compress(nil, c, 9, data)
	if err != nil {
		t.Fatal(err)
	}
	return out, lvl
}

// Issue 11, item 1: a PacketReader inflates no record past its limit (by
// default the frame reader's payload limit), and with NoChunks refuses raw
// chunks before inflating them. Before, every record could inflate to 256 MiB.
func TestPacketReaderDecompressionLimit(t *testing.T) {
	main, err := appendList(nil, Rencode, Packet{"hello", Dict{}})
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 3<<20)
	for _, c := range []Compressor{Zlib, LZ4, Brotli} {
		bomb, lvl := compressed(t, c, zeros)
		// A raw chunk of 3 MiB inflated, payload far under the 1 MiB limit.
		pr := readerOver(t, Frame{Header: Header{Flags: FlagRencode, Level: lvl, Index: 1}, Payload: bomb}, Frame{Header: Header{Flags: FlagRencode}, Payload: main})
		pr.Frames.SetMaxSize(1 << 20)
		if _, _, err := pr.ReadPacket(); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%v raw chunk inflating to 3 MiB under a 1 MiB frame limit: %v, want ErrTooLarge", c, err)
		}
		// An explicit limit wins over the frame limit.
		pr = readerOver(t, Frame{Header: Header{Flags: FlagRencode, Level: lvl, Index: 1}, Payload: bomb}, Frame{Header: Header{Flags: FlagRencode}, Payload: main})
		pr.MaxDecompressed = 4 << 20
		if p, _, err := pr.ReadPacket(); err != nil || len(p[1].([]byte)) != len(zeros) {
			t.Errorf("%v raw chunk of 3 MiB under a 4 MiB limit: %v", c, err)
		}
		// NoChunks: refused whatever its size.
		pr = readerOver(t, Frame{Header: Header{Flags: FlagRencode, Level: lvl, Index: 2}, Payload: bomb})
		pr.NoChunks = true
		if _, _, err := pr.ReadPacket(); !errors.Is(err, ErrChunkIndex) {
			t.Errorf("%v raw chunk with NoChunks: %v, want ErrChunkIndex", c, err)
		}
		// A main packet inflating past the limit.
		big, err := appendList(nil, Rencode, Packet{"hello", zeros})
		if err != nil {
			t.Fatal(err)
		}
		zbig, zlvl := compressed(t, c, big)
		pr = readerOver(t, Frame{Header: Header{Flags: FlagRencode, Level: zlvl}, Payload: zbig})
		pr.Frames.SetMaxSize(1 << 20)
		if _, _, err := pr.ReadPacket(); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%v main packet inflating to 3 MiB under a 1 MiB frame limit: %v, want ErrTooLarge", c, err)
		}
		if _, err := DecodeMainLimit(Header{Flags: FlagRencode, Level: zlvl}, zbig, 1<<20); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%v DecodeMainLimit 1 MiB: %v, want ErrTooLarge", c, err)
		}
		if p, err := DecodeMainLimit(Header{Flags: FlagRencode, Level: zlvl}, zbig, 4<<20); err != nil || p.Type() != "hello" {
			t.Errorf("%v DecodeMainLimit 4 MiB: %v", c, err)
		}
	}
}

// brotli's ring buffer is sized from the stream's window before any output:
// a stream with a 16 MiB window inflated under a 1 MiB limit must cost about
// the limit, not the window, and streams that fit decode exactly as before.
func TestBrotliWindowShrunkToLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	text := make([]byte, 900<<10)
	for i := range text {
		text[i] = "abcdefgh ,.:"[rng.IntN(12)]
	}
	copy(text[800<<10:], text[:100<<10]) // a match 800 KiB back
	for _, lgwin := range []int{16, 17, 18, 22, 24} {
		var buf bytes.Buffer
		w := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: 5, LGWin: lgwin})
		_, _ = w.Write(text)
		_ = w.Close()
		out, err := Decompress(nil, MakeLevel(Brotli, 5), buf.Bytes(), 1<<20)
		if err != nil || !bytes.Equal(out, text) {
			t.Errorf("lgwin %d: %d bytes, %v", lgwin, len(out), err)
		}
		if _, err := Decompress(nil, MakeLevel(Brotli, 5), buf.Bytes(), 512<<10); !errors.Is(err, ErrTooLarge) {
			t.Errorf("lgwin %d under 512 KiB: %v, want ErrTooLarge", lgwin, err)
		}
	}
	var bomb bytes.Buffer
	w := brotli.NewWriterOptions(&bomb, brotli.WriterOptions{Quality: 1, LGWin: 24})
	_, _ = w.Write(make([]byte, 12<<20))
	_ = w.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 4 {
		// fresh readers each time: the pool would hide the allocation
		for brotliReaders.Get() != nil {
		}
		if _, err := Decompress(nil, MakeLevel(Brotli, 5), bomb.Bytes(), 1<<20); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("bomb: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	// Measured: 9 MiB each in all (output buffer growth included), 37 MiB
	// each without the shrink (a 16 MiB ring buffer).
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*(12<<20) {
		t.Errorf("4 brotli bombs under a 1 MiB limit allocated %d MiB in all, want under 12 MiB each", got>>20)
	}
}

// A PacketWriter with MaxSize writes no main record larger than it (its
// peer would refuse it): ErrTooLarge, and nothing is written.
func TestPacketWriterMaxSize(t *testing.T) {
	big := make([]byte, 3000)
	for i := range big {
		big[i] = byte(rand.Uint32())
	}
	for _, c := range []Compressor{NoCompression, LZ4} {
		var buf bytes.Buffer
		pw := NewPacketWriter(NewFrameWriter(&buf), RencodePlus)
		pw.Compressor, pw.CompressionLevel = c, 1
		pw.MaxSize = 2000
		if err := pw.WritePacket(Packet{"x", big}); !errors.Is(err, ErrTooLarge) || buf.Len() != 0 {
			t.Errorf("%v: a 3000-byte packet under MaxSize 2000: %v, %d bytes written", c, err, buf.Len())
		}
		if err := pw.WritePacket(Packet{"x", big[:1000]}); err != nil || buf.Len() == 0 {
			t.Errorf("%v: a 1000-byte packet under MaxSize 2000: %v", c, err)
		}
	}
}

// After a large packet a PacketWriter keeps no buffer over writerKeepMax:
// a bridged session, whose every main packet goes through one, would
// otherwise hold its largest packet encoded and compressed for as long as
// it lives.
func TestPacketWriterKeepsNoLargeBuffer(t *testing.T) {
	big := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	for _, c := range []Compressor{NoCompression, LZ4, Zlib, Brotli} {
		pw := NewPacketWriter(NewFrameWriter(io.Discard), Rencode)
		pw.Compressor, pw.CompressionLevel = c, 1
		if err := pw.WritePacket(Packet{"x", big}); err != nil {
			t.Fatal(err)
		}
		if cap(pw.buf) > writerKeepMax || cap(pw.zbuf) > writerKeepMax {
			t.Errorf("%v: after a 3 MiB packet the writer keeps %d and %d bytes", c, cap(pw.buf), cap(pw.zbuf))
		}
		// and small packets still reuse what it keeps
		if err := pw.WritePacket(Packet{"x", big[:2000]}); err != nil {
			t.Fatal(err)
		}
		if c != NoCompression && cap(pw.zbuf) == 0 || cap(pw.buf) == 0 {
			t.Errorf("%v: small packets keep no buffer", c)
		}
	}
}
