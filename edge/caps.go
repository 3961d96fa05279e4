package edge

import (
	"errors"
	"strings"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// What the proxy can decode. Advertised lists are always intersected with
// the peer's, so that what one end may send is what the other can read
// and frames pass through the relay unchanged.
var (
	ourEncoders    = []string{"rencodeplus", "rencode", "bencode"}
	ourCompressors = []string{"lz4", "zlib", "brotli"}
	// hmacDigests in xpra's order of preference.
	hmacDigests = []string{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5", "hmac"}
)

// peer is what one end of a session said about itself in its hello.
type peer struct {
	caps        xprawire.Caps
	encoding    xprawire.Encoding // what we send it
	encoders    []string          // what it can decode (and we can too)
	compressors []string
	flush       bool
	version     string
	pingEcho    bool // echoes a ping's source id: the proxy may ping it
}

// forget drops the decoded capabilities once the handshake is over: a
// relayed session keeps only what the relay uses.
func (p *peer) forget() { p.caps = xprawire.Caps{} }

var errNoEncoder = errors.New("failed to negotiate a packet encoder")

func newPeer(c xprawire.Caps) (*peer, error) {
	p := &peer{caps: c, flush: c.Bool("flush", false), pingEcho: c.Bool("ping-echo-sourceid", false)}
	p.version, _ = c.Str("version")
	p.encoders = peerEncoders(c)
	if len(p.encoders) == 0 {
		return nil, errNoEncoder
	}
	switch p.encoders[0] {
	case "rencodeplus":
		p.encoding = xprawire.RencodePlus
	case "rencode":
		p.encoding = xprawire.Rencode
	default:
		p.encoding = xprawire.Bencode
	}
	p.compressors = peerCompressors(c)
	return p, nil
}

// peerEncoders lists the encoders a peer decodes that we decode, in our
// preference order. As in xpra 3.1, bencode counts as present unless the
// peer says otherwise.
func peerEncoders(c xprawire.Caps) []string {
	listed := c.StrList("encoders")
	var out []string
	for _, e := range ourEncoders {
		if c.Bool(e, contains(listed, e) || e == "bencode" && len(listed) == 0) {
			out = append(out, e)
		}
	}
	return out
}

func peerCompressors(c xprawire.Caps) []string {
	listed := c.StrList("compressors")
	var out []string
	for _, e := range ourCompressors {
		if c.Bool(e, contains(listed, e)) {
			out = append(out, e)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// bestCompressor is what we compress our own packets to p with.
func (p *peer) bestCompressor() xprawire.Compressor {
	switch {
	case contains(p.compressors, "lz4"):
		return xprawire.LZ4
	case contains(p.compressors, "zlib"):
		return xprawire.Zlib
	case contains(p.compressors, "brotli"):
		return xprawire.Brotli
	}
	return xprawire.NoCompression
}

// setCodecCaps replaces every encoder and compressor capability in d with
// the given lists, in the flat form both xpra generations read.
func setCodecCaps(d *xprawire.Dict, encoders, compressors []string) {
	for _, k := range []string{"encoders", "compressors", "rencode", "rencodeplus", "bencode", "yaml", "lz4", "lzo", "zlib", "brotli", "zstd", "packet-encoders", "compression"} {
		d.DeletePrefix(k)
	}
	d.Set("encoders", toAny(encoders))
	d.Set("compressors", toAny(compressors))
	for _, e := range append(append([]string{}, ourEncoders...), "yaml") {
		d.Set(e, contains(encoders, e))
	}
	for _, c := range append(append([]string{}, ourCompressors...), "lzo") {
		d.Set(c, contains(compressors, c))
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// digestCaps sets the digests we accept on a leg: the hmac family, and xor
// only where a password may travel (encrypted or local).
func digestCaps(d *xprawire.Dict, allowXOR bool) {
	d.DeletePrefix("digest")
	d.DeletePrefix("salt-digest")
	dg := append([]string{}, hmacDigests...)
	if allowXOR {
		dg = append(dg, "xor")
	}
	d.Set("digest", toAny(dg))
	d.Set("salt-digest", toAny(hmacDigests[:6]))
}

// clientHelloForBackend builds the hello sent to the backend from the
// client's latest hello: xpra's filter (cipher, challenge, digest, aliases,
// compression and codec keys removed), then our codec lists restricted to
// what the client decodes, our digests, proxy info and the whitelisted
// session options.
func clientHelloForBackend(client *peer, keepChallenge bool, backendXOR bool, info map[string]any, opts sessionOptions) xprawire.Dict {
	src := client.caps.Dict
	d := make(xprawire.Dict, 0, len(src)+32)
	for _, kv := range src {
		k := keyString(kv.Key)
		if dropFromClientHello(k, keepChallenge) {
			continue
		}
		d = append(d, kv)
	}
	setCodecCaps(&d, client.encoders, client.compressors)
	if !keepChallenge {
		digestCaps(&d, backendXOR)
	}
	if opts.hasCompressionLevel {
		d.Set("compression_level", opts.compressionLevel)
	} else if lvl, ok := client.caps.Int("compression_level"); ok {
		d.Set("compression_level", lvl)
	}
	if opts.username != "" {
		d.Set("username", opts.username)
	} else {
		d.Delete("username")
	}
	d.Set("proxy", true)
	for k, v := range info {
		d.Set("proxy."+k, v)
	}
	return d
}

func dropFromClientHello(k string, keepChallenge bool) bool {
	if keepChallenge && strings.HasPrefix(k, "challenge") {
		return false
	}
	for _, p := range []string{"cipher", "challenge", "digest", "salt-digest", "aliases", "compression", "lz4", "lzo", "zlib", "brotli", "proxy"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// serverHelloForClient builds the hello forwarded to the client: the
// backend's caps without aliases, with codec lists restricted to what the
// backend decodes, and the proxy's own info.
func serverHelloForClient(server, client *peer, info map[string]any) xprawire.Dict {
	src := server.caps.Dict
	d := make(xprawire.Dict, 0, len(src)+32)
	for _, kv := range src {
		k := keyString(kv.Key)
		if strings.HasPrefix(k, "aliases") || strings.HasPrefix(k, "digest") || strings.HasPrefix(k, "salt-digest") {
			continue
		}
		d = append(d, kv)
	}
	setCodecCaps(&d, intersect(server.encoders, client.encoders), intersect(server.compressors, client.compressors))
	d.Set("proxy", true)
	for k, v := range info {
		d.Set("proxy."+k, v)
	}
	return d
}

func keyString(k any) string {
	switch v := k.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// sessionOptions are the per-user options applied toward the backend.
type sessionOptions struct {
	hasCompressionLevel bool
	compressionLevel    int64
	// username is the name the backend is told: the display URL's user
	// when it has one (the backend's own auth checks it), else the
	// identity the proxy authenticated. Never the client's own field.
	username string
}
