package edge

import (
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
// and bencode), so the proxy decodes every main packet from one leg,
// translates it and encodes it again for the other, each leg with its own
// encoder and compressor; raw chunks pass as they are. Legs that share an
// encoder never take this path.
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
//     and sent uncompressed.
//   - keyboard: the 6.x keymap also under 3.1's xkbmap_* names.
//   - clipboard: 3.1's flat clipboard.* caps and 6.x's "clipboard"
//     dictionary, each for the other (bridge_clipboard.go).
//
// Packet names need no translation: xpra 6 still accepts every 3.1 name
// (its legacy aliases, XPRA_BACKWARDS_COMPATIBLE on by default) and sends
// the 3.1 names to a peer that does not announce the new ones; the one
// 6.x packet a 3.1 peer does not know is dropped (dropForLegacy).

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

// dropForLegacy are 6.x packets a 3.1 peer does not know and needs not:
// "encodings" (a 6.x server's announcement of its encodings after the
// hello, which its hello already carries) makes a 3.1.3 client log
// "unknown packet type".
var dropForLegacy = map[string]bool{"encodings": true}

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
	"clipboard-token":    {7},
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
	// the xkbmap_* names the peer sent itself win (one pass: a lookup per
	// key in d would be quadratic in a keymap of many entries)
	has := map[string]bool{}
	for _, kv := range d {
		if k, _ := kv.Key.(string); strings.HasPrefix(k, "xkbmap_") {
			has[k] = true
		}
	}
	var add xprawire.Dict
	for _, kv := range d {
		k, _ := kv.Key.(string)
		if rest, ok := strings.CutPrefix(k, "keymap."); ok && rest != "" {
			if has["xkbmap_"+rest] {
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

// flatCapsMax bounds the bytes of keys flattenCaps builds. Each flat key
// repeats its prefix, so one long key over many small entries ({"keymap":
// {"AAAA…": {"0": 1, "1": 1, …}}}) would make keyLen*entries bytes: a
// 1 MiB hello, terabytes. No xpra peer reads a hello or a keymap-changed
// over its 16 MiB packet limit anyway.
const flatCapsMax = 16 << 20

var errFlatCapsTooLarge = fmt.Errorf("capabilities flatten to over %d MiB of keys", flatCapsMax>>20)

// flattenCaps turns nested capability dictionaries into the flat keys
// xpra 3.1 reads: {"a": {"": v, "b": w}} becomes "a": v, "a.b": w. Keys
// in keepDictCaps keep their dictionary. Depth is bounded by the decoder,
// the keys it builds by flatCapsMax (errFlatCapsTooLarge, found before
// more is built).
func flattenCaps(d xprawire.Dict) (xprawire.Dict, error) {
	out := make(xprawire.Dict, 0, len(d))
	budget := flatCapsMax
	var walk func(prefix string, d xprawire.Dict) error
	walk = func(prefix string, d xprawire.Dict) error {
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
				full = prefix
				if k != "" {
					n := len(prefix) + 1 + len(k)
					if n > budget {
						return errFlatCapsTooLarge
					}
					budget -= n
					full = prefix + "." + k
				}
			}
			if sub, isDict := kv.Value.(xprawire.Dict); isDict && full != "" && !keepDictCaps[full] {
				if err := walk(full, sub); err != nil {
					return err
				}
				continue
			}
			if full == "" {
				continue
			}
			out = append(out, xprawire.KV{Key: full, Value: kv.Value})
		}
		return nil
	}
	if err := walk("", d); err != nil {
		return nil, err
	}
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
	return dedup, nil
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
func translateCaps(d xprawire.Dict, from, to xprawire.Encoding) (xprawire.Dict, error) {
	switch {
	case legacyEncoding(from) && !legacyEncoding(to):
		return modernClipboardCaps(modernizeCaps(d)), nil
	case !legacyEncoding(from) && legacyEncoding(to):
		flat, err := flattenCaps(d)
		if err != nil {
			return nil, err
		}
		return legacyClipboardCaps(legacyKeymap(flat)), nil
	}
	return d, nil
}

// translatePacket adapts a packet decoded from a peer writing from for a
// peer that reads to. It changes p in place and returns it; an error
// (errFlatCapsTooLarge) is a packet that cannot be translated.
func translatePacket(p xprawire.Packet, from, to xprawire.Encoding) (xprawire.Packet, error) {
	if len(p) == 0 {
		return p, nil
	}
	if b, ok := p[0].([]byte); ok {
		p[0] = string(b)
	}
	typ, _ := p[0].(string)
	if typ == "hello" {
		if len(p) > 1 {
			if d, ok := p[1].(xprawire.Dict); ok {
				d, err := translateCaps(d, from, to)
				if err != nil {
					return nil, fmt.Errorf("hello: %w", err)
				}
				p[1] = d
			}
		}
		return p, nil
	}
	if !legacyEncoding(from) && legacyEncoding(to) && typ == "keymap-changed" && len(p) > 1 {
		if d, ok := p[1].(xprawire.Dict); ok {
			flat, err := flattenCaps(d)
			if err != nil {
				return nil, fmt.Errorf("keymap-changed: %w", err)
			}
			p[1] = legacyKeymap(flat)
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
		modernizeClipboardData(p, typ)
	}
	if to == xprawire.Bencode {
		for i := range p {
			p[i] = bencodable(p[i])
		}
	}
	return p, nil
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

// bridge is the relay of a bridged session. Raw chunks (pixels, icons,
// cursors: the bulk of the bytes) need no translation: each is passed on
// as it arrives, as in the relay (spliced kernel to kernel between TCP
// legs when large), unless the receiver lacks its compressor, in which
// case it is decompressed (within the packet size limit) and sent raw.
// Every main packet is decoded, translated and encoded again for dst; its
// placeholders stay where the chunks go. Between a chunk and its main
// packet dst's writer stays ours, and the rest of the group is read under
// the write timeout, as in the relay. Bounds: frame sizes by the packet
// size limit, decompression by the same limit, decoded values by
// xprawire.MaxDecodedValues, at most three raw chunks per packet.
func (sess *session) bridge(src, dst *xconn, from leg) {
	idle := sess.lim.IdleTimeout
	wt := sess.lim.WriteTimeout
	limit := sess.lim.MaxPacketSize
	srcPeer, dstPeer := sess.client, sess.server
	if from == legServer {
		srcPeer, dstPeer = sess.server, sess.client
	}
	srcTCP, _ := src.Conn.(*net.TCPConn)
	dstTCP, _ := dst.Conn.(*net.TCPConn)
	canSplice := srcTCP != nil && dstTCP != nil
	maxIndex := 0 // highest chunk index of the group
	f := &legFailure{sess: sess, dst: dst, from: from, wt: wt}
	// sendFailed ends the session after a packet of type typ was not
	// sent to dst: one its encoder cannot carry (or over the packet size
	// limit once encoded) is not a failed write.
	sendFailed := func(typ string, err error) {
		if errors.Is(err, xprawire.ErrUnencodable) || errors.Is(err, xprawire.ErrTooLarge) {
			f.fail(fmt.Sprintf("bridge: %s packet cannot be encoded for the %s: %v", typ, from.other(), err), tellBoth)
			return
		}
		f.writeFailed(err)
	}
	take := func() {
		if !f.group {
			dst.lockWriter()
			f.group = true
		}
	}
	for {
		var deadline time.Time
		switch {
		case f.group:
			deadline = time.Now().Add(wt)
		case idle > 0:
			deadline = time.Now().Add(idle)
		}
		_ = src.SetReadDeadline(deadline)
		h, err := src.frames.NextHeader()
		if err != nil {
			f.readFailed(err)
			return
		}
		if h.Flags&xprawire.FlagCipher != 0 {
			f.fail(from.errorReason(xprawire.ErrCipher), tellBoth)
			return
		}
		if h.Index > 0 {
			// NextHeader refused duplicates, more than three pending
			// and sizes over the limit.
			maxIndex = max(maxIndex, int(h.Index))
			h.Flags = 0 // raw chunks carry no encoder flag
			asIs := h.Level == 0
			if !asIs {
				comp, err := h.Level.Compressor()
				if err != nil {
					f.fail(from.errorReason(fmt.Errorf("raw chunk %d: %w", h.Index, err)), tellBoth)
					return
				}
				asIs = contains(dstPeer.compressors, comp.String())
			}
			if asIs && canSplice && h.Size >= spliceMin {
				take()
				if err := spliceChunk(src, dst, srcTCP, dstTCP, h, wt); err != nil {
					f.spliceFailed(err, dstTCP)
					return
				}
				continue
			}
			// Each chunk is written before the next frame is read, so
			// the frame reader's one buffer (which it shrinks as in the
			// relay) holds it.
			buf, err := src.frames.Payload(h)
			if err != nil {
				f.readFailed(err)
				return
			}
			src.bytesIn.Add(int64(xprawire.HeaderSize + len(buf)))
			c := xprawire.RawChunk{Data: buf, Level: h.Level}
			if !asIs {
				if err := bridgeChunk(&c, dstPeer, limit); err != nil {
					f.fail(from.errorReason(fmt.Errorf("raw chunk %d: %w", h.Index, err)), tellBoth)
					return
				}
			}
			take()
			h.Level, h.Size = c.Level, uint32(len(c.Data))
			err = dst.writeFrame(h, c.Data)
			dst.writes.Add(1)
			if err != nil {
				f.writeFailed(err)
				return
			}
			continue
		}
		payload, err := src.frames.Payload(h)
		if err != nil {
			f.readFailed(err)
			return
		}
		src.bytesIn.Add(int64(xprawire.HeaderSize + len(payload)))
		src.packetsIn.Add(1)
		afterChunk := f.group
		p, err := xprawire.DecodeMainLimit(h, payload, limit)
		if err == nil && maxIndex >= len(p) {
			err = fmt.Errorf("raw chunk %d for a packet of %d elements", maxIndex, len(p))
		}
		maxIndex = 0
		if err != nil {
			f.fail(from.errorReason(fmt.Errorf("decode: %w", err)), tellBoth)
			return
		}
		p, err = translatePacket(p, srcPeer.encoding, dstPeer.encoding)
		if err != nil {
			f.fail(from.errorReason(fmt.Errorf("translate: %w", err)), tellBoth)
			return
		}
		typ := p.Type()
		if from == legClient {
			if reason := clientRefusal(typ, nil, afterChunk); reason != "" {
				f.fail(reason, tellBoth)
				return
			}
		} else if typ == "" {
			f.fail(from.errorReason(errors.New("a packet without a type name")), tellBoth)
			return
		}
		if !afterChunk && !legacyEncoding(srcPeer.encoding) && legacyEncoding(dstPeer.encoding) && dropForLegacy[typ] {
			continue
		}
		// As in the relay, the backend's packets after raw chunks (its
		// draws) are never intercepted.
		if !afterChunk && sess.intercepted(typ, from) {
			end, err := sess.handle(src, dst, from, typ, p)
			if err != nil {
				sendFailed(typ, err)
				return
			}
			if end {
				return
			}
			continue
		}
		if !f.group {
			dst.lockWriter()
		}
		f.group = false
		dst.armWrite(wt)
		err = dst.pw.WritePacket(p)
		dst.writes.Add(1)
		if err2 := dst.unlockWriter(); err == nil {
			err = err2
		}
		if err != nil {
			sendFailed(typ, err)
			return
		}
	}
}
