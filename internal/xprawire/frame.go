package xprawire

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// maxDisconnectLine bounds the plain-text disconnect line read before the first header.
const maxDisconnectLine = 4096

// FrameReader reads records (header + still-compressed payload) from a
// bufio.Reader. It checks the chunk index and the payload size against its
// limit before reading a payload, and tracks pending raw chunks (at most
// MaxPendingChunks, no duplicate index) until their main record. It is not
// safe for concurrent use.
type FrameReader struct {
	r        *bufio.Reader
	max      uint32
	hdr      [HeaderSize]byte
	buf      []byte
	bigAt    time.Time // when a record last needed most of a buffer over 1 MiB
	started  bool      // a valid header has been read
	pending  uint16    // bit i: chunk index i seen since the last main record
	npending int
}

// shrinkAfter is how long a payload buffer over 1 MiB is kept without a
// record that needs most of it.
const shrinkAfter = 2 * time.Second

// Release drops the payload buffer, so that an idle reader holds no
// memory for the largest record it once read; the next Next allocates
// again.
func (fr *FrameReader) Release() { fr.buf = nil }

// NewFrameReader returns a reader with the DefaultMaxPacketSize payload limit.
func NewFrameReader(r *bufio.Reader) *FrameReader {
	return &FrameReader{r: r, max: DefaultMaxPacketSize}
}

// SetMaxSize sets the payload limit, clamped to AbsMaxPacketSize; 0 restores
// DefaultMaxPacketSize.
func (fr *FrameReader) SetMaxSize(n uint32) {
	switch {
	case n == 0:
		n = DefaultMaxPacketSize
	case n > AbsMaxPacketSize:
		n = AbsMaxPacketSize
	}
	fr.max = n
}

// MaxSize returns the current payload limit.
func (fr *FrameReader) MaxSize() uint32 { return fr.max }

// Next reads one record. The payload is valid only until the next call: its
// buffer is reused, so steady-state reading does not allocate. A clean end of
// stream before a header is io.EOF; a partial header or payload is
// ErrTruncated (wrapping io.ErrUnexpectedEOF). Before the first valid header,
// a line starting with "disconnect" is returned as *DisconnectTextError.
func (fr *FrameReader) Next() (Header, []byte, error) {
	h, err := fr.NextHeader()
	if err != nil {
		return h, nil, err
	}
	payload, err := fr.Payload(h)
	return h, payload, err
}

// NextHeader reads and checks one record header (sizes, chunk indexes and
// counts, as Next does). The caller must then consume exactly h.Size
// payload bytes with Payload or CopyPayload before the next header.
func (fr *FrameReader) NextHeader() (Header, error) {
	n, err := io.ReadFull(fr.r, fr.hdr[:])
	if err != nil {
		if err == io.EOF {
			return Header{}, io.EOF
		}
		if !fr.started && n > 0 && bytes.HasPrefix([]byte("disconnect"), fr.hdr[:n]) && fr.hdr[0] != Magic {
			return Header{}, &DisconnectTextError{Text: disconnectText(fr.hdr[:n])}
		}
		return Header{}, fmt.Errorf("%w: header: got %d of %d bytes: %w", ErrTruncated, n, HeaderSize, err)
	}
	if fr.hdr[0] != Magic && !fr.started && bytes.HasPrefix([]byte("disconnect"), fr.hdr[:]) {
		return Header{}, fr.readDisconnect()
	}
	h, err := ParseHeader(fr.hdr[:])
	if err != nil {
		return Header{}, err
	}
	if h.Index > MaxChunkIndex {
		return h, fmt.Errorf("%w: %d (max %d)", ErrChunkIndex, h.Index, MaxChunkIndex)
	}
	if h.Size > fr.max {
		return h, fmt.Errorf("%w: payload of %d bytes, limit %d", ErrTooLarge, h.Size, fr.max)
	}
	if h.Index > 0 {
		bit := uint16(1) << h.Index
		if fr.pending&bit != 0 {
			return h, fmt.Errorf("%w: %d", ErrDuplicateChunk, h.Index)
		}
		if fr.npending >= MaxPendingChunks {
			return h, fmt.Errorf("%w: chunk %d would be number %d, limit %d", ErrTooManyChunks, h.Index, fr.npending+1, MaxPendingChunks)
		}
		fr.pending |= bit
		fr.npending++
	} else {
		fr.pending, fr.npending = 0, 0
	}
	fr.started = true
	return h, nil
}

// Payload reads the payload of the record whose header NextHeader just
// returned, into the reader's reused buffer.
func (fr *FrameReader) Payload(h Header) ([]byte, error) {
	size := int(h.Size)
	// A buffer of over 1 MiB is kept while records of more than an eighth
	// of it keep coming (within shrinkAfter): a stream of mixed sizes does
	// not allocate (and clear) a large buffer again for each large record.
	// Once none has come for that long, the next smaller record gives it
	// up, so an idle reader holds no more than its last record needed.
	switch c := cap(fr.buf); {
	case c < size:
		fr.buf = make([]byte, size, max(size, 4096))
		fr.bigAt = time.Now()
	case c > 1<<20 && size >= c/8:
		fr.bigAt = time.Now()
	case c > 1<<20 && time.Since(fr.bigAt) > shrinkAfter:
		fr.buf = make([]byte, size, max(size, 4096))
	}
	fr.buf = fr.buf[:size]
	if n, err := io.ReadFull(fr.r, fr.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: payload: got %d of %d bytes: %w", ErrTruncated, n, size, err)
	}
	return fr.buf, nil
}

// CopyPayload copies the payload of the record whose header NextHeader
// just returned to dst without holding it in memory: first what the
// buffered reader already holds, then straight from raw, the connection
// under it. When dst and raw are TCP connections the kernel moves the
// bytes (splice on Linux) and they never reach user space.
func (fr *FrameReader) CopyPayload(dst io.Writer, raw io.Reader, h Header) (int64, error) {
	size := int64(h.Size)
	var done int64
	if b := fr.r.Buffered(); b > 0 {
		n := min(int64(b), size)
		buffered, _ := fr.r.Peek(int(n))
		w, err := dst.Write(buffered)
		_, _ = fr.r.Discard(w)
		done += int64(w)
		if err != nil {
			return done, err
		}
	}
	if done < size {
		n, err := io.CopyN(dst, raw, size-done)
		done += n
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, fmt.Errorf("%w: payload: got %d of %d bytes: %w", ErrTruncated, done, size, err)
		}
	}
	return done, nil
}

func (fr *FrameReader) readDisconnect() error {
	line := append([]byte(nil), fr.hdr[:]...)
	if !bytes.Contains(line, []byte{'\n'}) {
		for len(line) < maxDisconnectLine {
			c, err := fr.r.ReadByte()
			if err != nil {
				break
			}
			if c == '\n' {
				break
			}
			line = append(line, c)
		}
	}
	return &DisconnectTextError{Text: disconnectText(line)}
}

// disconnectText strips "disconnect", its separator and the line end.
func disconnectText(line []byte) string {
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	s := strings.TrimRight(string(line), "\r\n")
	s = strings.TrimPrefix(s, "disconnect")
	s = strings.TrimPrefix(s, ":")
	s = strings.TrimSpace(s)
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Frame is one record to write; WriteFrames sets Header.Size from the payload.
type Frame struct {
	Header  Header
	Payload []byte
}

// FrameWriter writes records, each header and payload (or a whole group of
// records) in one vectored write (net.Buffers, so writev on TCP and unix
// sockets). It is not safe for concurrent use.
type FrameWriter struct {
	w      io.Writer
	mw     MessageWriter // w writes a header and its payload as one message
	joined bool          // w has no writev: small frames are written as one buffer
	hdr    [HeaderSize]byte
	one    [2][]byte
	bufs   net.Buffers // WriteFrame
	vec    net.Buffers // WriteFrames, capacity reused
	hdrs   []byte
}

// MessageWriter is a writer that sends two buffers as one message (a
// WebSocket frame): WriteFrame hands it a record's header and payload
// together instead of joining them (a copy) or writing them apart (two
// messages).
type MessageWriter interface {
	WriteMessage(a, b []byte) error
}

// NewFrameWriter returns a writer to w.
func NewFrameWriter(w io.Writer) *FrameWriter {
	mw, _ := w.(MessageWriter)
	return &FrameWriter{w: w, mw: mw, joined: !vectored(w)}
}

// vectored reports whether w turns net.Buffers into one writev; for other
// writers (TLS, WebSocket) every buffer would be a separate record.
func vectored(w io.Writer) bool {
	switch w.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// joinMax is the largest payload copied next to its header so that a
// writer without writev gets one write (one TLS record) per frame.
const joinMax = 64 << 10

var joinPool = sync.Pool{New: func() any { b := make([]byte, 0, HeaderSize+joinMax); return &b }}

// checkPayload refuses payloads over AbsMaxPacketSize (ErrTooLarge).
func checkPayload(n int) error {
	if n > AbsMaxPacketSize {
		return fmt.Errorf("%w: payload of %d bytes, absolute limit %d", ErrTooLarge, n, AbsMaxPacketSize)
	}
	return nil
}

// WriteFrame writes h (with Size set to len(payload)) and payload in one vectored write.
func (fw *FrameWriter) WriteFrame(h Header, payload []byte) error {
	if err := checkPayload(len(payload)); err != nil {
		return err
	}
	h.Size = uint32(len(payload))
	h.Put(fw.hdr[:])
	if fw.mw != nil {
		if err := fw.mw.WriteMessage(fw.hdr[:], payload); err != nil {
			return fmt.Errorf("xprawire: write frame: %w", err)
		}
		return nil
	}
	if fw.joined && len(payload) <= joinMax {
		bp := joinPool.Get().(*[]byte)
		b := append(append((*bp)[:0], fw.hdr[:]...), payload...)
		_, err := fw.w.Write(b)
		*bp = b[:0]
		joinPool.Put(bp)
		if err != nil {
			return fmt.Errorf("xprawire: write frame: %w", err)
		}
		return nil
	}
	fw.one[0], fw.one[1] = fw.hdr[:], payload
	fw.bufs = fw.one[:]
	_, err := fw.bufs.WriteTo(fw.w)
	fw.one[0], fw.one[1] = nil, nil
	fw.bufs = nil
	if err != nil {
		return fmt.Errorf("xprawire: write frame: %w", err)
	}
	return nil
}

// WriteFrames writes every frame (headers with Size set) in one vectored write.
func (fw *FrameWriter) WriteFrames(frames []Frame) error {
	if len(frames) == 0 {
		return nil
	}
	need := len(frames) * HeaderSize
	if cap(fw.hdrs) < need {
		fw.hdrs = make([]byte, need)
	}
	hdrs := fw.hdrs[:need]
	vec := fw.vec[:0]
	if cap(vec) < 2*len(frames) {
		vec = make(net.Buffers, 0, 2*len(frames))
	}
	for i, f := range frames {
		if err := checkPayload(len(f.Payload)); err != nil {
			return err
		}
		h := f.Header
		h.Size = uint32(len(f.Payload))
		hb := hdrs[i*HeaderSize : (i+1)*HeaderSize]
		h.Put(hb)
		vec = append(vec, hb, f.Payload)
	}
	fw.vec = vec
	_, err := fw.vec.WriteTo(fw.w)
	clear(vec)
	fw.vec = vec[:0]
	if err != nil {
		return fmt.Errorf("xprawire: write frames: %w", err)
	}
	return nil
}
