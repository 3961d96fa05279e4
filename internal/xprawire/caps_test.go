package xprawire

import (
	"slices"
	"testing"
)

func TestDict(t *testing.T) {
	d := Dict{{"a", 1}, {[]byte("b"), 2}, {int64(3), "three"}, {[]byte("proxy.x"), 1}, {"proxy.y", 2}, {"proxyz", 3}}
	if v, ok := d.Get("b"); !ok || v != 2 {
		t.Fatal("Get must match []byte keys")
	}
	if _, ok := d.Get("3"); ok {
		t.Fatal("int keys are not string keys")
	}
	d.Set("b", 20)
	d.Set("c", 30)
	if v, _ := d.Get("b"); v != 20 || len(d) != 7 || d[6].Key != "c" {
		t.Fatalf("Set: %v", d)
	}
	d.DeletePrefix("proxy.")
	d.Delete("a")
	var keys []string
	for _, kv := range d {
		k, _ := keyString(kv.Key)
		keys = append(keys, k)
	}
	if !slices.Equal(keys, []string{"b", "", "proxyz", "c"}) {
		t.Fatalf("after deletes: %q", keys)
	}
	if (Packet{[]byte("draw")}).Type() != "draw" || (Packet{int64(1)}).Type() != "" || (Packet{}).Type() != "" {
		t.Fatal("Packet.Type")
	}
}

func TestCaps(t *testing.T) {
	c := Caps{Dict{
		{"rencode", true},                                 // flat bool
		{[]byte("lz4"), int64(1)},                         // bytes key, int bool
		{"zlib", []byte("no")},                            // bytes string bool
		{"encoding.generic", true},                        // flat dotted
		{"network", Dict{{"pings", int64(5)}}},            // nested (6.x)
		{[]byte("rencodeplus"), Dict{{"", true}}},         // {"": v}
		{"display", Dict{{"", ":100"}, {"w", int64(1)}}},  // dict with "" value
		{"html5-display", Dict{{"w", int64(1)}}},          // a dict display (xpra-html5 >= 18)
		{"compression_level", []byte("3")},                // decimal string
		{"encoders", []any{[]byte("rencode"), "bencode"}}, // list of bytes/str
		{"compressors", "lz4, zlib,,brotli"},              // comma-separated
		{"a", Dict{{"b.c", Dict{{"d", "deep"}}}}},         // mixed nesting
		{"build", Dict{{"version", Dict{{"", []byte("6.3")}}}}},
		{"big", int64(1) << 40},
		{"f", 2.0},
	}}
	for key, want := range map[string]bool{"rencode": true, "lz4": true, "zlib": false, "encoding.generic": true, "rencodeplus": true, "f": true} {
		if got := c.Bool(key, !want); got != want {
			t.Errorf("Bool(%q) = %v", key, got)
		}
	}
	if !c.Bool("missing", true) || c.Bool("missing", false) || !c.Bool("display", true) {
		t.Error("Bool default")
	}
	if v, ok := c.Int("network.pings"); !ok || v != 5 {
		t.Errorf("nested Int = %d %v", v, ok)
	}
	if v, ok := c.Int("compression_level"); !ok || v != 3 {
		t.Errorf("string Int = %d %v", v, ok)
	}
	if v, ok := c.Int("big"); !ok || v != 1<<40 {
		t.Errorf("Int = %d", v)
	}
	if v, ok := c.Int("f"); !ok || v != 2 {
		t.Errorf("float Int = %d", v)
	}
	if _, ok := c.Int("encoders"); ok {
		t.Error("a list is not an int")
	}
	if s, ok := c.Str("display"); !ok || s != ":100" {
		t.Errorf(`Str({"": v}) = %q %v`, s, ok)
	}
	if _, ok := c.Str("html5-display"); ok {
		t.Error("a dict without a \"\" key is not a string")
	}
	if s, _ := c.Str("a.b.c.d"); s != "deep" {
		t.Errorf("mixed nesting = %q", s)
	}
	if s, _ := c.Str("build.version"); s != "6.3" {
		t.Errorf("nested {\"\": v} = %q", s)
	}
	if l := c.StrList("encoders"); !slices.Equal(l, []string{"rencode", "bencode"}) {
		t.Errorf("StrList = %q", l)
	}
	if l := c.StrList("compressors"); !slices.Equal(l, []string{"lz4", "zlib", "brotli"}) {
		t.Errorf("comma StrList = %q", l)
	}
	if c.StrList("missing") != nil {
		t.Error("missing StrList")
	}
	if !c.Has("network.pings") || !c.Has("network") || c.Has("network.nope") || c.Has("rencode.version") {
		t.Error("Has")
	}
	sub := c.Sub("network")
	if v, ok := sub.Int("pings"); !ok || v != 5 {
		t.Error("Sub")
	}
	if v, ok := c.Sub("encoding").Get("generic"); !ok || v != true {
		t.Error("Sub of flat keys")
	}
}

// TestCapsRealHelloAllEncodings reads the real client's caps after a trip
// through every encoding, as a proxy bridging generations would.
func TestCapsRealHelloAllEncodings(t *testing.T) {
	h, payload := realHello(t)
	p, err := DecodeMain(h, payload)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Encoding{Bencode, Rencode, RencodePlus} {
		b, err := Marshal(e, p)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Unmarshal(e, b)
		if err != nil {
			t.Fatal(err)
		}
		caps := Caps{v.([]any)[1].(Dict)}
		if s, _ := caps.Str("version"); s != "3.1.3" {
			t.Errorf("%v: version %q", e, s)
		}
		if !caps.Bool("rencode", false) || caps.Bool("lzo", true) {
			t.Errorf("%v: codec flags", e)
		}
		if d := caps.StrList("digest"); !slices.Contains(d, "hmac+sha512") {
			t.Errorf("%v: digest %q", e, d)
		}
		if n, ok := caps.Int("compression_level"); !ok || n != 1 {
			t.Errorf("%v: compression_level %d", e, n)
		}
		if w, ok := caps.Int("desktop_size"); ok {
			t.Errorf("%v: a list read as int %d", e, w)
		}
	}
}
