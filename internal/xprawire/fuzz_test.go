package xprawire

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/zlib"
	"errors"
	"io"
	"strings"
	"testing"
)

// Native fuzz targets, one per decoder, seeded from the test tables.
// The Makefile's fuzz-smoke runs each for a few seconds.

func seedCodec(f *testing.F, e Encoding, vs []vector) {
	for _, v := range vs {
		f.Add(h(v.wire))
	}
	for _, tc := range wireVectors {
		if tc.e == e {
			f.Add(h(tc.wire)[HeaderSize:])
		}
	}
	g := newGen(5, e)
	for range 20 {
		b, err := Marshal(e, g.value(0))
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{})
}

func fuzzCodec(f *testing.F, e Encoding) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Unmarshal(e, b)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		again, err := Marshal(e, v)
		if err != nil {
			if !errors.Is(err, ErrUnencodable) {
				t.Fatalf("re-encoding a decoded value: %v", err)
			}
			return
		}
		v2, err := Unmarshal(e, again)
		if err != nil {
			t.Fatalf("decoding our own encoding %x: %v", again, err)
		}
		if tag(v2) != tag(canon(e, v)) {
			t.Fatalf("unstable: %s vs %s", tag(canon(e, v)), tag(v2))
		}
	})
}

func FuzzBencode(f *testing.F) {
	seedCodec(f, Bencode, bencodeVectors)
	f.Add([]byte("u2:\xc3\xa9"))
	f.Add([]byte("i-0e"))
	f.Add([]byte("01:a"))
	fuzzCodec(f, Bencode)
}

func FuzzRencode(f *testing.F) {
	seedCodec(f, Rencode, rencodeVectors)
	f.Add(h("3d 2d 7f"))
	f.Add(h("3b 3b 3b"))
	fuzzCodec(f, Rencode)
}

func FuzzRencodePlus(f *testing.F) {
	seedCodec(f, RencodePlus, rencodePlusVectors)
	f.Add(h("30 2f"))
	f.Add(h("82 c3 28"))
	fuzzCodec(f, RencodePlus)
}

func fuzzDecompress(f *testing.F, c Compressor) {
	for _, in := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("xpra"), 300)} {
		out, _, err := Compress(nil, c, 3, in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(out)
	}
	if c == LZ4 {
		f.Add(h(lz4Vector))
	}
	lvl := MakeLevel(c, 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 20
		out, err := Decompress(nil, lvl, b, max)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if len(out) > max {
			t.Fatalf("%d bytes over the limit", len(out))
		}
		pre, err := decompressPrefix(lvl, b, 64)
		if err == nil && !bytes.HasPrefix(out, pre) {
			t.Fatalf("prefix decoder disagrees: %x vs %x", pre, out[:min(len(out), 64)])
		}
	})
}

// FuzzZlibPrefix compares the bounded inflater with compress/flate on raw
// DEFLATE data behind a valid zlib header (no checksum involved).
func FuzzZlibPrefix(f *testing.F) {
	for _, in := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("xpra window "), 300)} {
		for _, level := range []int{zlib.HuffmanOnly, zlib.NoCompression, 1, 9} {
			var buf bytes.Buffer
			w, _ := zlib.NewWriterLevel(&buf, level)
			_, _ = w.Write(in)
			_ = w.Close()
			f.Add(buf.Bytes()[2:], uint8(64))
		}
	}
	f.Fuzz(func(t *testing.T, deflate []byte, n uint8) {
		ours, err := zlibPrefix(append([]byte{0x78, 0x9c}, deflate...), int(n))
		theirs := make([]byte, n)
		got, ferr := io.ReadFull(flate.NewReader(bytes.NewReader(deflate)), theirs)
		if ferr != nil && ferr != io.ErrUnexpectedEOF && ferr != io.EOF {
			return // flate saw an error within the first n bytes' blocks
		}
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrSyntax) {
				t.Fatalf("untyped error %v", err)
			}
			// zlib (and so python) requires an end-of-block code up front;
			// compress/flate only fails when it needs it, so the whole
			// packet fails to decode there anyway.
			if ferr == nil && n > 0 && !strings.Contains(err.Error(), "end-of-block") {
				t.Fatalf("inflater refused what compress/flate decoded (%x): %v", theirs, err)
			}
			return
		}
		// flate may stop short at truncated input; the shorter output must
		// be a prefix of the longer, and equal when flate filled n bytes.
		short, long := ours, theirs[:got]
		if len(short) > len(long) {
			short, long = long, short
		}
		if !bytes.HasPrefix(long, short) || (ferr == nil && !bytes.Equal(ours, theirs)) {
			t.Fatalf("inflater %x, compress/flate %x (%v)", ours, theirs[:got], ferr)
		}
	})
}

func FuzzZlib(f *testing.F)   { fuzzDecompress(f, Zlib) }
func FuzzLZ4(f *testing.F)    { fuzzDecompress(f, LZ4) }
func FuzzBrotli(f *testing.F) { fuzzDecompress(f, Brotli) }

// FuzzFrameReader feeds whole streams to the frame and packet readers.
func FuzzFrameReader(f *testing.F) {
	for _, tc := range badFrames {
		f.Add(tc.in)
	}
	for _, tc := range wireVectors {
		f.Add(h(tc.wire))
	}
	f.Add([]byte("disconnect: nope\n"))
	var out bytes.Buffer
	pw := NewPacketWriter(NewFrameWriter(&out), Rencode)
	pw.Compressor, pw.CompressionLevel, pw.LargeArgSize = LZ4, 1, 100
	_ = pw.WritePacket(Packet{"draw", 1, bytes.Repeat([]byte("p"), 500), RawChunk{Data: []byte("raw")}})
	f.Add(out.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bufio.NewReader(bytes.NewReader(b)))
		fr.SetMaxSize(1 << 16)
		for range 64 {
			hd, payload, err := fr.Next()
			if err != nil {
				break
			}
			if int(hd.Size) != len(payload) || hd.Index > MaxChunkIndex {
				t.Fatalf("header %+v with %d payload bytes", hd, len(payload))
			}
			if hd.Index == 0 {
				_, _ = PeekType(hd, payload)
			}
		}
		pr := NewPacketReader(bufio.NewReader(bytes.NewReader(b)))
		for range 64 {
			p, _, err := pr.ReadPacket()
			if err != nil {
				break
			}
			if len(p) == 0 {
				t.Fatal("empty packet returned")
			}
		}
	})
}

// FuzzPeekType checks PeekType against DecodeMain on the same record.
func FuzzPeekType(f *testing.F) {
	for _, tc := range wireVectors {
		b := h(tc.wire)
		f.Add(b[1], b[2], b[HeaderSize:])
	}
	f.Fuzz(func(t *testing.T, flags, level byte, payload []byte) {
		hd := Header{Flags: Flags(flags), Level: Level(level)}
		typ, err := PeekType(hd, payload)
		p, derr := DecodeMain(hd, payload)
		if derr == nil && err == nil && typ != p.Type() {
			if _, isInt := p[0].(int64); !(isInt && typ == "") {
				t.Fatalf("PeekType %q, DecodeMain %q", typ, p.Type())
			}
		}
	})
}
