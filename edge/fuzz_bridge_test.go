package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// captureConn is a leg whose writes are kept (reads end at once).
type captureConn struct {
	fuzzConn
	wmu sync.Mutex
	out bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) {
	if _, err := c.fuzzConn.Write(p); err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.out.Write(p)
}

// bridgeGens are the peers FuzzBridge puts on the legs: a 6.x peer
// (rencodeplus, lz4) and 3.1 peers (rencode with zlib and lz4, bencode
// with zlib only).
var bridgeGens = []*peer{
	{encoding: xprawire.RencodePlus, encoders: []string{"rencodeplus"}, compressors: []string{"lz4"}},
	{encoding: xprawire.Rencode, encoders: []string{"rencode", "bencode"}, compressors: []string{"lz4", "zlib"}},
	{encoding: xprawire.Bencode, encoders: []string{"bencode"}, compressors: []string{"zlib"}},
}

// FuzzBridge feeds arbitrary bytes to a bridged leg, as the stream a
// logged-in client (or a backend) sends: frames, raw chunks (any index,
// compression, count), main packets of any shape in any encoding. The
// bridge must neither panic nor hang, must end the session, and every
// main packet it writes to the other leg must decode in that leg's
// encoder, with a packet type that is a name.
func FuzzBridge(f *testing.F) {
	frames := func(enc xprawire.Encoding, c xprawire.Compressor, ps ...xprawire.Packet) []byte {
		var buf bytes.Buffer
		pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(&buf), enc)
		if c != xprawire.NoCompression {
			pw.Compressor, pw.CompressionLevel = c, 1
		}
		for _, p := range ps {
			_ = pw.WritePacket(p) // None and floats are not bencode
		}
		return buf.Bytes()
	}
	keymap := xprawire.Dict{{Key: "layout", Value: "us"}, {Key: "x11_keycodes", Value: xprawire.Dict{{Key: int64(38), Value: []any{"a", "A"}}}}}
	nested := xprawire.Dict{{Key: "encoding", Value: xprawire.Dict{{Key: "", Value: "auto"}, {Key: "core", Value: []any{"png"}}}}, {Key: "keymap", Value: keymap}}
	draw := xprawire.Packet{"draw", int64(1), int64(0), int64(0), int64(2), int64(2), "rgb24", xprawire.RawChunk{Data: make([]byte, 12)}, int64(1), int64(6), xprawire.Dict{{Key: "zlib", Value: int64(0)}}}
	for mode := byte(0); mode < 12; mode++ {
		src := bridgeGens[int(mode>>1)%len(bridgeGens)].encoding
		f.Add(mode, frames(src, xprawire.NoCompression,
			xprawire.Packet{"keymap-changed", nested, true},
			xprawire.Packet{"hello", nested},
			draw,
			xprawire.Packet{"ping", int64(1), int64(2), "x"},
			xprawire.Packet{"info-response", nested},
			xprawire.Packet{"set_deflate", int64(1)},
			xprawire.Packet{"x", nil, 1.5, []any{nil, []byte{0xff}}, []byte("text")},
			xprawire.Packet{"encodings", nested},
		))
	}
	f.Add(byte(3), frames(xprawire.Rencode, xprawire.Zlib, draw, xprawire.Packet{"cursor", "png", int64(0), int64(0), int64(1), int64(1), int64(0), int64(0), int64(0), int64(0), []byte("pix")}))
	f.Add(byte(0), frames(xprawire.RencodePlus, xprawire.LZ4, draw, xprawire.Packet{"disconnect", "bye"}))
	f.Add(byte(1), append([]byte{xprawire.Magic, 0, 0, 7, 0, 0, 0, 3}, 1, 2, 3))

	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		from := leg(mode & 1)
		srcPeer := bridgeGens[int(mode>>1)%len(bridgeGens)]
		dstPeer := bridgeGens[(int(mode>>1)+1+int(mode>>3)%2)%len(bridgeGens)]
		_, out := runBridge(t, from, srcPeer, dstPeer, data)
		// Everything written to dst: raw chunks, and main packets that
		// decode in dst's encoder.
		fr := xprawire.NewFrameReader(bufio.NewReader(bytes.NewReader(out)))
		fr.SetMaxSize(xprawire.AbsMaxPacketSize)
		for {
			h, payload, err := fr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				// the frame reader refuses a fourth pending chunk: only
				// when the source's group was cut and end's disconnect
				// followed, which does not happen with three at most
				t.Fatalf("the bridge wrote a bad frame: %v", err)
			}
			if h.Index > 0 {
				continue
			}
			if enc, err := xprawire.EncodingForFlags(h.Flags); err != nil || enc != dstPeer.encoding {
				t.Fatalf("main packet for a %v peer written in %v (%v)", dstPeer.encoding, enc, err)
			}
			p, err := xprawire.DecodeMain(h, payload)
			if err != nil {
				t.Fatalf("the bridge wrote a main packet its receiver cannot decode: %v", err)
			}
			if _, ok := p[0].(string); !ok {
				if _, ok := p[0].([]byte); !ok {
					t.Fatalf("the bridge wrote a packet without a type name: %#v", p[0])
				}
			}
		}
	})
}

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// runBridge runs the bridge of a session between two peers over data,
// what the leg from sends, until it ends (it must, within 10 s), and
// returns the session and what was written to the other leg.
func runBridge(t *testing.T, from leg, srcPeer, dstPeer *peer, data []byte) (*session, []byte) {
	srcConn := &fuzzConn{r: bytes.NewReader(data)}
	dstConn := &captureConn{fuzzConn: fuzzConn{r: bytes.NewReader(nil)}}
	src, dst := newXconn(srcConn, nil), newXconn(dstConn, nil)
	lim := DefaultLimits
	lim.MaxPacketSize = 1 << 20
	for _, x := range []*xconn{src, dst} {
		x.frames.SetMaxSize(uint32(lim.MaxPacketSize))
		x.writeTimeout = lim.WriteTimeout
	}
	src.setPeer(srcPeer)
	dst.setPeer(dstPeer)
	dst.pw.MaxSize = lim.MaxPacketSize
	sess := &session{lim: lim, log: discardLog, ending: make(chan struct{}), clientGone: make(chan struct{}), done: make(chan struct{}), bridged: true}
	// end does not linger for a client that is not there
	sess.goneOnce.Do(func() { close(sess.clientGone) })
	if from == legClient {
		sess.c, sess.b, sess.client, sess.server = src, dst, srcPeer, dstPeer
	} else {
		sess.c, sess.b, sess.client, sess.server = dst, src, dstPeer, srcPeer
	}
	done := make(chan struct{})
	go func() { defer close(done); sess.bridge(src, dst, from) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the bridge did not return in 10 s on %q", data)
	}
	select {
	case <-sess.ending:
	default:
		t.Fatal("the bridge returned but the session did not end")
	}
	dstConn.wmu.Lock()
	defer dstConn.wmu.Unlock()
	return sess, bytes.Clone(dstConn.out.Bytes())
}
