package edge

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// xconn is one xpra leg (client or backend): a framed reader used by one
// goroutine at a time, and a writer with one owner at a time.
//
// The writer is taken with lockWriter by whoever writes data to the leg
// (the handshake, then the relay reading the other leg) and given back
// with unlockWriter. A lock is never held across a read, with one
// exception the relay owns: between a raw chunk and the main packet it
// belongs to, the relay keeps the writer so that nothing lands between
// them; it reads the rest of that group under a deadline.
//
// The proxy's own packets (pings, disconnects, echoes) never wait for the
// writer: post queues them when it is taken, and the owner writes the
// queue before it gives the writer back. Every write has a deadline.
type xconn struct {
	net.Conn
	br     *bufio.Reader
	frames *xprawire.FrameReader
	pr     *xprawire.PacketReader

	fw *xprawire.FrameWriter
	pw *xprawire.PacketWriter
	// writeTimeout bounds every write: a peer that accepts nothing for
	// that long fails the write (and ends its session).
	writeTimeout time.Duration

	mu     sync.Mutex
	cond   sync.Cond // busy became false
	busy   bool      // the writer is taken
	outbox []outPacket

	// counters, updated by the relay goroutine reading this leg
	bytesIn, packetsIn atomic.Int64
	// writes counts the relay's writes to this leg (gathered frames count once)
	writes atomic.Int64
}

// outPacket is one of the proxy's own packets waiting for the writer.
type outPacket struct {
	p    xprawire.Packet
	d    time.Duration // write deadline from when it is written
	done chan error    // nil: nobody waits for it
}

// maxOutbox bounds the proxy's own packets queued behind a busy writer;
// past it, post fails (a ping is dropped).
const maxOutbox = 16

var errOutboxFull = errors.New("edge: leg's outbox is full")

// readBufferSize is small: idle sessions hold two of these, and payloads
// larger than the buffer are read straight into the frame buffer anyway.
const readBufferSize = 4 << 10

func newXconn(c net.Conn, br *bufio.Reader) *xconn {
	if br == nil {
		br = bufio.NewReaderSize(c, readBufferSize)
	}
	x := &xconn{Conn: c, br: br, writeTimeout: DefaultLimits.WriteTimeout}
	x.cond.L = &x.mu
	x.pr = xprawire.NewPacketReader(br)
	x.frames = x.pr.Frames
	x.fw = xprawire.NewFrameWriter(c)
	x.pw = xprawire.NewPacketWriter(x.fw, xprawire.Rencode)
	return x
}

// setPeer makes our own packets to this leg use what the peer decodes.
func (x *xconn) setPeer(p *peer) {
	x.lockWriter()
	x.pw.Encoding = p.encoding
	x.pw.Compressor = p.bestCompressor()
	x.pw.CompressionLevel = 1
	if x.pw.Compressor == xprawire.NoCompression {
		x.pw.CompressionLevel = 0
	}
	x.pw.Flush = p.flush
	_ = x.unlockWriter()
}

// lockWriter takes the writer, waiting for its owner (who writes under a
// deadline) to give it back.
func (x *xconn) lockWriter() {
	x.mu.Lock()
	for x.busy {
		x.cond.Wait()
	}
	x.busy = true
	x.mu.Unlock()
}

// unlockWriter writes what was posted meanwhile, then gives the writer
// back. It returns the first write error.
func (x *xconn) unlockWriter() error {
	var first error
	for {
		x.mu.Lock()
		if len(x.outbox) == 0 {
			x.busy = false
			x.outbox = nil
			x.cond.Broadcast()
			x.mu.Unlock()
			return first
		}
		op := x.outbox[0]
		x.outbox[0] = outPacket{}
		x.outbox = x.outbox[1:]
		x.mu.Unlock()
		err := first
		if err == nil {
			err = x.writePacket(op.p, op.d)
			first = err
		}
		if op.done != nil {
			op.done <- err
		}
	}
}

// armWrite sets the deadline of the next write.
func (x *xconn) armWrite(d time.Duration) {
	if d <= 0 {
		d = x.writeTimeout
	}
	_ = x.Conn.SetWriteDeadline(time.Now().Add(d))
}

// writePacket encodes and writes one packet; the caller owns the writer.
func (x *xconn) writePacket(p xprawire.Packet, d time.Duration) error {
	x.armWrite(d)
	return x.pw.WritePacket(p)
}

// writeFrame writes one relayed frame; the caller owns the writer.
func (x *xconn) writeFrame(h xprawire.Header, payload []byte) error {
	x.armWrite(x.writeTimeout)
	return x.fw.WriteFrame(h, payload)
}

// send writes one packet now, under the write timeout.
func (x *xconn) send(p xprawire.Packet) error {
	return x.sendDeadline(p, x.writeTimeout)
}

// sendDeadline writes one packet now, giving up after d.
func (x *xconn) sendDeadline(p xprawire.Packet, d time.Duration) error {
	x.lockWriter()
	err := x.writePacket(p, d)
	if err2 := x.unlockWriter(); err == nil {
		err = err2
	}
	return err
}

// post writes one of the proxy's own packets without waiting for the
// writer: when it is taken, the packet is queued for its owner to write.
// A returned error is a failed write (or a full queue).
func (x *xconn) post(p xprawire.Packet, d time.Duration) error {
	x.mu.Lock()
	if x.busy {
		defer x.mu.Unlock()
		if len(x.outbox) >= maxOutbox {
			return errOutboxFull
		}
		x.outbox = append(x.outbox, outPacket{p: p, d: d})
		return nil
	}
	x.busy = true
	x.mu.Unlock()
	err := x.writePacket(p, d)
	if err2 := x.unlockWriter(); err == nil {
		err = err2
	}
	return err
}

// tell writes one of the proxy's own packets and waits for it, for at
// most about d in all (queued behind a busy writer or written now).
func (x *xconn) tell(p xprawire.Packet, d time.Duration) error {
	x.mu.Lock()
	if x.busy {
		done := make(chan error, 1)
		x.outbox = append(x.outbox, outPacket{p: p, d: d, done: done})
		x.mu.Unlock()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case err := <-done:
			return err
		case <-t.C:
			return errTellTimeout
		}
	}
	x.busy = true
	x.mu.Unlock()
	err := x.writePacket(p, d)
	if err2 := x.unlockWriter(); err == nil {
		err = err2
	}
	return err
}

var errTellTimeout = errors.New("edge: the leg's writer stayed busy")

// readPacket reads one whole packet (used during the handshake only).
func (x *xconn) readPacket(deadline time.Time) (xprawire.Packet, error) {
	_ = x.Conn.SetReadDeadline(deadline)
	p, _, err := x.pr.ReadPacket()
	return p, err
}

// spliceWriter moves a raw chunk from one TCP leg to another through the
// kernel in pieces, arming both deadlines again for each piece: a slow
// peer that keeps accepting is not cut, one that accepts nothing for the
// timeout is.
type spliceWriter struct {
	dst, src *net.TCPConn
	d        time.Duration // write deadline of dst, per piece
	rd       time.Duration // read deadline of src, per piece; 0: leave it
}

const splicePiece = 1 << 20

func (w spliceWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n := min(len(p)-done, splicePiece)
		_ = w.dst.SetWriteDeadline(time.Now().Add(w.d))
		m, err := w.dst.Write(p[done : done+n])
		done += m
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// ReadFrom is what io.CopyN calls: it unwraps the limit so that the
// kernel splices each piece.
func (w spliceWriter) ReadFrom(r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, r)
	}
	var total int64
	for lr.N > 0 {
		n := min(lr.N, splicePiece)
		_ = w.dst.SetWriteDeadline(time.Now().Add(w.d))
		if w.rd > 0 {
			_ = w.src.SetReadDeadline(time.Now().Add(w.rd))
		}
		m, err := w.dst.ReadFrom(&io.LimitedReader{R: lr.R, N: n})
		lr.N -= m
		total += m
		if err != nil {
			return total, err
		}
		if m < n {
			return total, nil // the source ended; CopyN reports it
		}
	}
	return total, nil
}

// writable reports whether c's send buffer has room now: after a splice
// timed out, it tells a stalled receiver from a stalled sender.
func writable(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, 0)
		ok = err == nil && n > 0 && fds[0].Revents&unix.POLLOUT != 0
	})
	return ok
}
