package edge

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// A 3.1 draw decoded from rencode (every string is bytes) becomes what a
// 6.x client reads: names and option keys str, the pixels bytes even when
// they happen to be valid UTF-8.
func TestTranslateModernizesButKeepsBinaryArgs(t *testing.T) {
	opts := xprawire.Dict{{Key: []byte("zlib"), Value: int64(0)}, {Key: []byte("bench.tag"), Value: []byte("abc")}}
	p := xprawire.Packet{[]byte("draw"), int64(1), int64(0), int64(0), int64(8), int64(8), []byte("rgb24"), []byte("ascii pixels"), int64(3), int64(24), opts}
	p = translatePacket(p, xprawire.Rencode, xprawire.RencodePlus)
	if p[0] != "draw" || p[6] != "rgb24" {
		t.Fatalf("type/encoding not str: %#v %#v", p[0], p[6])
	}
	if _, ok := p[7].([]byte); !ok {
		t.Fatalf("pixels became %T", p[7])
	}
	d := p[10].(xprawire.Dict)
	if d[0].Key != "zlib" || d[1].Key != "bench.tag" || d[1].Value != "abc" {
		t.Fatalf("options %#v", d)
	}
	// Invalid UTF-8 stays bytes (rencodeplus could not carry it as str).
	q := translatePacket(xprawire.Packet{[]byte("key-action"), int64(1), []byte{0xff, 0xfe}}, xprawire.Rencode, xprawire.RencodePlus)
	if _, ok := q[2].([]byte); !ok {
		t.Fatalf("invalid utf-8 became %T", q[2])
	}
	// Every binary argument listed stays bytes.
	for typ, idx := range binaryArgs {
		p := xprawire.Packet{[]byte(typ)}
		for i := 1; i <= 10; i++ {
			p = append(p, []byte("text"))
		}
		p = translatePacket(p, xprawire.Bencode, xprawire.RencodePlus)
		for _, i := range idx {
			if _, ok := p[i].([]byte); !ok {
				t.Errorf("%s[%d] became %T", typ, i, p[i])
			}
		}
	}
	// Toward an old peer nothing changes but the type name.
	r := translatePacket(xprawire.Packet{"draw", "x", []byte("y")}, xprawire.RencodePlus, xprawire.Rencode)
	if r[1] != "x" || !bytes.Equal(r[2].([]byte), []byte("y")) {
		t.Fatalf("%#v", r)
	}
}

// A 3.1 hello toward a 6.x server: keys str; salts stay bytes.
func TestTranslateCapsModern(t *testing.T) {
	d := xprawire.Dict{
		{Key: []byte("version"), Value: []byte("3.1.3")},
		{Key: []byte("encodings"), Value: []any{[]byte("png"), []byte("rgb24")}},
		{Key: []byte("challenge_client_salt"), Value: []byte("saltsalt")},
	}
	d = translateCaps(d, xprawire.Rencode, xprawire.RencodePlus)
	c := xprawire.Caps{Dict: d}
	if v, _ := d.Get("version"); v != "3.1.3" {
		t.Fatalf("version %#v", v)
	}
	if l := c.StrList("encodings"); len(l) != 2 || d[1].Value.([]any)[0] != "png" {
		t.Fatalf("encodings %#v", d[1].Value)
	}
	if _, ok := d[2].Value.([]byte); !ok || d[2].Key != "challenge_client_salt" {
		t.Fatalf("salt %#v", d[2])
	}
}

// A 6.x hello toward a 3.1 peer: nested caps flat, "" is the value itself,
// the dictionaries 3.1 reads stay, the keymap gets its xkbmap_ names.
func TestTranslateCapsLegacy(t *testing.T) {
	keymap := xprawire.Dict{
		{Key: "layout", Value: "us"},
		{Key: "keycodes", Value: []any{[]any{int64(65), "a", int64(38), int64(0), int64(0)}}},
		{Key: "x11_keycodes", Value: xprawire.Dict{{Key: int64(38), Value: []any{"a", "A"}}}},
	}
	d := xprawire.Dict{
		{Key: "version", Value: "6.5"},
		{Key: "encoding", Value: xprawire.Dict{{Key: "", Value: "auto"}, {Key: "core", Value: []any{"png"}}}},
		{Key: "clipboard", Value: xprawire.Dict{{Key: "", Value: true}, {Key: "loop-uuids", Value: xprawire.Dict{{Key: "CLIPBOARD", Value: "u"}}}}},
		{Key: "keymap", Value: keymap},
		{Key: "encoding.core", Value: []any{"jpeg"}}, // a flat duplicate: the last wins
	}
	d = translateCaps(d, xprawire.RencodePlus, xprawire.Rencode)
	want := map[string]string{
		"version":              "6.5",
		"encoding":             "auto",
		"encoding.core":        "[jpeg]",
		"clipboard":            "true",
		"clipboard.loop-uuids": "[{CLIPBOARD u}]",
		"keymap.layout":        "us",
		"xkbmap_layout":        "us",
		"xkbmap_x11_keycodes":  "[{38 [a A]}]",
		"xkbmap_keycodes":      "[[65 a 38 0 0]]",
	}
	got := map[string]string{}
	for _, kv := range d {
		k := kv.Key.(string)
		if _, dup := got[k]; dup {
			t.Errorf("key %q twice", k)
		}
		got[k] = fmt.Sprint(kv.Value)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// keymap-changed carries the same dictionary.
	p := translatePacket(xprawire.Packet{"keymap-changed", xprawire.Dict{{Key: "keymap", Value: keymap}}, true}, xprawire.RencodePlus, xprawire.Rencode)
	if v, ok := p[1].(xprawire.Dict).Get("xkbmap_layout"); !ok || v != "us" {
		t.Fatalf("keymap-changed %#v", p[1])
	}
}

// bencode peers cannot carry None or floats.
func TestTranslateBencode(t *testing.T) {
	p := translatePacket(xprawire.Packet{"x", nil, 1.5, []any{nil}, xprawire.Dict{{Key: "f", Value: float32(2)}}}, xprawire.RencodePlus, xprawire.Bencode)
	if _, err := xprawire.Marshal(xprawire.Bencode, []any(p)); err != nil {
		t.Fatal(err)
	}
}

// A raw chunk the receiver cannot decompress is decompressed, within the
// limit; one it can is kept as it is.
func TestBridgeChunk(t *testing.T) {
	data := bytes.Repeat([]byte("pixels"), 1000)
	z, lvl, err := xprawire.Compress(nil, xprawire.Zlib, 1, data)
	if err != nil {
		t.Fatal(err)
	}
	c := &xprawire.RawChunk{Data: z, Level: lvl}
	if err := bridgeChunk(c, &peer{compressors: []string{"zlib"}}, 1<<20); err != nil || c.Level != lvl {
		t.Fatalf("kept: %v level %v", err, c.Level)
	}
	if err := bridgeChunk(c, &peer{compressors: []string{"lz4"}}, 100); err == nil {
		t.Fatal("decompressed past the limit")
	}
	if err := bridgeChunk(c, &peer{compressors: []string{"lz4"}}, 1<<20); err != nil || c.Level != 0 || !bytes.Equal(c.Data, data) {
		t.Fatalf("decompressed: %v level %v", err, c.Level)
	}
}

// The proxy redials in the other generation's encoder only when the
// backend said it cannot decode ours; legs that share an encoder are
// never bridged.
func TestBridgeDecisions(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&xprawire.DisconnectTextError{Text: "invalid packet encoding: 'rencode' decoder is not available"}, true},
		{&xprawire.DisconnectTextError{Text: "failed to parse bencode packet"}, true},
		{&xprawire.DisconnectTextError{Text: "invalid compression: zlib is not available"}, true},
		{&xprawire.DisconnectTextError{Text: "login timeout"}, false},
		{io.EOF, true},
		{fmt.Errorf("dial: refused"), false},
	} {
		if got := refusedEncoding(tc.err); got != tc.want {
			t.Errorf("refusedEncoding(%v) = %v", tc.err, got)
		}
	}
	p6 := &peer{encoders: []string{"rencodeplus"}}
	p3 := &peer{encoders: []string{"rencode", "bencode"}}
	p5 := &peer{encoders: []string{"rencodeplus", "rencode", "bencode"}}
	if !needBridge(p6, p3) || !needBridge(p3, p6) || needBridge(p5, p3) || needBridge(p5, p6) || needBridge(p6, p6) {
		t.Fatal("needBridge")
	}
	if alternateEncoding(xprawire.RencodePlus) != xprawire.Rencode || alternateEncoding(xprawire.Bencode) != xprawire.RencodePlus {
		t.Fatal("alternateEncoding")
	}
}

// Toward a 3.1 backend of a zlib-less (6.x) client zlib is not offered,
// so the backend never compresses pixels with it.
func TestBridgeHelloCaps(t *testing.T) {
	d := xprawire.Dict{}
	bridgeHelloCaps(&d, &peer{compressors: []string{"lz4", "brotli"}}, xprawire.Rencode)
	c := xprawire.Caps{Dict: d}
	if c.Bool("zlib", true) || c.Bool("encoding.rgb_zlib", true) || !c.Bool("lz4", false) || !c.Bool("rencodeplus", false) || !c.Bool("rencode", false) {
		t.Fatalf("%v", d)
	}
	d = xprawire.Dict{}
	bridgeHelloCaps(&d, &peer{compressors: []string{"zlib"}}, xprawire.RencodePlus)
	if c := (xprawire.Caps{Dict: d}); !c.Bool("zlib", false) {
		t.Fatalf("%v", d)
	}
}

func TestEncoderMemo(t *testing.T) {
	var m encoderMemo
	if _, ok := m.get("tcp://a/", xprawire.Rencode); ok {
		t.Fatal("empty memo")
	}
	m.set("tcp://a/", xprawire.Rencode, xprawire.RencodePlus)
	if e, ok := m.get("tcp://a/", xprawire.Rencode); !ok || e != xprawire.RencodePlus {
		t.Fatal("not remembered")
	}
	if _, ok := m.get("tcp://a/", xprawire.Bencode); ok {
		t.Fatal("other client encoder")
	}
	m.set("tcp://a/", xprawire.Rencode, xprawire.Rencode)
	if _, ok := m.get("tcp://a/", xprawire.Rencode); ok {
		t.Fatal("not forgotten")
	}
	for i := 0; i < memoMax+10; i++ {
		m.set(fmt.Sprint(i), xprawire.Rencode, xprawire.RencodePlus)
	}
	if len(m.m) > memoMax {
		t.Fatalf("unbounded: %d", len(m.m))
	}
}
