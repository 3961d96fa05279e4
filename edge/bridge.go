package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// The bridge: a client and a backend of different xpra generations share
// no packet encoder (xpra 6 speaks only rencodeplus, xpra 3.1 only rencode
// and bencode), so the proxy decodes every packet from one leg, translates
// it and encodes it again for the other, each leg with its own encoder and
// compressor. Legs that share an encoder never take this path.
//
// What is translated:
//   - str and bytes: rencode and bencode (3.1) carry no difference between
//     them; rencodeplus (6.x) does, and xpra 6 reads binary fields with
//     get_bytes (a str there fails) and names with get_str. Toward a
//     rencodeplus peer every string from an old peer becomes a str when it
//     is valid UTF-8 (dictionary keys always), except the binary fields
//     listed in binaryArgs and binaryCaps, which stay bytes. Toward an old
//     peer nothing is lost: rencode writes both the same way.
//   - capabilities: 6.x hellos nest dictionaries ({"encoding": {"core":
//     ...}}, {"x": {"": v}}) which 3.1 only reads flat ("encoding.core");
//     toward an old peer hellos are flattened, except the few keys 3.1
//     reads as dictionaries (keepDictCaps).
//   - codecs: each hello tells its receiver the encoders and compressors
//     the proxy writes to it (what that receiver offered), not the other
//     end's.
//   - raw chunks (pixels, icons, cursors) keep their compression when the
//     receiver has the compressor, else they are decompressed (bounded)
//     and sent as they are.
//
// Packet names need no translation: xpra 6 still accepts every 3.1 name
// (its legacy aliases, XPRA_BACKWARDS_COMPATIBLE on by default) and sends
// the 3.1 names to a peer that does not announce the new ones.

// legacyEncoding reports whether a peer writing e is of the old
// generation (no str/bytes difference).
func legacyEncoding(e xprawire.Encoding) bool { return e != xprawire.RencodePlus }

// needBridge reports whether client and server share no encoder.
func needBridge(client, server *peer) bool {
	return len(intersect(client.encoders, server.encoders)) == 0
}

// alternateEncoding is the encoder of the other generation, tried for a
// backend that refused the client's.
func alternateEncoding(e xprawire.Encoding) xprawire.Encoding {
	if e == xprawire.RencodePlus {
		return xprawire.Rencode
	}
	return xprawire.RencodePlus
}

// refusedEncoding reports whether a backend's answer to our first hello
// says it cannot decode (or decompress) it: xpra 6 answers rencode with a
// text "disconnect: invalid packet encoding: 'rencode' decoder is not
// available", xpra 3.1 answers rencodeplus with a bencode parse error.
func refusedEncoding(err error) bool {
	var te *xprawire.DisconnectTextError
	if errors.As(err, &te) {
		t := strings.ToLower(te.Text)
		for _, w := range []string{"encod", "decod", "bencode", "rencode", "pars", "compress"} {
			if strings.Contains(t, w) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, xprawire.ErrTruncated)
}

// bridgeHelloCaps sets the codec capabilities of a bridged hello to a
// backend writing enc: it may send the proxy any encoder and compressor
// the proxy decodes. xpra 3.1 also compresses rgb pixels inside draw
// packets with what the "zlib" and "lz4" capabilities allow (the proxy
// leaves pixels alone), so toward a 3.1 backend zlib is offered only when
// the client decompresses it too: xpra 6 refuses zlib pixels ("pixel data
// can only be compressed with lz4").
func bridgeHelloCaps(d *xprawire.Dict, client *peer, enc xprawire.Encoding) {
	comps := ourCompressors
	if legacyEncoding(enc) && !contains(client.compressors, "zlib") {
		comps = nil
		for _, c := range ourCompressors {
			if c != "zlib" {
				comps = append(comps, c)
			}
		}
		d.Set("encoding.rgb_zlib", false)
	}
	setCodecCaps(d, ourEncoders, comps)
}

// encoderMemo remembers, per backend and client encoder, the encoder a
// backend took after it refused the client's, so that later sessions to
// it skip the refused attempt (one dial and hello fewer). It is a hint:
// a backend that refuses the remembered encoder is tried with the
// client's again. Bounded: past memoMax entries it starts over.
type encoderMemo struct {
	mu sync.Mutex
	m  map[string]xprawire.Encoding
}

const memoMax = 4096

func memoKey(target string, client xprawire.Encoding) string {
	return target + "\x00" + client.String()
}

func (m *encoderMemo) get(target string, client xprawire.Encoding) (xprawire.Encoding, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[memoKey(target, client)]
	return e, ok
}

// set records that the backend at target took enc from a client writing
// client (enc == client forgets it).
func (m *encoderMemo) set(target string, client, enc xprawire.Encoding) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memoKey(target, client)
	if enc == client {
		delete(m.m, k)
		return
	}
	if m.m == nil || len(m.m) >= memoMax {
		m.m = map[string]xprawire.Encoding{}
	}
	m.m[k] = enc
}

// binaryArgs lists, per packet type, the arguments that are binary data
// (pixels, icons, salts, file and sound data): they stay bytes toward a
// rencodeplus peer.
var binaryArgs = map[string][]int{
	"challenge":          {1},
	"draw":               {7},
	"window-icon":        {5},
	"cursor":             {9},
	"sound-data":         {2},
	"send-file":          {6},
	"send-file-chunk":    {3},
	"clipboard-contents": {6, 7},
	"webcam-frame":       {6},
	"print":              {2},
}

// binaryCaps are hello keys whose values are binary.
var binaryCaps = map[string]bool{
	"challenge_client_salt": true,
	"challenge_padding":     true,
	"cipher.iv":             true,
	"cipher.key_salt":       true,
}

// keepDictCaps are the capabilities xpra 3.1 reads as dictionaries
// (typedict.dictget): flattening stops there.
var keepDictCaps = map[string]bool{
	"clipboard.loop-uuids":    true,
	"xdg-menu":                true,
	"modifier_keycodes":       true,
	"connection-data":         true,
	"window.frame_sizes":      true,
	"icc":                     true,
	"display-icc":             true,
	"opengl":                  true,
	"antialias":               true,
	"start-new-session":       true,
	"encoding.full_csc_modes": true,
	"full_csc_modes":          true,
	"encoding.decoder-speed":  true,
	"batch":                   true,
	// the keyboard of a 6.x client, renamed xkbmap_* (legacyKeymap)
	"keymap.mod_meanings": true,
	"keymap.x11_keycodes": true,
	"keymap.query_struct": true,
}

// legacyKeymap gives a 3.1 peer the keyboard description of a 6.x client
// under the names it reads: 6.x sends it as "keymap" {"layout",
// "keycodes", "x11_keycodes", "mod_meanings", ...} (in its hello and in
// keymap-changed), 3.1 reads "xkbmap_layout", "xkbmap_keycodes", ...
// without which its server has no keycodes and drops every key. d is
// flat.
func legacyKeymap(d xprawire.Dict) xprawire.Dict {
	var add xprawire.Dict
	for _, kv := range d {
		k, _ := kv.Key.(string)
		if rest, ok := strings.CutPrefix(k, "keymap."); ok && rest != "" {
			if _, has := d.Get("xkbmap_" + rest); has {
				continue
			}
			add = append(add, xprawire.KV{Key: "xkbmap_" + rest, Value: kv.Value})
		}
	}
	return append(d, add...)
}

// modernize turns the strings of a value decoded from an old peer into
// what a rencodeplus peer expects: str when valid UTF-8, dictionary keys
// always. Raw chunks are left alone. Containers are changed in place.
func modernize(v any) any {
	switch x := v.(type) {
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return x
	case []any:
		for i := range x {
			x[i] = modernize(x[i])
		}
		return x
	case xprawire.Dict:
		for i := range x {
			if k, ok := x[i].Key.([]byte); ok && utf8.Valid(k) {
				x[i].Key = string(k)
			}
			x[i].Value = modernize(x[i].Value)
		}
		return x
	}
	return v
}

// modernizeCaps is modernize for a hello, keeping binaryCaps as bytes.
func modernizeCaps(d xprawire.Dict) xprawire.Dict {
	for i := range d {
		if k, ok := d[i].Key.([]byte); ok && utf8.Valid(k) {
			d[i].Key = string(k)
		}
		if k, _ := d[i].Key.(string); binaryCaps[k] {
			continue
		}
		d[i].Value = modernize(d[i].Value)
	}
	return d
}

// flattenCaps turns nested capability dictionaries into the flat keys
// xpra 3.1 reads: {"a": {"": v, "b": w}} becomes "a": v, "a.b": w. Keys
// in keepDictCaps keep their dictionary. Depth is bounded by the decoder.
func flattenCaps(d xprawire.Dict) xprawire.Dict {
	out := make(xprawire.Dict, 0, len(d))
	var walk func(prefix string, d xprawire.Dict)
	walk = func(prefix string, d xprawire.Dict) {
		for _, kv := range d {
			k, ok := capKey(kv.Key)
			if !ok {
				if prefix == "" {
					out = append(out, kv)
				}
				continue
			}
			full := k
			if prefix != "" {
				full = prefix + "." + k
				if k == "" {
					full = prefix
				}
			}
			if sub, isDict := kv.Value.(xprawire.Dict); isDict && full != "" && !keepDictCaps[full] {
				walk(full, sub)
				continue
			}
			if full == "" {
				continue
			}
			out = append(out, xprawire.KV{Key: full, Value: kv.Value})
		}
	}
	walk("", d)
	// A flat key may also have come nested ("a.b" and {"a": {"b"}}): the
	// last one wins, as a dict update would.
	seen := make(map[string]int, len(out))
	dedup := out[:0]
	for _, kv := range out {
		k, ok := kv.Key.(string)
		if !ok {
			dedup = append(dedup, kv)
			continue
		}
		if i, dup := seen[k]; dup {
			dedup[i] = kv
			continue
		}
		seen[k] = len(dedup)
		dedup = append(dedup, kv)
	}
	return dedup
}

func capKey(k any) (string, bool) {
	switch v := k.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

// translateCaps adapts a hello's capabilities decoded from a peer writing
// from, for a peer that reads to.
func translateCaps(d xprawire.Dict, from, to xprawire.Encoding) xprawire.Dict {
	switch {
	case legacyEncoding(from) && !legacyEncoding(to):
		return modernizeCaps(d)
	case !legacyEncoding(from) && legacyEncoding(to):
		return legacyKeymap(flattenCaps(d))
	}
	return d
}

// translatePacket adapts a packet decoded from a peer writing from for a
// peer that reads to. It changes p in place and returns it.
func translatePacket(p xprawire.Packet, from, to xprawire.Encoding) xprawire.Packet {
	if len(p) == 0 {
		return p
	}
	if b, ok := p[0].([]byte); ok {
		p[0] = string(b)
	}
	typ, _ := p[0].(string)
	if typ == "hello" {
		if len(p) > 1 {
			if d, ok := p[1].(xprawire.Dict); ok {
				p[1] = translateCaps(d, from, to)
			}
		}
		return p
	}
	if !legacyEncoding(from) && legacyEncoding(to) && typ == "keymap-changed" && len(p) > 1 {
		if d, ok := p[1].(xprawire.Dict); ok {
			p[1] = legacyKeymap(flattenCaps(d))
		}
	}
	if legacyEncoding(from) && !legacyEncoding(to) {
		keep := binaryArgs[typ]
	args:
		for i := 1; i < len(p); i++ {
			for _, k := range keep {
				if k == i {
					continue args
				}
			}
			p[i] = modernize(p[i])
		}
	}
	if to == xprawire.Bencode {
		for i := range p {
			p[i] = bencodable(p[i])
		}
	}
	return p
}

// bencodable replaces what bencode cannot carry (None, floats) with what
// xpra 3.1's bencode peers read in their place.
func bencodable(v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case float64:
		return int64(x)
	case float32:
		return int64(x)
	case []any:
		for i := range x {
			x[i] = bencodable(x[i])
		}
	case xprawire.Dict:
		for i := range x {
			x[i].Value = bencodable(x[i].Value)
		}
	}
	return v
}

// bridgeChunk fits a raw chunk for the receiver: kept as it is when the
// receiver decompresses it, else decompressed (at most max bytes).
func bridgeChunk(c *xprawire.RawChunk, to *peer, max int) error {
	if c.Level == 0 {
		return nil
	}
	comp, err := c.Level.Compressor()
	if err != nil {
		return err
	}
	if contains(to.compressors, comp.String()) {
		return nil
	}
	data, err := xprawire.Decompress(nil, c.Level, c.Data, max)
	if err != nil {
		return err
	}
	c.Data, c.Level = data, 0
	return nil
}

// bridge is the relay of a bridged session: it reads whole packets (raw
// chunks and their main packet) from src, decodes, translates and encodes
// them again for dst. Everything is bounded as in the pass-through relay:
// frame sizes by the packet size limit, decompression by the same limit,
// decoded values by xprawire.MaxDecodedValues, at most three raw chunks
// per packet; a peer that stops inside a group is cut at the write
// timeout.
func (sess *session) bridge(src, dst *xconn, from leg) {
	idle := sess.lim.IdleTimeout
	wt := sess.lim.WriteTimeout
	max := sess.lim.MaxPacketSize
	srcPeer, dstPeer := sess.client, sess.server
	if from == legServer {
		srcPeer, dstPeer = sess.server, sess.client
	}
	var chunks [xprawire.MaxChunkIndex + 1]*xprawire.RawChunk
	pending := 0
	readFailed := func(err error) {
		if from == legClient {
			sess.goneOnce.Do(func() { close(sess.clientGone) })
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout() && pending > 0:
			sess.end(fmt.Sprintf("%s stalled for %v inside a packet (after a raw chunk)", from, wt), tellBoth)
		case errors.As(err, &ne) && ne.Timeout():
			sess.end("idle timeout", tellBoth)
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			sess.end(from.lostReason(), from.other().tell())
		default:
			sess.end(from.errorReason(err), from.other().tell())
		}
	}
	for {
		var deadline time.Time
		switch {
		case pending > 0:
			deadline = time.Now().Add(wt)
		case idle > 0:
			deadline = time.Now().Add(idle)
		}
		_ = src.SetReadDeadline(deadline)
		h, payload, err := src.frames.Next()
		if err != nil {
			readFailed(err)
			return
		}
		src.bytesIn.Add(int64(xprawire.HeaderSize + len(payload)))
		if h.Flags&xprawire.FlagCipher != 0 {
			sess.end(from.errorReason(xprawire.ErrCipher), tellBoth)
			return
		}
		if h.Index > 0 {
			// FrameReader refuses duplicates and more than three pending.
			chunks[h.Index] = &xprawire.RawChunk{Data: bytes.Clone(payload), Level: h.Level}
			pending++
			continue
		}
		src.packetsIn.Add(1)
		p, err := xprawire.DecodeMainLimit(h, payload, max)
		if err != nil {
			sess.end(from.errorReason(fmt.Errorf("decode: %w", err)), tellBoth)
			return
		}
		bad := ""
		for i, c := range chunks {
			if c == nil {
				continue
			}
			chunks[i] = nil
			if i >= len(p) {
				bad = fmt.Sprintf("raw chunk %d for a packet of %d elements", i, len(p))
				continue
			}
			if err := bridgeChunk(c, dstPeer, max); err != nil {
				bad = fmt.Sprintf("raw chunk %d: %v", i, err)
				continue
			}
			p[i] = c
		}
		pending = 0
		if bad != "" {
			sess.end(from.errorReason(errors.New(bad)), tellBoth)
			return
		}
		p = translatePacket(p, srcPeer.encoding, dstPeer.encoding)
		typ := p.Type()
		if from == legClient {
			if reason := clientRefusal(typ, nil, false); reason != "" {
				sess.end(reason, tellBoth)
				return
			}
		} else if typ == "" {
			sess.end(from.errorReason(errors.New("a packet without a type name")), tellBoth)
			return
		}
		if sess.intercepted(typ, from) {
			end, err := sess.handle(src, dst, from, typ, p)
			if err != nil {
				sess.end(writeFailReason(from.other(), err, wt), from.tell())
				return
			}
			if end {
				return
			}
			continue
		}
		dst.lockWriter()
		dst.armWrite(wt)
		err = dst.pw.WritePacket(p)
		dst.writes.Add(1)
		if err2 := dst.unlockWriter(); err == nil {
			err = err2
		}
		if err != nil {
			if errors.Is(err, xprawire.ErrUnencodable) {
				sess.end(fmt.Sprintf("bridge: %s packet cannot be encoded for the %s: %v", typ, from.other(), err), tellBoth)
				return
			}
			sess.end(writeFailReason(from.other(), err, wt), from.tell())
			return
		}
	}
}
