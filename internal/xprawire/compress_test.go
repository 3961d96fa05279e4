package xprawire

import (
	"bytes"
	"compress/zlib"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestLevelByte(t *testing.T) {
	for _, tc := range []struct {
		c     Compressor
		level int
		want  Level
	}{
		{Zlib, 3, 0x03}, {Zlib, 1, 0x01}, {LZ4, 1, 0x11}, {LZ4, 20, 0x1f}, {Brotli, 5, 0x45}, {Brotli, 15, 0x4f},
		{NoCompression, 5, 0}, {Zlib, 0, 0}, {LZ4, -1, 0},
	} {
		got := MakeLevel(tc.c, tc.level)
		if got != tc.want {
			t.Errorf("MakeLevel(%v, %d) = %#x, want %#x", tc.c, tc.level, got, tc.want)
		}
		if got != 0 {
			c, err := got.Compressor()
			if err != nil || c != tc.c || got.Value() != min(tc.level, 15) {
				t.Errorf("%#x: %v %v %d", got, c, err, got.Value())
			}
		}
	}
	for _, tc := range []struct {
		l    Level
		want Compressor
		err  error
	}{
		{0x00, NoCompression, nil}, {0x05, Zlib, nil}, {0x0f, Zlib, nil}, {0x11, LZ4, nil}, {0x40, Brotli, nil},
		{0x21, 0, ErrUnsupportedCompression}, {0x81, 0, ErrUnsupportedCompression}, {0x51, 0, ErrUnsupportedCompression},
		{0x31, 0, ErrUnsupportedCompression}, {0xf0, 0, ErrUnsupportedCompression},
	} {
		c, err := tc.l.Compressor()
		if c != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Level(%#x).Compressor() = %v, %v", tc.l, c, err)
		}
	}
	for c, name := range map[Compressor]string{NoCompression: "none", Zlib: "zlib", LZ4: "lz4", Brotli: "brotli"} {
		if c.String() != name {
			t.Errorf("%d: %q", c, c.String())
		}
	}
}

// python-lz4 lz4.block.compress(b"x"*1000, store_size=True) at level 1 (vector file:
// level byte 0x11, prefix e80300001f780100, 18 bytes), completed by hand.
var lz4Vector = "e8030000 (size 1000, LE) | 1f (1 literal, match 15+) | 78 ('x') | 0100 (offset 1) | ffffffd2 (match +975) | 50 (5 literals) | 7878787878"

func TestCompressVectors(t *testing.T) {
	x := bytes.Repeat([]byte("x"), 1000)
	got, err := Decompress(nil, 0x11, h(lz4Vector), 0)
	if err != nil || !bytes.Equal(got, x) {
		t.Fatalf("lz4 vector: %v", err)
	}
	ours, lvl, err := Compress(nil, LZ4, 1, x)
	if err != nil || lvl != 0x11 {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ours, h("e80300001f780100")) {
		t.Fatalf("lz4 prefix %x", ours[:8])
	}
	z, lvl, err := Compress(nil, Zlib, 3, x)
	if err != nil || lvl != 0x03 || !bytes.HasPrefix(z, h("785e")) {
		t.Fatalf("zlib level 3: %x %#x %v", z[:2], lvl, err)
	}
}

func TestCompressRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	inputs := [][]byte{nil, {0}, []byte("hello"), bytes.Repeat([]byte("abc"), 100000)}
	noise := make([]byte, 70000)
	for i := range noise {
		noise[i] = byte(r.UintN(256))
	}
	inputs = append(inputs, noise)
	for _, c := range []Compressor{NoCompression, Zlib, LZ4, Brotli} {
		for _, level := range []int{1, 3, 6, 9, 10, 15} {
			for _, in := range inputs {
				out, lvl, err := Compress([]byte("pre"), c, level, in)
				if err != nil {
					t.Fatalf("%v %d: %v", c, level, err)
				}
				if !bytes.HasPrefix(out, []byte("pre")) {
					t.Fatal("Compress must append")
				}
				back, err := Decompress([]byte("keep"), lvl, out[3:], 0)
				if err != nil {
					t.Fatalf("%v %d (%d bytes): %v", c, level, len(in), err)
				}
				if !bytes.Equal(back[4:], in) || string(back[:4]) != "keep" {
					t.Fatalf("%v %d: round trip differs", c, level)
				}
				if len(in) > 10 {
					if _, err := Decompress(nil, lvl, out[3:], len(in)-1); lvl != 0 && !errors.Is(err, ErrTooLarge) {
						t.Fatalf("%v %d: limit not enforced: %v", c, level, err)
					}
				}
			}
		}
	}
}

// Named bad compressed inputs.
func TestDecompressBad(t *testing.T) {
	zx, _, _ := Compress(nil, Zlib, 1, bytes.Repeat([]byte("x"), 5000))
	bx, _, _ := Compress(nil, Brotli, 1, bytes.Repeat([]byte("x"), 5000))
	for _, tc := range []struct {
		name string
		l    Level
		in   []byte
		max  int
		err  error
	}{
		{"lz4 no size", 0x11, h("e803"), 0, ErrTruncated},
		{"lz4 huge declared size", 0x11, h("ffffffff 00"), 0, ErrTooLarge},
		{"lz4 size over max", 0x11, h(lz4Vector), 999, ErrTooLarge},
		{"lz4 size beyond expansion", 0x11, h("00000010 | 10 78"), 0, ErrSyntax},
		{"lz4 declared size mismatch", 0x11, h("e9030000 1f78 0100 ffffffd2 50 7878787878"), 0, ErrSyntax},
		{"lz4 bad offset", 0x11, h("e8030000 1f78 0500 ffffffd2 50 7878787878"), 0, ErrSyntax},
		{"zlib garbage", 0x01, []byte("garbage!"), 0, ErrSyntax},
		{"zlib truncated", 0x01, zx[:len(zx)/2], 0, ErrTruncated},
		{"zlib bomb over max", 0x01, zx, 4000, ErrTooLarge},
		{"brotli garbage", 0x41, []byte("\xff\xff\xff\xff"), 0, ErrSyntax},
		{"brotli bomb over max", 0x41, bx, 4000, ErrTooLarge},
		{"lzo", 0x21, []byte("x"), 0, ErrUnsupportedCompression},
		{"zstd", 0x81, []byte("x"), 0, ErrUnsupportedCompression},
		{"raw over max", 0, []byte("abc"), 2, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Decompress([]byte("keep"), tc.l, tc.in, tc.max)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if string(out) != "keep" {
				t.Fatalf("dst changed on error: %q", out)
			}
		})
	}
	if _, _, err := Compress(nil, Compressor(9), 1, []byte("x")); !errors.Is(err, ErrUnsupportedCompression) {
		t.Fatalf("unknown compressor: %v", err)
	}
}

// TestDifferentialZlib: python's zlib.compress output decompresses here and ours in python.
func TestDifferentialZlib(t *testing.T) {
	p := startPyPeer(t)
	r := rand.New(rand.NewPCG(3, 3))
	for i := range 200 {
		var sb strings.Builder
		for sb.Len() < r.IntN(20000) {
			sb.WriteString([]string{"hello ", "xpra ", "\x00\x01", "window "}[r.IntN(4)])
		}
		in := []byte(sb.String())
		level := 1 + r.IntN(9)
		theirs, ok, err := p.callRaw('z', byte(level), in)
		if err != nil || !ok {
			t.Fatalf("python zlib: %v %s", err, theirs)
		}
		got, err := Decompress(nil, MakeLevel(Zlib, level), theirs, 0)
		if err != nil || !bytes.Equal(got, in) {
			t.Fatalf("value %d: decompressing python's zlib: %v", i, err)
		}
		pre, err := zlibPrefix(theirs, 64)
		if err != nil || !bytes.Equal(pre, in[:min(64, len(in))]) {
			t.Fatalf("value %d: prefix of python's zlib: %v", i, err)
		}
		ours, _, err := Compress(nil, Zlib, level, in)
		if err != nil {
			t.Fatal(err)
		}
		back, ok, err := p.callRaw('u', 0, ours)
		if err != nil || !ok || !bytes.Equal(back, in) {
			t.Fatalf("value %d: python could not decompress our zlib: %v %s", i, err, clip(back))
		}
	}
}

// TestZlibPrefix: the prefix inflater agrees with compress/zlib on every block
// type (stored, fixed, dynamic) and every prefix length.
func TestZlibPrefix(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	var inputs [][]byte
	inputs = append(inputs, nil, []byte("a"), []byte("hello hello hello hello"), bytes.Repeat([]byte{0}, 100000))
	for range 20 {
		b := make([]byte, r.IntN(3000))
		for i := range b {
			if r.IntN(3) == 0 {
				b[i] = byte(r.UintN(256))
			} else {
				b[i] = "xpra window "[i%12]
			}
		}
		inputs = append(inputs, b)
	}
	for _, level := range []int{zlib.HuffmanOnly, zlib.NoCompression, zlib.BestSpeed, 5, zlib.BestCompression} {
		for _, in := range inputs {
			var buf bytes.Buffer
			w, _ := zlib.NewWriterLevel(&buf, level)
			_, _ = w.Write(in)
			_ = w.Close()
			for _, n := range []int{0, 1, 7, 64, 1000, len(in), len(in) + 10} {
				got, err := zlibPrefix(buf.Bytes(), n)
				if err != nil {
					t.Fatalf("level %d, %d bytes, prefix %d: %v", level, len(in), n, err)
				}
				want := in[:min(n, len(in))]
				if !bytes.Equal(got, want) {
					t.Fatalf("level %d, %d bytes, prefix %d: got %x", level, len(in), n, clip(got))
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		in   string
		err  error
	}{
		{"empty", "", ErrTruncated},
		{"bad header check", "\x78\x02", ErrSyntax},
		{"not deflate", "\x79\x9c", ErrSyntax},
		{"preset dictionary", "\x78\xbb", ErrSyntax},
		{"block type 3", "\x78\x9c\x07", ErrSyntax},
		{"truncated block", "\x78\x9c\x05", ErrTruncated},
		{"stored length check", "\x78\x9c\x01\x05\x00\x00\x00", ErrSyntax},
	} {
		if _, err := zlibPrefix([]byte(tc.in), 64); !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
	}
}
