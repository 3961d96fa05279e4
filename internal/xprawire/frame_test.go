package xprawire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// Whole records observed from the real implementations (vector files, WIRE lines).
var wireVectors = []struct {
	name   string
	e      Encoding
	packet Packet
	flags  Flags
	wire   string
}{
	{"3.1.3 rencode hello", Rencode, Packet{"hello", Dict{{"version", "3.1.3"}, {"rencode", true}}}, 0,
		"50 ('P') | 01 (flags: rencode) | 00 (level: none) | 00 (index: main) | 0000001f (size 31) |" +
			" c2 (list 2) | 85 68656c6c6f (\"hello\") | 68 (dict 2) | 87 76657273696f6e (\"version\") | 85 332e312e33 (\"3.1.3\") |" +
			" 87 72656e636f6465 (\"rencode\") | 43 (True)"},
	{"3.1.3 bencode hello", Bencode, Packet{"hello", Dict{{"version", "3.1.3"}, {"rencode", true}}}, 0,
		"50 | 00 (flags: bencode) | 00 | 00 | 00000027 (size 39) |" +
			" 6c (l) | 353a68656c6c6f (5:hello) | 64 (d) | 373a76657273696f6e (7:version) | 353a332e312e33 (5:3.1.3) |" +
			" 373a72656e636f6465 (7:rencode) | 693165 (i1e) | 65 (e) | 65 (e)"},
	{"6.3 rencodeplus hello with flush", RencodePlus, Packet{"hello", Dict{{"version", "6.3"}, {"rencodeplus", true}, {"salt", []byte{1, 2}}}}, FlagFlush,
		"50 | 18 (flags: rencodeplus|flush) | 00 | 00 | 0000002a (size 42) |" +
			" c2 | 85 68656c6c6f | 69 (dict 3) | 87 76657273696f6e | 83 362e33 (\"6.3\") |" +
			" 8b 72656e636f6465706c7573 (\"rencodeplus\") | 43 | 84 73616c74 (\"salt\") | 322f 0102 (bytes 2)"},
}

func TestWireVectors(t *testing.T) {
	for _, tc := range wireVectors {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			pw := NewPacketWriter(NewFrameWriter(&out), tc.e)
			pw.Flush = tc.flags&FlagFlush != 0
			if err := pw.WritePacket(tc.packet); err != nil {
				t.Fatal(err)
			}
			want := h(tc.wire)
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("wrote %x\n want %x", out.Bytes(), want)
			}
			pr := NewPacketReader(bufio.NewReader(bytes.NewReader(want)))
			p, hdr, err := pr.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Flags != tc.e.Flag()|tc.flags || hdr.Size != uint32(len(want)-HeaderSize) {
				t.Fatalf("header %+v", hdr)
			}
			if p.Type() != "hello" {
				t.Fatalf("type %q", p.Type())
			}
			caps := Caps{p[1].(Dict)}
			codec := "rencode"
			if tc.e == RencodePlus {
				codec = "rencodeplus"
			}
			if v, _ := caps.Str("version"); v == "" || !caps.Bool(codec, false) {
				t.Fatalf("caps %s", tag(p[1]))
			}
			typ, err := PeekType(hdr, want[HeaderSize:])
			if err != nil || typ != "hello" {
				t.Fatalf("PeekType = %q, %v", typ, err)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	b := h("50 | 11 (flags rencode|rencodeplus) | 43 (brotli 3) | 02 (chunk 2) | 01020304 (size)")
	hd, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Flags: FlagRencode | FlagRencodePlus, Level: 0x43, Index: 2, Size: 0x01020304}
	if hd != want {
		t.Fatalf("got %+v want %+v", hd, want)
	}
	var out [HeaderSize]byte
	hd.Put(out[:])
	if !bytes.Equal(out[:], b) {
		t.Fatalf("Put = %x", out)
	}
	if _, err := ParseHeader(b[:7]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short header: %v", err)
	}
	if _, err := ParseHeader(h("51 00 00 00 00000000")); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
}

func TestEncodingFlags(t *testing.T) {
	for _, tc := range []struct {
		f    Flags
		want Encoding
		err  error
	}{
		{0x00, Bencode, nil},
		{0x08, Bencode, nil},
		{0x01, Rencode, nil},
		{0x09, Rencode, nil},
		{0x10, RencodePlus, nil},
		{0x18, RencodePlus, nil},
		{0x11, RencodePlus, nil}, // 6.x precedence
		{0x04, 0, ErrUnsupportedEncoding},
		{0x02, 0, ErrCipher},
		{0x12, 0, ErrCipher},
	} {
		got, err := EncodingForFlags(tc.f)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("EncodingForFlags(%#x) = %v, %v; want %v, %v", tc.f, got, err, tc.want, tc.err)
		}
	}
	for e, want := range map[Encoding]struct {
		name string
		flag Flags
	}{Bencode: {"bencode", 0}, Rencode: {"rencode", 1}, RencodePlus: {"rencodeplus", 0x10}} {
		if e.String() != want.name || e.Flag() != want.flag {
			t.Errorf("%d: %q %#x", e, e.String(), e.Flag())
		}
	}
}

func rec(h Header, payload []byte) []byte {
	var b [HeaderSize]byte
	h.Size = uint32(len(payload))
	h.Put(b[:])
	return append(b[:], payload...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var pingRencode = h("c2 8470696e67 05") // ["ping", 5]

// Named bad inputs for the frame reader.
var badFrames = []struct {
	name string
	in   []byte
	err  error
}{
	{"short header", h("50 01 00"), ErrTruncated},
	{"bad magic", h("51 01 00 00 00000001 c0"), ErrBadMagic},
	{"garbage P*8", []byte("PPPPPPPP"), ErrChunkIndex}, // index 0x50
	{"oversize", h("50 01 00 00 01000001"), ErrTooLarge},
	{"abs oversize", h("50 01 00 00 ffffffff"), ErrTooLarge},
	{"truncated payload", h("50 01 00 00 00000010 c2"), ErrTruncated},
	{"chunk index 16", h("50 00 00 10 00000000"), ErrChunkIndex},
	{"4 chunks", cat(rec(Header{Index: 1}, nil), rec(Header{Index: 2}, nil), rec(Header{Index: 3}, nil), rec(Header{Index: 4}, nil)), ErrTooManyChunks},
	{"duplicate chunk", cat(rec(Header{Index: 1}, nil), rec(Header{Index: 1}, nil)), ErrDuplicateChunk},
	{"zero byte", []byte{0}, ErrTruncated},
}

func readAll(fr *FrameReader) error {
	for range 100 {
		if _, _, err := fr.Next(); err != nil {
			return err
		}
	}
	return nil
}

func TestFrameReaderBadInputs(t *testing.T) {
	for _, tc := range badFrames {
		t.Run(tc.name, func(t *testing.T) {
			err := readAll(NewFrameReader(bufio.NewReader(bytes.NewReader(tc.in))))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestFrameReaderLimits(t *testing.T) {
	in := rec(Header{Flags: FlagRencode}, make([]byte, 100))
	fr := NewFrameReader(bufio.NewReader(bytes.NewReader(cat(in, in))))
	fr.SetMaxSize(100)
	if _, p, err := fr.Next(); err != nil || len(p) != 100 {
		t.Fatalf("at the limit: %v", err)
	}
	fr.SetMaxSize(99)
	if _, _, err := fr.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	fr.SetMaxSize(1 << 31)
	if fr.MaxSize() != AbsMaxPacketSize {
		t.Fatalf("clamp: %d", fr.MaxSize())
	}
	fr.SetMaxSize(0)
	if fr.MaxSize() != DefaultMaxPacketSize {
		t.Fatalf("default: %d", fr.MaxSize())
	}
	// The size is refused before the payload is read: nothing after the header is consumed.
	r := bufio.NewReader(bytes.NewReader(cat(h("50 01 00 00 7fffffff"), []byte("rest"))))
	if _, _, err := NewFrameReader(r).Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "rest" {
		t.Fatalf("payload was read: %q", rest)
	}
	// chunk counting restarts after each main record
	three := cat(rec(Header{Index: 1}, nil), rec(Header{Index: 2}, nil), rec(Header{Index: 3}, nil), rec(Header{Flags: FlagRencode}, pingRencode))
	if err := readAll(NewFrameReader(bufio.NewReader(bytes.NewReader(cat(three, three))))); err != io.EOF {
		t.Fatalf("3+3 chunks: %v", err)
	}
	if err := readAll(NewFrameReader(bufio.NewReader(bytes.NewReader(nil)))); err != io.EOF {
		t.Fatalf("empty stream: %v", err)
	}
}

func TestDisconnectText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"disconnect: invalid packet encoding: 'rencode' decoder is not available\n", "invalid packet encoding: 'rencode' decoder is not available"},
		{"disconnect protocol error\r\n", "protocol error"},
		{"disconnect: connection failed, no sessions\n" + strings.Repeat("x", 10), "connection failed, no sessions"},
		{"disconnect: no newline at EOF", "no newline at EOF"},
		{"disconnect", ""},
		{"disconnect: " + strings.Repeat("y", 10000), strings.Repeat("y", maxDisconnectLine-len("disconnect: "))},
	} {
		_, _, err := NewFrameReader(bufio.NewReader(strings.NewReader(tc.in))).Next()
		var de *DisconnectTextError
		if !errors.As(err, &de) {
			t.Fatalf("%q: err = %v, want DisconnectTextError", tc.in, err)
		}
		if de.Text != tc.want {
			t.Fatalf("%q: text %q, want %q", tc.in, de.Text, tc.want)
		}
		if !strings.HasPrefix(de.Error(), "peer sent a text disconnect: ") {
			t.Fatalf("message %q", de.Error())
		}
	}
	// after a valid record the same bytes are a bad header, not a text disconnect
	in := cat(rec(Header{Flags: FlagRencode}, pingRencode), []byte("disconnect: late\n"))
	err := readAll(NewFrameReader(bufio.NewReader(bytes.NewReader(in))))
	if !errors.Is(err, ErrBadMagic) {
		t.Fatalf("late text: %v", err)
	}
	// other text is a bad header
	_, _, err = NewFrameReader(bufio.NewReader(strings.NewReader("HTTP/1.1 400 Bad Request\r\n"))).Next()
	if !errors.Is(err, ErrBadMagic) {
		t.Fatalf("http: %v", err)
	}
}

func TestFrameWriter(t *testing.T) {
	var out bytes.Buffer
	fw := NewFrameWriter(&out)
	if err := fw.WriteFrame(Header{Flags: FlagRencode, Size: 999}, pingRencode); err != nil {
		t.Fatal(err)
	}
	if want := h("50 01 00 00 00000007 c28470696e6705"); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("WriteFrame = %x, want %x (Size is set from the payload)", out.Bytes(), want)
	}
	out.Reset()
	frames := []Frame{{Header{Level: 0, Index: 1}, []byte("ab")}, {Header{Flags: FlagRencode}, pingRencode}}
	if err := fw.WriteFrames(frames); err != nil {
		t.Fatal(err)
	}
	if want := h("50 00 00 01 00000002 6162 | 50 01 00 00 00000007 c28470696e6705"); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("WriteFrames = %x, want %x", out.Bytes(), want)
	}
	if err := fw.WriteFrame(Header{}, make([]byte, AbsMaxPacketSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize write: %v", err)
	}
	if err := NewFrameWriter(failWriter{}).WriteFrame(Header{}, nil); err == nil {
		t.Fatal("write error not returned")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

func TestPacketChunks(t *testing.T) {
	pixels := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	icon := []byte("icon data, already compressed")
	for _, e := range []Encoding{Bencode, Rencode, RencodePlus} {
		for _, c := range []Compressor{Zlib, LZ4, Brotli} {
			t.Run(e.String()+"/"+c.String(), func(t *testing.T) {
				var out bytes.Buffer
				pw := NewPacketWriter(NewFrameWriter(&out), e)
				pw.Compressor, pw.CompressionLevel, pw.LargeArgSize = c, 3, 4096
				zicon, lvl, err := Compress(nil, c, 1, icon)
				if err != nil {
					t.Fatal(err)
				}
				p := Packet{"draw", 1, 2, 3, 640, 480, "rgb24", pixels, RawChunk{Data: zicon, Level: lvl}, strings.Repeat("big caps ", 100)}
				frames, err := pw.EncodePacket(p)
				if err != nil {
					t.Fatal(err)
				}
				if len(frames) != 3 || frames[0].Header.Index != 7 || frames[1].Header.Index != 8 || frames[2].Header.Index != 0 {
					t.Fatalf("frames %+v", headers(frames))
				}
				if frames[0].Header.Level != MakeLevel(c, 3) || frames[1].Header.Level != lvl {
					t.Fatalf("chunk levels %+v", headers(frames))
				}
				main := frames[2].Header
				if main.Level != MakeLevel(c, 3) || main.Flags != e.Flag() {
					t.Fatalf("main header %+v: big main packets are compressed, with the encoder flag", main)
				}
				if _, ok := p[7].([]byte); !ok {
					t.Fatal("EncodePacket modified the caller's packet")
				}
				if err := pw.WritePacket(p); err != nil {
					t.Fatal(err)
				}
				if err := pw.WritePacket(Packet{"ping", 5}); err != nil {
					t.Fatal(err)
				}
				pr := NewPacketReader(bufio.NewReader(&out))
				got, hdr, err := pr.ReadPacket()
				if err != nil {
					t.Fatal(err)
				}
				if hdr.Index != 0 || got.Type() != "draw" || len(got) != len(p) {
					t.Fatalf("got %s", clip([]byte(tag([]any(got)))))
				}
				if !bytes.Equal(got[7].([]byte), pixels) || !bytes.Equal(got[8].([]byte), icon) {
					t.Fatal("chunks not substituted")
				}
				if tag(canon(e, p[9])) != tag(got[9]) {
					t.Fatal("inline argument changed")
				}
				got, hdr, err = pr.ReadPacket()
				if err != nil || got.Type() != "ping" || hdr.Level != 0 {
					t.Fatalf("small packet: %v %+v %v", got, hdr, err)
				}
				if _, _, err := pr.ReadPacket(); err != io.EOF {
					t.Fatalf("end: %v", err)
				}
			})
		}
	}
}

func headers(fs []Frame) []Header {
	var hs []Header
	for _, f := range fs {
		hs = append(hs, f.Header)
	}
	return hs
}

func TestPacketWriterOptions(t *testing.T) {
	pw := NewPacketWriter(NewFrameWriter(io.Discard), Rencode)
	big := strings.Repeat("x", 1000)
	// level 0: never compressed, large []byte stays inline
	fs, err := pw.EncodePacket(Packet{"x", []byte(big), big})
	if err != nil || len(fs) != 1 || fs[0].Header.Level != 0 {
		t.Fatalf("level 0: %+v %v", headers(fs), err)
	}
	pw.Compressor, pw.CompressionLevel = LZ4, 1
	fs, _ = pw.EncodePacket(Packet{"x", strings.Repeat("y", MinCompressSize-10)})
	if fs[0].Header.Level != 0 {
		t.Fatal("packets up to MinCompressSize must not be compressed")
	}
	pw.Flush = true
	fs, _ = pw.EncodePacket(Packet{"x", big})
	if fs[0].Header.Level != 0x11 || fs[0].Header.Flags != FlagRencode|FlagFlush {
		t.Fatalf("lz4 level 1 + flush: %+v", fs[0].Header)
	}
	// more than three raw chunks is refused; large bytes beyond three stay inline
	rc := RawChunk{Data: []byte("a")}
	if _, err := pw.EncodePacket(Packet{"x", rc, rc, rc, rc}); !errors.Is(err, ErrTooManyChunks) {
		t.Fatalf("4 raw chunks: %v", err)
	}
	pw.LargeArgSize = 10
	fs, err = pw.EncodePacket(Packet{"x", []byte(big), []byte(big), []byte(big), []byte(big)})
	if err != nil || len(fs) != 4 {
		t.Fatalf("large bytes: %d frames, %v", len(fs), err)
	}
	if _, err := pw.EncodePacket(Packet{}); !errors.Is(err, ErrUnencodable) {
		t.Fatalf("empty packet: %v", err)
	}
	if _, err := NewPacketWriter(NewFrameWriter(io.Discard), Bencode).EncodePacket(Packet{"x", nil}); !errors.Is(err, ErrUnencodable) {
		t.Fatalf("bencode None: %v", err)
	}
}

func TestPacketReaderErrors(t *testing.T) {
	main := func(p Packet) []byte {
		b, err := Marshal(Rencode, p)
		if err != nil {
			t.Fatal(err)
		}
		return rec(Header{Flags: FlagRencode}, b)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"chunk beyond packet", cat(rec(Header{Index: 5}, []byte("x")), main(Packet{"ping"})), ErrChunkIndex},
		{"unknown alias", main(Packet{int64(7), 1}), ErrSyntax},
		{"not a list", rec(Header{Flags: FlagRencode}, h("05")), ErrSyntax},
		{"empty list", rec(Header{Flags: FlagRencode}, h("c0")), ErrSyntax},
		{"cipher", rec(Header{Flags: FlagCipher}, h("c0")), ErrCipher},
		{"yaml", rec(Header{Flags: FlagYAML}, []byte("- ping\n")), ErrUnsupportedEncoding},
		{"lzo", rec(Header{Flags: FlagRencode, Level: 0x21}, []byte("x")), ErrUnsupportedCompression},
		{"two compressor bits", rec(Header{Flags: FlagRencode, Level: 0x51}, []byte("x")), ErrUnsupportedCompression},
		{"bad zlib", rec(Header{Flags: FlagRencode, Level: 0x01}, []byte("not zlib")), ErrSyntax},
		{"bad chunk compression", cat(rec(Header{Index: 1, Level: 0x11}, []byte{1}), main(Packet{"x", ""})), ErrTruncated},
		{"trailing bytes", rec(Header{Flags: FlagRencode}, h("c18470696e67 00")), ErrSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewPacketReader(bufio.NewReader(bytes.NewReader(tc.in))).ReadPacket()
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	// aliases we advertised are mapped back
	pr := NewPacketReader(bufio.NewReader(bytes.NewReader(main(Packet{int64(1), Dict{}}))))
	pr.Aliases = map[int64]string{1: "hello"}
	p, _, err := pr.ReadPacket()
	if err != nil || p.Type() != "hello" {
		t.Fatalf("alias: %v %v", p, err)
	}
}

func TestPeekType(t *testing.T) {
	long := strings.Repeat("t", 70)
	for _, e := range []Encoding{Bencode, Rencode, RencodePlus} {
		for _, c := range []Compressor{NoCompression, Zlib, LZ4, Brotli} {
			for _, typ := range []string{"hello", "draw", long} {
				body, err := Marshal(e, Packet{typ, strings.Repeat("payload ", 500), 1})
				if err != nil {
					t.Fatal(err)
				}
				payload, lvl, err := Compress(nil, c, 1, body)
				if err != nil {
					t.Fatal(err)
				}
				hd := Header{Flags: e.Flag(), Level: lvl}
				got, err := PeekType(hd, payload)
				if err != nil || got != typ {
					t.Fatalf("%v/%v: PeekType = %q, %v; want %q", e, c, got, err, typ)
				}
			}
			body, _ := Marshal(e, Packet{int64(17), "x"})
			payload, lvl, _ := Compress(nil, c, 1, body)
			if got, err := PeekType(Header{Flags: e.Flag(), Level: lvl}, payload); err != nil || got != "" {
				t.Fatalf("%v/%v: alias peek = %q, %v", e, c, got, err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		h    Header
		in   []byte
		err  error
	}{
		{"empty", Header{Flags: FlagRencode}, nil, ErrTruncated},
		{"not a list", Header{Flags: FlagRencode}, h("45"), ErrSyntax},
		{"empty list", Header{Flags: FlagRencode}, h("c0"), ErrSyntax},
		{"bencode not a list", Header{}, []byte("i1e"), ErrSyntax},
		{"truncated type", Header{Flags: FlagRencode}, h("c1 85 6865"), ErrTruncated},
		{"chunk", Header{Index: 1}, h("c0"), ErrChunkIndex},
		{"cipher", Header{Flags: FlagCipher}, h("c0"), ErrCipher},
		{"lzo", Header{Flags: FlagRencode, Level: 0x21}, h("c0"), ErrUnsupportedCompression},
		{"lz4 without prefix", Header{Flags: FlagRencode, Level: 0x11}, h("00"), ErrTruncated},
		{"lz4 bad offset", Header{Flags: FlagRencode, Level: 0x11}, h("40000000 | 1f c2 0000 00"), ErrSyntax},
	} {
		if _, err := PeekType(tc.h, tc.in); !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
	}
}
