// Package wsconn turns a WebSocket into a plain byte stream for the xpra
// pipeline: Read yields the payloads of binary (and text) frames, in order,
// whatever their boundaries, and Write sends one binary frame per call.
//
// It accepts the unmasked client frames that xpra's Python client sends
// (against RFC 6455) as well as a browser's masked ones, answers pings
// (rate-limited, each pong under a write deadline),
// reassembles continuations and ends the stream on close. Upgrade is the
// server handshake (any path, subprotocol "binary" required, as xpra does);
// Dial is the client handshake for ws/wss backends over an established
// connection.
//
// It must not know anything about xpra packets, listen on sockets, log, or
// panic on any input: every malformed frame is an error.
package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// MaxFrameSize bounds one data frame's payload (xpra's absolute packet
// limit). A larger frame is refused with ErrFrameTooBig.
const MaxFrameSize = 256 << 20

// Errors a caller may tell apart (wrapped; use errors.Is).
var (
	// ErrProtocol is any violation of RFC 6455 framing that xpra's peers
	// do not commit: reserved bits, unknown opcodes, bad control frames,
	// continuation without a start, a masked frame from a server.
	ErrProtocol = errors.New("websocket protocol error")
	// ErrFrameTooBig is a frame whose payload exceeds MaxFrameSize.
	ErrFrameTooBig = errors.New("websocket frame too large")
	// ErrNoSubprotocol is an upgrade request without "binary" in
	// Sec-WebSocket-Protocol (or a server that did not choose it).
	ErrNoSubprotocol = errors.New("websocket: the binary subprotocol is required")
	// ErrBadHandshake is any other refused or failed handshake.
	ErrBadHandshake = errors.New("websocket: bad handshake")
)

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Reads of fewer than minDirectRead bytes are served from a buffer of
// smallReadBufSize allocated for them; larger ones read straight into the
// caller's buffer.
const (
	minDirectRead    = 512
	smallReadBufSize = 4096
)

// handshakeBufSize is the reader of a client handshake's response (the
// bytes it holds past the response are handed to the Conn).
const handshakeBufSize = 4096

// joinMax is the largest payload copied next to its header so that a
// connection without writev (TLS) gets one write per frame.
const joinMax = 64 << 10

var joinPool = sync.Pool{New: func() any { b := make([]byte, 0, maxHeaderSize+joinMax); return &b }}

// Close status codes we send.
const (
	closeNormal      = 1000
	closeProtocol    = 1002
	closeTooBig      = 1009
	maxControlLength = 125
	maxHeaderSize    = 14 // 2 + 8 (length) + 4 (mask)
)

// Control-frame replies (pong, the echo of a close) are written on behalf
// of Read: each has a write deadline of ControlWriteTimeout, or Read's own
// deadline when that comes sooner, so a peer that sends pings and reads
// nothing cannot hold a Read (and what waits on it) past its deadline.
const ControlWriteTimeout = 10 * time.Second

// Pings are answered at most pingRate per second after a burst of
// pingBurst; pings beyond that are read and dropped, unanswered.
const (
	pingBurst = 16
	pingRate  = 4
)

// Conn is a WebSocket as a net.Conn byte stream. Read must be called by
// one goroutine at a time (as for any stream); Write and Close are safe
// for concurrent use. Deadlines apply to the underlying connection.
type Conn struct {
	conn   net.Conn
	wconn  net.Conn // where frames are written: conn, or the socket it writes through to
	client bool     // we are the client: mask what we send, refuse masked input

	// Read state, owned by the reader.
	raw    []byte // stream bytes not deframed yet: a cut header or control frame
	rawBuf []byte // raw's own array
	dirty  bool   // raw may hold whole frames (the upgrade's bytes, a timeout's rest)
	ready  []byte // payload deframed into sbuf, not returned yet (small reads)
	sbuf   []byte // for reads shorter than minDirectRead
	terr   error  // a connection error that came with the last bytes

	remaining int64 // payload bytes left in the current data frame
	masked    bool
	mask      [4]byte
	maskPos   int
	inMessage bool // a fragmented data message is in progress
	unmasked  int  // data frames received without a mask (xpra's Python client)
	maskedIn  int  // data frames received masked (browsers)
	rerr      error
	ctrl      [maxControlLength]byte
	pingTok   float64   // pongs we may still send now
	pingAt    time.Time // when pingTok was last refilled

	// The deadlines as the caller set them: a control reply sets its own
	// write deadline, then puts the caller's back.
	dmu      sync.Mutex
	rdl, wdl time.Time

	wmu      sync.Mutex
	vectored bool // the connection turns net.Buffers into one writev
	wclosed  bool // a close frame was sent; no more frames
	whdr     [maxHeaderSize]byte
	wbufArr  [3][]byte
	wbufs    net.Buffers
	maskBuf  []byte         // client side: masked copy of the payload
	maskRand *mrand.ChaCha8 // client side: mask keys, seeded from crypto/rand
}

var _ net.Conn = (*Conn)(nil)

func newConn(c net.Conn, br *bufio.Reader, client bool) *Conn {
	wc := &Conn{conn: c, wconn: writeTarget(c), client: client, pingTok: pingBurst}
	if br != nil && br.Buffered() > 0 {
		// What the handshake's reader read past it; from now on the
		// connection is read directly.
		b, _ := br.Peek(br.Buffered())
		wc.raw, wc.dirty = bytes.Clone(b), true
	}
	switch wc.wconn.(type) {
	case *net.TCPConn, *net.UnixConn:
		wc.vectored = true
	}
	if client {
		var seed [32]byte
		_, _ = rand.Read(seed[:]) // never fails (Go 1.24+)
		wc.maskRand = mrand.NewChaCha8(seed)
	}
	return wc
}

// WriteThrough is a connection wrapper that adds nothing to writes (it
// replays bytes on the read side, say): WriteConn is what its writes go
// to. Frames are then written there, so that a socket under the wrapper
// gets one writev per frame.
type WriteThrough interface {
	WriteConn() net.Conn
}

// writeTarget follows WriteThrough wrappers down from c.
func writeTarget(c net.Conn) net.Conn {
	for range 8 {
		wt, ok := c.(WriteThrough)
		if !ok {
			break
		}
		c = wt.WriteConn()
	}
	return c
}

// NewServerConn wraps a connection whose handshake is already done (the
// peer is a client). br, a reader of c or nil, holds bytes read past the
// handshake: they are taken, and br is not read again.
func NewServerConn(c net.Conn, br *bufio.Reader) *Conn { return newConn(c, br, false) }

// Read returns payload bytes of data frames; control frames are handled on
// the way (ping answered, close replied). It returns io.EOF after a close
// frame, and a wrapped ErrProtocol or ErrFrameTooBig on a bad frame (after
// sending a close frame with the matching status).
//
// There is no read buffer of its own: the bytes of the stream are read
// from the connection straight into p and the frame headers are taken out
// of them in place (the payload that follows a header is moved down over
// it, and unmasked there), so a caller's buffer (the xpra frame reader's,
// or the payload buffer of a large packet) is the only one the bytes pass
// through. What cannot be used yet (a header or control frame cut by the
// end of a read, at most 139 bytes) is kept for the next Read. A caller
// that reads less than minDirectRead bytes at a time is served from a
// small buffer allocated for it.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.ready) > 0 {
			n := copy(p, c.ready)
			c.ready = c.ready[n:]
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.dirty {
			// Bytes handed over at the upgrade, or left by a timeout: they
			// may hold whole frames, deframe them before reading more.
			buf := c.raw
			c.raw, c.rawBuf, c.dirty = nil, nil, false
			out, err := c.deframe(buf)
			c.ready = buf[:out]
			if err != nil && c.fail(err) && out == 0 {
				return 0, err
			}
			continue
		}
		if c.terr != nil {
			err := c.terr
			c.terr = nil
			return 0, c.transportErr(err)
		}
		buf := p
		if len(p) < len(c.raw)+minDirectRead {
			if c.sbuf == nil {
				c.sbuf = make([]byte, smallReadBufSize)
			}
			buf = c.sbuf
		}
		k := copy(buf, c.raw)
		n, err := c.conn.Read(buf[k:])
		if n == 0 {
			if err == nil {
				continue
			}
			return 0, c.transportErr(err)
		}
		if err != nil {
			c.terr = err // after what came with it
		}
		c.raw = c.raw[:0]
		out, derr := c.deframe(buf[:k+n])
		if derr != nil && c.fail(derr) && out == 0 {
			return 0, derr
		}
		if &buf[0] == &p[0] {
			if out > 0 {
				return out, nil
			}
			continue
		}
		c.ready = buf[:out]
	}
}

// fail records a deframing error: a timeout (a pong at Read's deadline) is
// returned once and the rest of the stream kept; anything else ends the
// stream. It reports whether err is to be returned now.
func (c *Conn) fail(err error) bool {
	if isTimeout(err) && c.rerr == nil {
		c.dirty = len(c.raw) > 0
		return true
	}
	if c.rerr == nil {
		c.rerr = err
	}
	return true
}

// transportErr maps an error of the connection: a clean end between frames
// is io.EOF, one inside a frame a truncation; a timeout is returned as it
// is (nothing is lost, Read may be called again); others end the stream.
func (c *Conn) transportErr(err error) error {
	if isTimeout(err) {
		return err
	}
	if err == io.EOF {
		switch {
		case c.remaining > 0:
			err = io.ErrUnexpectedEOF
		case len(c.raw) > 0:
			err = fmt.Errorf("%w: truncated frame: %w", ErrProtocol, io.ErrUnexpectedEOF)
			if _, size, _ := parseHeader(c.raw); size == 0 {
				c.failClose(closeProtocol) // cut inside a header (not a control frame's payload)
			}
		}
	}
	c.rerr = err
	return err
}

// keep saves the bytes of b that cannot be deframed yet for the next Read.
func (c *Conn) keep(b []byte) {
	if len(b) == 0 {
		c.raw = c.raw[:0]
		return
	}
	if c.rawBuf == nil {
		c.rawBuf = make([]byte, 0, maxHeaderSize+maxControlLength+4)
	}
	c.raw = append(c.rawBuf[:0], b...)
	if cap(c.raw) > cap(c.rawBuf) {
		c.rawBuf = c.raw[:0]
	}
}

// deframe turns b, bytes of the stream as they came, into payload bytes in
// place: it returns how many payload bytes now start b, handles control
// frames on the way and keeps an incomplete header or control frame at the
// end (see keep).
func (c *Conn) deframe(b []byte) (int, error) {
	out, in := 0, 0
	for in < len(b) {
		if c.remaining > 0 {
			k := int(min(c.remaining, int64(len(b)-in)))
			if out != in {
				copy(b[out:], b[in:in+k])
			}
			if c.masked {
				c.maskPos = applyMask(b[out:out+k], c.mask, c.maskPos)
			}
			out, in = out+k, in+k
			c.remaining -= int64(k)
			continue
		}
		h, size, err := parseHeader(b[in:])
		if err == nil && size > 0 {
			err = c.checkHeader(&h)
		}
		if err != nil {
			if errors.Is(err, ErrFrameTooBig) {
				c.failClose(closeTooBig)
			} else if errors.Is(err, ErrProtocol) {
				c.failClose(closeProtocol)
			}
			c.raw = c.raw[:0]
			return out, err
		}
		if size == 0 {
			break // the header is not all here yet
		}
		if h.op >= 0x8 {
			// A control frame is at most 139 bytes: taken whole or kept.
			if len(b)-in < size+int(h.length) {
				break
			}
			payload := c.ctrl[:h.length]
			copy(payload, b[in+size:])
			in += size + int(h.length)
			if err := c.control(&h, payload); err != nil {
				c.keep(b[in:])
				return out, err
			}
			continue
		}
		in += size
		c.inMessage = !h.fin
		if h.masked {
			c.maskedIn++
		} else {
			c.unmasked++
		}
		c.remaining, c.masked, c.mask, c.maskPos = h.length, h.masked, h.mask, 0
	}
	c.keep(b[in:])
	return out, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type frameHeader struct {
	fin    bool
	rsv    byte
	op     byte
	masked bool
	mask   [4]byte
	length int64
}

// parseHeader parses the frame header at the start of b and returns its
// size, or 0 when b does not hold all of it yet.
//
//	byte 0: FIN(0x80) RSV1-3(0x70) opcode(0x0f)
//	byte 1: MASK(0x80) length 0..125, 126 (+2 bytes BE), 127 (+8 bytes BE)
//	then the 4-byte mask key when MASK is set.
func parseHeader(b []byte) (frameHeader, int, error) {
	var h frameHeader
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] & 0x70
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	size := 2
	l := int64(b[1] & 0x7f)
	switch l {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if h.masked {
		size += 4
	}
	if len(b) < size {
		return h, 0, nil
	}
	switch l {
	case 126:
		l = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > MaxFrameSize {
			return h, 0, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooBig, u, MaxFrameSize)
		}
		l = int64(u)
	}
	h.length = l
	if h.masked {
		copy(h.mask[:], b[size-4:size])
	}
	return h, size, nil
}

// checkHeader applies RFC 6455's rules, except that clients may send
// unmasked frames (xpra's Python client does).
func (c *Conn) checkHeader(h *frameHeader) error {
	if h.rsv != 0 {
		return fmt.Errorf("%w: reserved bits %#x set", ErrProtocol, h.rsv)
	}
	if c.client && h.masked {
		return fmt.Errorf("%w: masked frame from a server", ErrProtocol)
	}
	switch h.op {
	case opClose, opPing, opPong:
		if !h.fin {
			return fmt.Errorf("%w: fragmented control frame", ErrProtocol)
		}
		if h.length > maxControlLength {
			return fmt.Errorf("%w: control frame of %d bytes", ErrProtocol, h.length)
		}
	case opBinary, opText:
		if c.inMessage {
			return fmt.Errorf("%w: new message inside a fragmented one", ErrProtocol)
		}
	case opContinuation:
		if !c.inMessage {
			return fmt.Errorf("%w: continuation without a message", ErrProtocol)
		}
	default:
		return fmt.Errorf("%w: unknown opcode %#x", ErrProtocol, h.op)
	}
	if h.length > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooBig, h.length, MaxFrameSize)
	}
	return nil
}

// control handles a ping, pong or close frame (payload already unread
// from the stream, still masked when h.masked).
func (c *Conn) control(h *frameHeader, payload []byte) error {
	if h.masked {
		applyMask(payload, h.mask, 0)
	}
	switch h.op {
	case opPing:
		if !c.pingAllowed() {
			return nil // a flood: read, not answered
		}
		if atReadDeadline, err := c.writeControl(opPong, payload); err != nil && !errors.Is(err, net.ErrClosed) {
			if atReadDeadline && isTimeout(err) {
				// Read's own deadline passed: a timeout, as a read's
				// (no frame is written after a failed one).
				return fmt.Errorf("websocket pong: %w", err)
			}
			c.rerr = fmt.Errorf("websocket pong: %v", err)
			return c.rerr
		}
	case opClose:
		if len(payload) == 1 {
			c.failClose(closeProtocol)
			return fmt.Errorf("%w: close frame with a 1-byte payload", ErrProtocol)
		}
		// Echo the status code (not the reason), as RFC 6455 suggests.
		code := payload
		if len(code) > 2 {
			code = code[:2]
		}
		_, _ = c.writeControl(opClose, code)
		return io.EOF
	}
	return nil // pong
}

// pingAllowed takes a token of the ping rate limit (reader only).
func (c *Conn) pingAllowed() bool {
	now := time.Now()
	if !c.pingAt.IsZero() {
		c.pingTok = min(pingBurst, c.pingTok+now.Sub(c.pingAt).Seconds()*pingRate)
	}
	c.pingAt = now
	if c.pingTok < 1 {
		return false
	}
	c.pingTok--
	return true
}

// writeControl writes a control reply under ControlWriteTimeout (or the
// read deadline, when sooner: atReadDeadline), then restores the caller's
// write deadline.
func (c *Conn) writeControl(op byte, p []byte) (atReadDeadline bool, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	d := time.Now().Add(ControlWriteTimeout)
	c.dmu.Lock()
	if !c.rdl.IsZero() && c.rdl.Before(d) {
		d, atReadDeadline = c.rdl, true
	}
	c.dmu.Unlock()
	_ = c.conn.SetWriteDeadline(d)
	err = c.writeFrameLocked(op, p)
	c.dmu.Lock()
	_ = c.conn.SetWriteDeadline(c.wdl)
	c.dmu.Unlock()
	return atReadDeadline, err
}

// failClose tells the peer why we stop reading (best effort, bounded by
// a write deadline: the connection is finished anyway).
func (c *Conn) failClose(code uint16) {
	if !c.wmu.TryLock() {
		return // a Write is in progress; the caller will Close
	}
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], code)
	_ = c.writeFrameLocked(opClose, b[:])
}

// Write sends p as one binary frame (masked when we are the client). It is
// safe for concurrent use; frames never interleave.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.writeFrame(opBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *Conn) writeFrame(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeFrameLocked(op, p)
}

func (c *Conn) writeFrameLocked(op byte, p []byte) error {
	return c.writePartsLocked(op, nil, p)
}

// WriteMessage sends a and b as one binary frame (its payload is a then
// b), as Write(append(a, b...)) would, without joining them first: the
// xpra frame writer gives it a record's header and payload. On a socket
// it is one writev; over TLS the WebSocket header, a and the start of b
// are joined (at most one TLS record's worth) and the rest of b is written
// as it is, so a large payload is never copied whole.
func (c *Conn) WriteMessage(a, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writePartsLocked(opBinary, a, b)
}

// firstRecord is what is joined before a large payload over TLS: one
// full TLS record.
const firstRecord = 16 << 10

func (c *Conn) writePartsLocked(op byte, a, b []byte) error {
	if c.wclosed {
		return net.ErrClosed
	}
	h := c.whdr[:2]
	h[0] = 0x80 | op
	switch n := len(a) + len(b); {
	case n < 126:
		h[1] = byte(n)
	case n <= 0xffff:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	if c.client {
		h[1] |= 0x80
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], uint32(c.maskRand.Uint64()))
		h = append(h, key[:]...)
		n := len(a) + len(b)
		if cap(c.maskBuf) < n {
			c.maskBuf = make([]byte, n)
		}
		payload := c.maskBuf[:n]
		copy(payload[copy(payload, a):], b)
		applyMask(payload, key, 0)
		a, b = nil, payload
	}
	var err error
	switch {
	case c.vectored:
		c.wbufArr = [3][]byte{h, a, b}
		c.wbufs = c.wbufArr[:]
		_, err = c.wbufs.WriteTo(c.wconn)
		c.wbufArr = [3][]byte{}
	case len(a)+len(b) <= joinMax:
		// No writev under us (TLS): one write, so one record per frame.
		bp := joinPool.Get().(*[]byte)
		j := append(append(append((*bp)[:0], h...), a...), b...)
		_, err = c.wconn.Write(j)
		*bp = j[:0]
		joinPool.Put(bp)
	default:
		k := max(0, min(len(b), firstRecord-len(h)-len(a)))
		bp := joinPool.Get().(*[]byte)
		j := append(append(append((*bp)[:0], h...), a...), b[:k]...)
		_, err = c.wconn.Write(j)
		*bp = j[:0]
		joinPool.Put(bp)
		if err == nil {
			_, err = c.wconn.Write(b[k:])
		}
	}
	if c.client && cap(c.maskBuf) > 1<<20 {
		c.maskBuf = nil // do not pin a huge buffer
	}
	if err != nil {
		// A partial frame corrupts the stream: no more frames.
		c.wclosed = true
		return err
	}
	if op == opClose {
		c.wclosed = true
	}
	return nil
}

// applyMask XORs b with the mask key starting at key offset pos and
// returns the next offset.
func applyMask(b []byte, key [4]byte, pos int) int {
	pos &= 3
	i := 0
	// Align to the key, then 8 bytes at a time.
	for ; i < len(b) && pos != 0; i++ {
		b[i] ^= key[pos]
		pos = (pos + 1) & 3
	}
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^k)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[pos]
		pos = (pos + 1) & 3
	}
	return pos
}

// Close sends a close frame (best effort: skipped when a Write is blocked,
// bounded by one second) and closes the underlying connection.
func (c *Conn) Close() error {
	if c.wmu.TryLock() {
		if !c.wclosed {
			_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			var b [2]byte
			binary.BigEndian.PutUint16(b[:], closeNormal)
			_ = c.writeFrameLocked(opClose, b[:])
		}
		c.wclosed = true
		c.wmu.Unlock()
	}
	return c.conn.Close()
}

// LocalAddr returns the underlying connection's local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the underlying connection's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets both deadlines on the underlying connection.
func (c *Conn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rdl, c.wdl = t, t
	return c.conn.SetDeadline(t)
}

// SetReadDeadline sets the underlying connection's read deadline; it also
// bounds the control replies a Read writes.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rdl = t
	return c.conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the underlying connection's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdl = t
	return c.conn.SetWriteDeadline(t)
}

// NetConn returns the underlying connection (for example a *tls.Conn).
func (c *Conn) NetConn() net.Conn { return c.conn }

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// IsUpgrade is the one rule for what counts as a WebSocket upgrade
// request: an Upgrade header with the token "websocket" and a Connection
// header with the token "upgrade" (comma-separated lists, any case).
// Upgrade refuses what it rejects; the edge routes what it accepts here.
func IsUpgrade(h http.Header) bool {
	return headerHasToken(h, "Upgrade", "websocket") && headerHasToken(h, "Connection", "upgrade")
}

// headerHasToken reports whether a comma-separated header contains tok
// (case-insensitive, spaces trimmed).
func headerHasToken(h http.Header, name, tok string) bool {
	for _, v := range h.Values(name) {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), tok) {
				return true
			}
		}
	}
	return false
}

// Upgrade answers a WebSocket upgrade on any path, as xpra does: it needs
// GET, Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Version 13
// (or 7, 8), a Sec-WebSocket-Key, and "binary" in Sec-WebSocket-Protocol
// (echoed). On refusal it answers 400 (or 403 without "binary") with a
// plain-text reason and returns a wrapped ErrBadHandshake or
// ErrNoSubprotocol. On success the connection is hijacked, its deadlines
// cleared, and the returned conn carries the frames' byte stream.
func Upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, error) {
	refuse := func(code int, err error, msg string) (net.Conn, error) {
		if code == http.StatusBadRequest {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, msg, code)
		return nil, err
	}
	if r.Method != http.MethodGet {
		return refuse(http.StatusBadRequest, fmt.Errorf("%w: method %s", ErrBadHandshake, r.Method), "websocket: GET required")
	}
	if !IsUpgrade(r.Header) {
		return refuse(http.StatusBadRequest, fmt.Errorf("%w: not an upgrade request", ErrBadHandshake), "websocket: upgrade request required")
	}
	switch v := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Version")); v {
	case "13", "8", "7":
	default:
		return refuse(http.StatusBadRequest, fmt.Errorf("%w: version %q", ErrBadHandshake, v), "websocket: version 13 required")
	}
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return refuse(http.StatusBadRequest, fmt.Errorf("%w: bad Sec-WebSocket-Key", ErrBadHandshake), "websocket: bad Sec-WebSocket-Key")
	}
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", "binary") {
		return refuse(http.StatusForbidden, ErrNoSubprotocol, "websocket: the \"binary\" subprotocol is required")
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return refuse(http.StatusInternalServerError, fmt.Errorf("%w: hijack: %w", ErrBadHandshake, err), "websocket: upgrade unsupported")
	}
	_ = conn.SetDeadline(time.Time{})
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n" +
		"Sec-WebSocket-Protocol: binary\r\n\r\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: writing response: %w", ErrBadHandshake, err)
	}
	// What the web server buffered past the request is taken; from now on
	// the connection is read directly.
	return newConn(conn, rw.Reader, false), nil
}

// Dial performs the client handshake over an established connection (TCP,
// or TLS for wss): GET path with Host host and subprotocol "binary". The
// context bounds the handshake. Frames the returned conn sends are masked.
func Dial(ctx context.Context, conn net.Conn, host, path string) (net.Conn, error) {
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if strings.ContainsAny(path, " \r\n") || strings.ContainsAny(host, " \r\n/") {
		return nil, fmt.Errorf("%w: invalid host or path", ErrBadHandshake)
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("websocket key: %w", err)
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])

	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := "GET " + path + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: binary\r\n\r\n"
	fail := func(err error) (net.Conn, error) {
		cerr := ctx.Err()
		if d, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(d) {
			cerr = context.DeadlineExceeded // the conn deadline fired first
		}
		if cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		return nil, err
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return fail(fmt.Errorf("%w: writing request: %w", ErrBadHandshake, err))
	}
	br := bufio.NewReaderSize(conn, handshakeBufSize)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return fail(fmt.Errorf("%w: reading response: %w", ErrBadHandshake, err))
	}
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return nil, fmt.Errorf("%w: server answered %s", ErrBadHandshake, resp.Status)
	case !IsUpgrade(resp.Header):
		return nil, fmt.Errorf("%w: response is not an upgrade", ErrBadHandshake)
	case resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key):
		return nil, fmt.Errorf("%w: wrong Sec-WebSocket-Accept", ErrBadHandshake)
	case !strings.EqualFold(strings.TrimSpace(resp.Header.Get("Sec-WebSocket-Protocol")), "binary"):
		return nil, fmt.Errorf("%w: server chose %q", ErrNoSubprotocol, resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	if !stop() {
		return nil, fmt.Errorf("%w: %w", ErrBadHandshake, ctx.Err())
	}
	_ = conn.SetDeadline(time.Time{})
	return newConn(conn, br, true), nil
}
