package edge

import (
	"fmt"
	"testing"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

func bs(s ...string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = []byte(v)
	}
	return out
}

// subDict returns d[key] as a dictionary rendered key=value, or fails.
func subDict(t *testing.T, d xprawire.Dict, key string) map[string]string {
	t.Helper()
	v, ok := d.Get(key)
	if !ok {
		t.Fatalf("no %q in %v", key, d)
	}
	sub, ok := v.(xprawire.Dict)
	if !ok {
		t.Fatalf("%q is a %T, not a dictionary: %v", key, v, v)
	}
	m := map[string]string{}
	for _, kv := range sub {
		k, ok := kv.Key.(string)
		if !ok {
			t.Fatalf("%q has a %T key", key, kv.Key)
		}
		m[k] = fmt.Sprintf("%v", kv.Value)
	}
	return m
}

func wantKeys(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q = %q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}

// A 3.1 client's flat clipboard capabilities become the "clipboard"
// dictionary a 6.x server reads (it takes a client's clipboard only from
// a dictionary); the names inside are str.
func TestClipboardCapsToModernServer(t *testing.T) {
	d := xprawire.Dict{
		{Key: []byte("clipboard"), Value: true},
		{Key: []byte("clipboard.notifications"), Value: true},
		{Key: []byte("clipboard.selections"), Value: bs("CLIPBOARD", "PRIMARY")},
		{Key: []byte("clipboard.want_targets"), Value: false},
		{Key: []byte("clipboard.greedy"), Value: false},
		{Key: []byte("clipboard.preferred-targets"), Value: bs("UTF8_STRING")},
		{Key: []byte("clipboard.set_enabled"), Value: true},
	}
	d = mustTranslateCaps(t, d, xprawire.Rencode, xprawire.RencodePlus)
	wantKeys(t, "clipboard", subDict(t, d, "clipboard"), map[string]string{
		"":                  "true",
		"enabled":           "true",
		"notifications":     "true",
		"selections":        "[CLIPBOARD PRIMARY]",
		"want_targets":      "false",
		"greedy":            "false",
		"preferred-targets": "[UTF8_STRING]",
	})
	v, _ := d.Get("clipboard")
	if sel, _ := v.(xprawire.Dict).Get("selections"); sel.([]any)[0] != "CLIPBOARD" {
		t.Errorf("selections not str: %#v", sel)
	}
	// what a 6.x client reads the same way
	if !(xprawire.Caps{Dict: d}).Truthy("clipboard", false) {
		t.Error("clipboard not truthy")
	}
}

// A 3.1 server's capabilities: its selections ("clipboards") and
// direction ("clipboard-direction") go into the dictionary a 6.x client
// reads.
func TestClipboardCapsToModernClient(t *testing.T) {
	d := xprawire.Dict{
		{Key: []byte("clipboards"), Value: bs("CLIPBOARD", "PRIMARY", "SECONDARY")},
		{Key: []byte("clipboard-direction"), Value: []byte("to-client")},
		{Key: []byte("clipboard"), Value: int64(1)},
		{Key: []byte("clipboard.enable-selections"), Value: true},
		{Key: []byte("clipboard.contents-slice-fix"), Value: true},
		{Key: []byte("clipboard.preferred-targets"), Value: bs("UTF8_STRING", "TEXT")},
		{Key: []byte("clipboard.loop-uuids.CLIPBOARD"), Value: []byte("Xpra-Clipboard-Loop-Detection:x")},
	}
	d = mustTranslateCaps(t, d, xprawire.Rencode, xprawire.RencodePlus)
	wantKeys(t, "clipboard", subDict(t, d, "clipboard"), map[string]string{
		"enabled":           "true",
		"selections":        "[CLIPBOARD PRIMARY SECONDARY]",
		"direction":         "to-client",
		"preferred-targets": "[UTF8_STRING TEXT]",
	})
}

// No clipboard, or one switched off, stays as it was: a 6.x peer goes
// without, as it would with a 3.1 peer that has none.
func TestClipboardCapsToModernOff(t *testing.T) {
	for _, d := range []xprawire.Dict{
		{{Key: []byte("version"), Value: []byte("3.1.3")}},
		{{Key: []byte("clipboard"), Value: false}, {Key: []byte("clipboard.selections"), Value: bs("CLIPBOARD")}},
	} {
		n := len(d)
		d = mustTranslateCaps(t, d, xprawire.Rencode, xprawire.RencodePlus)
		if len(d) != n {
			t.Errorf("keys added: %v", d)
		}
		if v, ok := d.Get("clipboard"); ok && v != false {
			t.Errorf("clipboard = %#v", v)
		}
	}
}

// A 6.x client's "clipboard" dictionary, flattened for a 3.1 server,
// also says what 3.1 asks for and every 6.x peer has.
func TestClipboardCapsToLegacyServer(t *testing.T) {
	d := xprawire.Dict{
		{Key: "clipboard", Value: xprawire.Dict{
			{Key: "notifications", Value: false},
			{Key: "preferred-targets", Value: []any{"UTF8_STRING"}},
			{Key: "selections", Value: []any{"CLIPBOARD", "PRIMARY", "SECONDARY"}},
			{Key: "enabled", Value: true},
			{Key: "", Value: true},
		}},
	}
	d = mustTranslateCaps(t, d, xprawire.RencodePlus, xprawire.Rencode)
	got := map[string]string{}
	for _, kv := range d {
		got[kv.Key.(string)] = fmt.Sprint(kv.Value)
	}
	wantKeys(t, "hello", got, map[string]string{
		"clipboard":                    "true",
		"clipboard.selections":         "[CLIPBOARD PRIMARY SECONDARY]",
		"clipboard.preferred-targets":  "[UTF8_STRING]",
		"clipboard.enable-selections":  "true",
		"clipboard.contents-slice-fix": "true",
		"clipboard.set_enabled":        "true",
		"clipboards":                   "[CLIPBOARD PRIMARY SECONDARY]",
	})
}

// A 6.x server's dictionary: its direction and selections under 3.1's
// names; without XPRA_BACKWARDS_COMPATIBLE (no "" key) the dictionary
// alone still means a clipboard; "enabled" false means none.
func TestClipboardCapsToLegacyClient(t *testing.T) {
	d := xprawire.Dict{
		{Key: "clipboard", Value: xprawire.Dict{
			{Key: "notifications", Value: true},
			{Key: "selections", Value: []any{"CLIPBOARD"}},
			{Key: "direction", Value: "to-server"},
		}},
	}
	d = mustTranslateCaps(t, d, xprawire.RencodePlus, xprawire.Rencode)
	got := map[string]string{}
	for _, kv := range d {
		got[kv.Key.(string)] = fmt.Sprint(kv.Value)
	}
	wantKeys(t, "hello", got, map[string]string{
		"clipboard":                   "true",
		"clipboard-direction":         "to-server",
		"clipboards":                  "[CLIPBOARD]",
		"clipboard.enable-selections": "true",
	})

	off := mustTranslateCaps(t, xprawire.Dict{{Key: "clipboard", Value: xprawire.Dict{{Key: "enabled", Value: false}, {Key: "", Value: true}}}},
		xprawire.RencodePlus, xprawire.Rencode)
	if v, _ := off.Get("clipboard"); v != false {
		t.Errorf("disabled clipboard: clipboard = %#v", v)
	}
	if _, ok := off.Get("clipboard.enable-selections"); ok {
		t.Errorf("disabled clipboard got features: %v", off)
	}
	none := mustTranslateCaps(t, xprawire.Dict{{Key: "version", Value: "6.5"}}, xprawire.RencodePlus, xprawire.Rencode)
	if len(none) != 1 {
		t.Errorf("no clipboard got keys: %v", none)
	}
}

// Clipboard packets from 3.1 toward 6.x: names become str, the "bytes"
// data stays bytes (even valid UTF-8: 6.x hands it to X11 as it is), the
// "atoms" data (a list of target names) becomes str.
func TestClipboardPacketsToModern(t *testing.T) {
	contents := mustTranslate(t, xprawire.Packet{[]byte("clipboard-contents"), int64(3), []byte("CLIPBOARD"), []byte("UTF8_STRING"),
		int64(8), []byte("bytes"), []byte("hello"), int64(0)}, xprawire.Rencode, xprawire.RencodePlus)
	if contents[0] != "clipboard-contents" || contents[2] != "CLIPBOARD" || contents[3] != "UTF8_STRING" || contents[5] != "bytes" {
		t.Errorf("names not str: %#v", contents)
	}
	if _, ok := contents[6].([]byte); !ok {
		t.Errorf("bytes data became %T", contents[6])
	}
	atoms := mustTranslate(t, xprawire.Packet{[]byte("clipboard-contents"), int64(4), []byte("CLIPBOARD"), []byte("ATOM"),
		int64(32), []byte("atoms"), bs("TARGETS", "UTF8_STRING"), int64(0)}, xprawire.Rencode, xprawire.RencodePlus)
	if l, ok := atoms[6].([]any); !ok || l[0] != "TARGETS" || l[1] != "UTF8_STRING" {
		t.Errorf("atoms %#v", atoms[6])
	}
	// a greedy peer's token carries data too
	token := mustTranslate(t, xprawire.Packet{[]byte("clipboard-token"), []byte("CLIPBOARD"), bs("TARGETS", "UTF8_STRING"),
		[]byte("UTF8_STRING"), []byte("UTF8_STRING"), int64(8), []byte("bytes"), []byte("hello"), true, false}, xprawire.Rencode, xprawire.RencodePlus)
	if token[1] != "CLIPBOARD" || token[2].([]any)[1] != "UTF8_STRING" || token[6] != "bytes" {
		t.Errorf("token names %#v", token)
	}
	if _, ok := token[7].([]byte); !ok {
		t.Errorf("token data became %T", token[7])
	}
	sel := mustTranslate(t, xprawire.Packet{[]byte("clipboard-enable-selections"), bs("CLIPBOARD", "PRIMARY")}, xprawire.Rencode, xprawire.RencodePlus)
	if l := sel[1].([]any); l[0] != "CLIPBOARD" {
		t.Errorf("selections %#v", l)
	}
	// short packets are left alone
	_, _ = translatePacket(xprawire.Packet{[]byte("clipboard-contents"), int64(1)}, xprawire.Rencode, xprawire.RencodePlus)
	_, _ = translatePacket(xprawire.Packet{[]byte("clipboard-token")}, xprawire.Rencode, xprawire.RencodePlus)
}
