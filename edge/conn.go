package edge

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// xconn is one xpra leg (client or backend): a framed reader used by one
// goroutine at a time, and a writer shared under a lock, so that packets
// the proxy injects (pings, disconnects) never land between a raw chunk
// and the main packet it belongs to.
type xconn struct {
	net.Conn
	br     *bufio.Reader
	frames *xprawire.FrameReader
	pr     *xprawire.PacketReader

	wmu sync.Mutex
	fw  *xprawire.FrameWriter
	pw  *xprawire.PacketWriter

	// counters, updated by the relay goroutine reading this leg
	bytesIn, packetsIn atomic.Int64
}

// readBufferSize is small: idle sessions hold two of these, and payloads
// larger than the buffer are read straight into the frame buffer anyway.
const readBufferSize = 4 << 10

func newXconn(c net.Conn, br *bufio.Reader) *xconn {
	if br == nil {
		br = bufio.NewReaderSize(c, readBufferSize)
	}
	x := &xconn{Conn: c, br: br}
	x.pr = xprawire.NewPacketReader(br)
	x.frames = x.pr.Frames
	x.fw = xprawire.NewFrameWriter(c)
	x.pw = xprawire.NewPacketWriter(x.fw, xprawire.Rencode)
	return x
}

// setPeer makes our own packets to this leg use what the peer decodes.
func (x *xconn) setPeer(p *peer) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.pw.Encoding = p.encoding
	x.pw.Compressor = p.bestCompressor()
	x.pw.CompressionLevel = 1
	if x.pw.Compressor == xprawire.NoCompression {
		x.pw.CompressionLevel = 0
	}
	x.pw.Flush = p.flush
}

// send writes one packet of ours.
func (x *xconn) send(p xprawire.Packet) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	return x.pw.WritePacket(p)
}

// sendDeadline writes one packet, giving up after d.
func (x *xconn) sendDeadline(p xprawire.Packet, d time.Duration) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	_ = x.Conn.SetWriteDeadline(time.Now().Add(d))
	defer x.Conn.SetWriteDeadline(time.Time{})
	return x.pw.WritePacket(p)
}

// readPacket reads one whole packet (used during the handshake only).
func (x *xconn) readPacket(deadline time.Time) (xprawire.Packet, error) {
	_ = x.Conn.SetReadDeadline(deadline)
	p, _, err := x.pr.ReadPacket()
	return p, err
}
