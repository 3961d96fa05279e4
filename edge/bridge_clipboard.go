package edge

import (
	"strings"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// The clipboard across the bridge. Both generations speak the same
// clipboard packets (clipboard-token, -request, -contents,
// -contents-none, -pending-requests, -enable-selections and
// set-clipboard-enabled, which 6.x still sends and accepts as the legacy
// name of clipboard-status), with the same wire encodings ("bytes",
// "integers", "atoms") and field order; what differs is how a hello
// announces the clipboard:
//
//   - xpra 3.1 reads flat keys: a client sends "clipboard" (bool) and
//     "clipboard.selections", ".want_targets", ".greedy",
//     ".preferred-targets", ".notifications", ".set_enabled",
//     ".contents-slice-fix"; a server "clipboard" (bool, flattened from
//     {"": True, ...}), "clipboards" (its selections),
//     "clipboard-direction", "clipboard.enable-selections",
//     "clipboard.contents-slice-fix", "clipboard.preferred-targets".
//   - xpra 6.x reads one "clipboard" dictionary: its server takes a
//     client's clipboard only when hello["clipboard"] is a dict (then
//     "enabled", default true, "selections", "want_targets", "greedy",
//     "preferred-targets", "notifications"), its client takes any
//     non-empty dict as the server's clipboard ("direction", "selections",
//     "greedy", "want_targets", "preferred-targets"). A flat 3.1 hello
//     gives neither: the 6.x peer goes without a clipboard.
//
// Toward a 6.x peer the flat keys are gathered into that dictionary
// (modernClipboardCaps); toward a 3.1 peer the flattened 6.x dictionary
// also gets the names 3.1 reads (legacyClipboardCaps).

// modernClipboardCaps gives a 6.x peer the "clipboard" dictionary of a
// flat 3.1 hello d (client or server): nothing when d announces no
// clipboard. The flat keys stay (6.x reads a key of the hello itself
// before it looks into dictionaries, so they shadow nothing).
func modernClipboardCaps(d xprawire.Dict) xprawire.Dict {
	caps := xprawire.Caps{Dict: d}
	v, ok := d.Get("clipboard")
	if !ok {
		return d
	}
	if _, isDict := v.(xprawire.Dict); isDict || !caps.Truthy("clipboard", false) {
		return d
	}
	sub := xprawire.Dict{{Key: "", Value: true}, {Key: "enabled", Value: true}}
	for _, k := range []string{"notifications", "selections", "want_targets", "greedy", "preferred-targets"} {
		if v, ok := d.Get("clipboard." + k); ok {
			sub = append(sub, xprawire.KV{Key: k, Value: v})
		}
	}
	// a 3.1 server's own names for its selections and direction
	if _, ok := sub.Get("selections"); !ok {
		if v, ok := d.Get("clipboards"); ok {
			sub = append(sub, xprawire.KV{Key: "selections", Value: v})
		}
	}
	if v, ok := d.Get("clipboard-direction"); ok {
		sub = append(sub, xprawire.KV{Key: "direction", Value: v})
	}
	d.Set("clipboard", sub)
	return d
}

// legacyClipboardCaps gives a 3.1 peer the flat names of the clipboard
// capabilities of a flattened 6.x hello d (client or server). A 6.x peer
// with a clipboard sends a "clipboard" dictionary ("" and "enabled" are
// there only while XPRA_BACKWARDS_COMPATIBLE is on, its default); 3.1
// needs "clipboard" true, and from a server "clipboards" and
// "clipboard-direction". Three features 3.1 asks about are set, since
// every 6.x peer has them: "clipboard.enable-selections" (6.x handles
// clipboard-enable-selections), "clipboard.contents-slice-fix" (6.x
// always sends the truncated-bytes count as the 8th element of
// clipboard-contents and reads none itself) and "clipboard.set_enabled"
// (6.x handles set-clipboard-enabled).
func legacyClipboardCaps(d xprawire.Dict) xprawire.Dict {
	has := false
	for _, kv := range d {
		if k, ok := capKey(kv.Key); ok && (k == "clipboard" || strings.HasPrefix(k, "clipboard.")) {
			has = true
			break
		}
	}
	if !has {
		return d
	}
	caps := xprawire.Caps{Dict: d}
	enabled := caps.Truthy("clipboard.enabled", true)
	if _, ok := d.Get("clipboard"); ok {
		enabled = enabled && caps.Truthy("clipboard", false)
	}
	d.Set("clipboard", enabled)
	if !enabled {
		return d
	}
	setDefault := func(k string, v any) {
		if _, ok := d.Get(k); !ok {
			d = append(d, xprawire.KV{Key: k, Value: v})
		}
	}
	if v, ok := d.Get("clipboard.selections"); ok {
		setDefault("clipboards", v)
	}
	if v, ok := d.Get("clipboard.direction"); ok {
		setDefault("clipboard-direction", v)
	}
	setDefault("clipboard.enable-selections", true)
	setDefault("clipboard.contents-slice-fix", true)
	setDefault("clipboard.set_enabled", true)
	return d
}

// clipboardDataArg is the index of the selection data of a clipboard
// packet ("clipboard-token" carries it only for greedy peers), whose wire
// encoding is the element before it.
var clipboardDataArg = map[string]int{"clipboard-contents": 6, "clipboard-token": 7}

// modernizeClipboardData finishes a clipboard packet from a 3.1 peer for
// a 6.x peer: its data element is in binaryArgs (bytes stay bytes: the
// "bytes" encoding carries raw selection data, which 6.x hands to X11 as
// it is), but the "atoms" encoding carries a list of target names, which
// become str like every name.
func modernizeClipboardData(p xprawire.Packet, typ string) {
	i, ok := clipboardDataArg[typ]
	if !ok || i >= len(p) {
		return
	}
	if l, isList := p[i].([]any); isList {
		p[i] = modernize(l)
	}
}
