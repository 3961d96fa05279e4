package edge

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// A 3.1 draw decoded from rencode (every string is bytes) becomes what a
// 6.x client reads: names and option keys str, the pixels bytes even when
// they happen to be valid UTF-8.
func TestTranslateModernizesButKeepsBinaryArgs(t *testing.T) {
	opts := xprawire.Dict{{Key: []byte("zlib"), Value: int64(0)}, {Key: []byte("bench.tag"), Value: []byte("abc")}}
	p := xprawire.Packet{[]byte("draw"), int64(1), int64(0), int64(0), int64(8), int64(8), []byte("rgb24"), []byte("ascii pixels"), int64(3), int64(24), opts}
	p = mustTranslate(t, p, xprawire.Rencode, xprawire.RencodePlus)
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
	q := mustTranslate(t, xprawire.Packet{[]byte("key-action"), int64(1), []byte{0xff, 0xfe}}, xprawire.Rencode, xprawire.RencodePlus)
	if _, ok := q[2].([]byte); !ok {
		t.Fatalf("invalid utf-8 became %T", q[2])
	}
	// Every binary argument listed stays bytes.
	for typ, idx := range binaryArgs {
		p := xprawire.Packet{[]byte(typ)}
		for i := 1; i <= 10; i++ {
			p = append(p, []byte("text"))
		}
		p = mustTranslate(t, p, xprawire.Bencode, xprawire.RencodePlus)
		for _, i := range idx {
			if _, ok := p[i].([]byte); !ok {
				t.Errorf("%s[%d] became %T", typ, i, p[i])
			}
		}
	}
	// Toward an old peer nothing changes but the type name.
	r := mustTranslate(t, xprawire.Packet{"draw", "x", []byte("y")}, xprawire.RencodePlus, xprawire.Rencode)
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
	d = mustTranslateCaps(t, d, xprawire.Rencode, xprawire.RencodePlus)
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
	d = mustTranslateCaps(t, d, xprawire.RencodePlus, xprawire.Rencode)
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
	p := mustTranslate(t, xprawire.Packet{"keymap-changed", xprawire.Dict{{Key: "keymap", Value: keymap}}, true}, xprawire.RencodePlus, xprawire.Rencode)
	if v, ok := p[1].(xprawire.Dict).Get("xkbmap_layout"); !ok || v != "us" {
		t.Fatalf("keymap-changed %#v", p[1])
	}
}

// bencode peers cannot carry None or floats.
func TestTranslateBencode(t *testing.T) {
	p := mustTranslate(t, xprawire.Packet{"x", nil, 1.5, []any{nil}, xprawire.Dict{{Key: "f", Value: float32(2)}}}, xprawire.RencodePlus, xprawire.Bencode)
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

// newBridgeFixture is a proxy in front of a synthetic server strict like
// xpra 3.1.3 (it refuses rencodeplus), for 6.x-style clients.
func newBridgeFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	legacy := benchpeer.NewServer(benchpeer.NewPool())
	legacy.Legacy = true
	go func() { _ = legacy.Serve(ln) }()
	t.Cleanup(func() { legacy.Close(); ln.Close() })
	users := []auth.User{{Name: "foo", Password: "bar", Displays: []string{"tcp://" + ln.Addr().String() + "/"}}}
	f := newFixture(t, users, mutate)
	f.backend = legacy
	return f
}

// rawLogin6 logs in as a 6.x client would (rencodeplus only).
func (f *fixture) rawLogin6() (*xpraclient.Conn, net.Conn) {
	f.t.Helper()
	c := f.dial()
	xc := xpraclient.New(c, xprawire.RencodePlus)
	caps := xpraclient.BaseCaps("foo")
	caps.Set("version", "6.5.5")
	caps.Set("rencode", false)
	caps.Set("bencode", false)
	caps.Set("encoders", []any{"rencodeplus"})
	caps.Set("compressors", []any{"lz4"})
	caps.Set("zlib", false)
	caps.Set("bench.mode", "idle")
	if _, err := xc.Hello(caps, []byte("bar"), true, false, 10*time.Second); err != nil {
		f.t.Fatalf("login: %v", err)
	}
	return xc, c
}

// A 6.x-style client through the proxy to a 3.1.3-style server: bridged,
// every byte of every draw, cursor and icon arrives (the client refuses
// anything but rencodeplus, the server anything but rencode), pings
// cross, and the second session dials the backend once.
func TestBridgeDeliversEveryByte(t *testing.T) {
	f := newBridgeFixture(t, nil)
	for i := 0; i < 2; i++ {
		s, err := benchpeer.Login(f.dial(), f.pool, benchpeer.LoginOptions{Gen: benchpeer.Gen6, Username: "foo", Password: "bar",
			Workload: benchpeer.Workload{Mode: benchpeer.ModeStream, Seed: uint64(70 + i), Draws: 200}, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.Stream(time.Now().Add(30 * time.Second))
		if err != nil || st.Draws != 200 {
			t.Fatalf("stream through the bridge: %d draws, %v", st.Draws, err)
		}
		if rtts, err := s.Ping(5, 5*time.Second); err != nil || len(rtts) != 5 {
			t.Fatalf("ping: %v %v", rtts, err)
		}
		s.Close()
	}
	if !strings.Contains(f.log.String(), "bridged=true") {
		t.Fatalf("not bridged:\n%s", f.log.String())
	}
	if n := strings.Count(f.log.String(), "backend refused the client's packet encoder"); n != 1 {
		t.Fatalf("the refusal was met %d times, want once", n)
	}
	if st := f.backend.Stats(); st.Errors > 0 {
		t.Fatalf("backend: %d errors, last %s", st.Errors, st.LastErr)
	}
}

// Bridged, a client that stops after a raw chunk is cut at the write
// timeout, and a packet type that is not a name is refused, as in the
// relay.
func TestBridgeBounds(t *testing.T) {
	const wt = 700 * time.Millisecond
	f := newBridgeFixture(t, func(c *Config) { c.State.Limits.WriteTimeout = wt })
	xc, c := f.rawLogin6()
	fw := xprawire.NewFrameWriter(c)
	if err := fw.WriteFrame(xprawire.Header{Index: 1}, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := waitDisconnect(t, xc, 5*time.Second)
	if d := time.Since(start); d > wt+time.Second {
		t.Fatalf("the chunk staller was ended after %v", d)
	}
	if len(r) < 2 || !strings.Contains(r[1], "stalled") {
		t.Fatalf("the chunk staller was told %q", r)
	}
	xc, c = f.rawLogin6()
	b, err := xprawire.Marshal(xprawire.RencodePlus, []any{int64(7), "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := xprawire.NewFrameWriter(c).WriteFrame(xprawire.Header{Flags: xprawire.FlagRencodePlus}, b); err != nil {
		t.Fatal(err)
	}
	if r := waitDisconnect(t, xc, 5*time.Second); len(r) < 2 || !strings.Contains(r[1], "without a type name") {
		t.Fatalf("an integer packet type was told %q", r)
	}
}

// capsBomb is a 6.x keymap of one long key over many small entries:
// flattened for a 3.1 peer, every entry would repeat the long key
// ("keymap.AAAA….k1", …): keyLen*entries bytes of keys from a packet of
// about keyLen+4*entries bytes (a 1 MiB hello of this shape flattens to
// terabytes).
func capsBomb(keyLen, entries int) xprawire.Dict {
	inner := make(xprawire.Dict, entries)
	for i := range inner {
		inner[i] = xprawire.KV{Key: fmt.Sprint(i), Value: int64(1)}
	}
	return xprawire.Dict{{Key: "keymap", Value: xprawire.Dict{{Key: strings.Repeat("A", keyLen), Value: inner}}}}
}

// Flattening is bounded: what would build more than flatCapsMax bytes of
// keys is refused, before it is built.
func TestFlattenCapsBounded(t *testing.T) {
	const keyLen, entries = 64 << 10, 1024 // 64 MiB of keys once flat
	before := heapNow()
	_, err := translateCaps(capsBomb(keyLen, entries), xprawire.RencodePlus, xprawire.Rencode)
	if err == nil {
		t.Fatal("a caps bomb was flattened")
	}
	if grew := int64(heapNow()) - int64(before); grew > 2*flatCapsMax {
		t.Fatalf("refusing it held %d MiB", grew>>20)
	}
	_, err = translatePacket(xprawire.Packet{"keymap-changed", capsBomb(keyLen, entries)}, xprawire.RencodePlus, xprawire.Rencode)
	if err == nil {
		t.Fatal("a keymap-changed bomb was flattened")
	}
	// Toward a 6.x peer nothing is flattened.
	if _, err := translatePacket(xprawire.Packet{"keymap-changed", capsBomb(keyLen, entries)}, xprawire.Rencode, xprawire.RencodePlus); err != nil {
		t.Fatal(err)
	}
}

// Bridged, a 6.x client whose keymap-changed would flatten to more keys
// than any peer reads is disconnected with the reason, and nothing of it
// reaches the 3.1 backend.
func TestBridgeCapsBomb(t *testing.T) {
	f := newBridgeFixture(t, nil)
	xc, _ := f.rawLogin6()
	// 40 MiB of keys once flat, from a 48 KiB packet
	if err := xc.Send(xprawire.Packet{"keymap-changed", capsBomb(40<<10, 1024)}); err != nil {
		t.Fatal(err)
	}
	r := waitDisconnect(t, xc, 10*time.Second)
	if len(r) < 2 || !strings.Contains(r[1], "keymap-changed") || !strings.Contains(r[1], "capabilities") {
		t.Fatalf("the caps bomb was told %q", r)
	}
}

func mustTranslate(t *testing.T, p xprawire.Packet, from, to xprawire.Encoding) xprawire.Packet {
	t.Helper()
	p, err := translatePacket(p, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustTranslateCaps(t *testing.T, d xprawire.Dict, from, to xprawire.Encoding) xprawire.Dict {
	t.Helper()
	d, err := translateCaps(d, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The same shape in a 6.x client's hello, which is flattened for the 3.1
// backend during the handshake: the login is refused with the reason.
func TestBridgeHelloCapsBomb(t *testing.T) {
	f := newBridgeFixture(t, nil)
	c := f.dial()
	xc := xpraclient.New(c, xprawire.RencodePlus)
	caps := xpraclient.BaseCaps("foo")
	caps.Set("version", "6.5.5")
	caps.Set("rencode", false)
	caps.Set("bencode", false)
	caps.Set("encoders", []any{"rencodeplus"})
	caps.Set("compressors", []any{"lz4"})
	caps.Set("zlib", false)
	caps = append(caps, capsBomb(40<<10, 1024)...)
	_, err := xc.Hello(caps, []byte("bar"), true, false, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "capabilities cannot be translated") {
		t.Fatalf("the hello bomb: %v", err)
	}
}

// Re-encoded, a packet can grow (here the 3.1 keymap names double a 6.x
// keymap): one that would be over the packet size limit for its receiver
// is not sent; the session ends with the reason.
func TestBridgeGrowthOverLimit(t *testing.T) {
	f := newBridgeFixture(t, func(c *Config) { c.State.Limits.MaxPacketSize = 1 << 20 })
	xc, _ := f.rawLogin6()
	// 700 KiB of hex digits lz4 does not compress: 1.4 MiB once the
	// keymap is there twice
	rnd := make([]byte, 350<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	keymap := xprawire.Dict{{Key: "keycodes", Value: hex.EncodeToString(rnd)}}
	if err := xc.Send(xprawire.Packet{"keymap-changed", xprawire.Dict{{Key: "keymap", Value: keymap}}}); err != nil {
		t.Fatal(err)
	}
	reasons := waitDisconnect(t, xc, 10*time.Second)
	if len(reasons) < 2 || !strings.Contains(reasons[1], "keymap-changed packet cannot be encoded for the server") || !strings.Contains(reasons[1], "limit 1048576") {
		t.Fatalf("the packet grown past the limit was told %q", reasons)
	}
}

// A bridged leg keeps no buffer per raw chunk index: after chunks at
// every index (1-15, in groups of three, each 900 KiB and decompressed
// for a receiver without its compressor) an idle session holds about one
// chunk, not fifteen.
func TestBridgeChunkBuffersBounded(t *testing.T) {
	f := newBridgeFixture(t, nil)
	xc, c := f.rawLogin6()
	rnd := make([]byte, 900<<10)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	chunk, lvl, err := xprawire.Compress(nil, xprawire.Brotli, 1, rnd)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base := heapNow()
	fw := xprawire.NewFrameWriter(c)
	for first := 1; first <= xprawire.MaxChunkIndex; first += 3 {
		for i := first; i < first+3; i++ {
			if err := fw.WriteFrame(xprawire.Header{Index: uint8(i), Level: lvl}, chunk); err != nil {
				t.Fatal(err)
			}
		}
		main := make(xprawire.Packet, xprawire.MaxChunkIndex+1)
		main[0] = "bench-blob"
		for i := 1; i < len(main); i++ {
			main[i] = []byte{}
		}
		if err := xc.Send(main); err != nil {
			t.Fatal(err)
		}
	}
	// the backend's echo comes after it has read them all
	if err := xc.Send(xprawire.Packet{"ping", int64(1), int64(1), "t"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := xc.Read(deadline)
		if err != nil {
			t.Fatalf("no ping_echo: %v", err)
		}
		if p.Type() == "ping_echo" {
			break
		}
		if p.Type() == "disconnect" {
			t.Fatalf("disconnected: %q", xpraclient.Reasons(p))
		}
	}
	runtime.GC()
	runtime.GC()
	var grow int64 = int64(heapNow()) - int64(base)
	t.Logf("after 15 raw chunks of 900 KiB: heap %+d KiB", grow>>10)
	if grow > 6<<20 {
		t.Errorf("an idle bridged session holds %d MiB after 15 raw chunks of 900 KiB", grow>>20)
	}
}

// Giving a 6.x keymap its 3.1 names takes time linear in its size: a
// keymap-changed of many small entries (1.4 million fit in the 16 MiB of
// keys flattening allows) must not hold a core for minutes. Before, each
// keymap.* key looked its xkbmap_* name up in the whole dictionary.
func TestLegacyKeymapLinear(t *testing.T) {
	const n = 100_000
	inner := make(xprawire.Dict, n)
	for i := range inner {
		inner[i] = xprawire.KV{Key: fmt.Sprint(i), Value: int64(1)}
	}
	p := xprawire.Packet{"keymap-changed", xprawire.Dict{{Key: "keymap", Value: inner}, {Key: "xkbmap_7", Value: int64(2)}}}
	done := make(chan xprawire.Packet, 1)
	start := time.Now()
	go func() { q, _ := translatePacket(p, xprawire.RencodePlus, xprawire.Rencode); done <- q }()
	select {
	case p = <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("a keymap of %d entries took over 5 s to translate", n)
	}
	t.Logf("%d keymap entries translated in %v", n, time.Since(start))
	d := p[1].(xprawire.Dict)
	if len(d) != 2*n {
		t.Fatalf("%d entries, want %d", len(d), 2*n)
	}
	// a name the peer sent itself wins
	if v, _ := d.Get("xkbmap_7"); v != int64(2) {
		t.Fatalf("xkbmap_7 = %v", v)
	}
	if v, _ := d.Get("xkbmap_8"); v != int64(1) {
		t.Fatalf("xkbmap_8 = %v", v)
	}
}

// A peer's disconnect reason is the session's end reason (logged, kept
// by the shared store): a long one is cut, and containers are not
// printed whole.
func TestBridgeDisconnectReasonBounded(t *testing.T) {
	f := newBridgeFixture(t, nil)
	xc, _ := f.rawLogin6()
	many := make([]any, 10_000)
	for i := range many {
		many[i] = int64(i)
	}
	if err := xc.Send(xprawire.Packet{"disconnect", strings.Repeat("A", 64<<10), many, []byte("\xff")}); err != nil {
		t.Fatal(err)
	}
	var line string
	for deadline := time.Now().Add(10 * time.Second); line == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		}
		for _, l := range strings.Split(f.log.String(), "\n") {
			if strings.Contains(l, "session ended") {
				line = l
			}
		}
	}
	if len(line) > 2*maxReasonLen || !strings.Contains(line, "client disconnected: AAAA") {
		t.Fatalf("the session ended with a reason of %d bytes: %.300s…", len(line), line)
	}
	if s := packetStrings([]any{"a", many, int64(3), "\xff"}); s != "a: [list of 10000]: 3: \uFFFD" {
		t.Fatalf("packetStrings: %q", s)
	}
}

// A packet the proxy intercepts and sends on itself (info-response, with
// the proxy's own info added) that cannot be encoded for the other leg
// ends the session with that reason, as any other bridged packet; before,
// it was taken for a failed write ("client connection lost", the client
// untold).
func TestBridgeInterceptedUnencodable(t *testing.T) {
	var in bytes.Buffer
	pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(&in), xprawire.RencodePlus)
	// a list key: rencodeplus carries it, bencode does not
	info := xprawire.Dict{{Key: []any{int64(1)}, Value: int64(2)}}
	if err := pw.WritePacket(xprawire.Packet{"info-response", info}); err != nil {
		t.Fatal(err)
	}
	sess, _ := runBridge(t, legServer, bridgeGens[0], bridgeGens[2], in.Bytes())
	reason, _ := sess.reason.Load().(string)
	if !strings.Contains(reason, "info-response packet cannot be encoded for the client") {
		t.Fatalf("the session ended with %q", reason)
	}
}
