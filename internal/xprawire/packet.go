package xprawire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// peekPrefix is how many decompressed bytes PeekType looks at first, and
// peekPrefixMax the most it will look at (packet types are short words).
const (
	peekPrefix    = 64
	peekPrefixMax = 1024
)

// DecodeMain decompresses (at most MaxDecompressedSize) and decodes a main
// record (index 0) according to its flags. The packet does not alias payload.
// Code that decodes what an untrusted peer sent uses DecodeMainLimit.
func DecodeMain(h Header, payload []byte) (Packet, error) {
	return DecodeMainLimit(h, payload, MaxDecompressedSize)
}

// DecodeMainLimit is DecodeMain with the decompressed payload limited to max
// bytes (clamped to MaxDecompressedSize; <= 0 means MaxDecompressedSize):
// a larger one is ErrTooLarge, found before more than max bytes are held.
func DecodeMainLimit(h Header, payload []byte, max int) (Packet, error) {
	if h.Index != 0 {
		return nil, fmt.Errorf("%w: DecodeMain on raw chunk %d", ErrChunkIndex, h.Index)
	}
	enc, err := EncodingForFlags(h.Flags)
	if err != nil {
		return nil, err
	}
	var data []byte
	if h.Level == 0 {
		data = bytes.Clone(payload)
	} else {
		data, err = Decompress(nil, h.Level, payload, max)
		if err != nil {
			return nil, fmt.Errorf("main packet: %w", err)
		}
	}
	v, err := unmarshalOwned(enc, data)
	if err != nil {
		return nil, fmt.Errorf("main packet: %w", err)
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: main packet is a %s, not a list", ErrSyntax, typeName(v))
	}
	if len(l) == 0 {
		return nil, fmt.Errorf("%w: empty main packet", ErrSyntax)
	}
	return Packet(l), nil
}

// PeekType returns the packet type of a main record from at most the first
// 64 decompressed bytes, without decoding the rest. An integer alias gives ""
// and no error.
func PeekType(h Header, payload []byte) (string, error) {
	if h.Index != 0 {
		return "", fmt.Errorf("%w: PeekType on raw chunk %d", ErrChunkIndex, h.Index)
	}
	enc, err := EncodingForFlags(h.Flags)
	if err != nil {
		return "", err
	}
	n := peekPrefix
	if h.Level == 0 {
		n = len(payload)
	}
	for {
		prefix, err := decompressPrefix(h.Level, payload, n)
		if err != nil {
			return "", fmt.Errorf("peek type: %w", err)
		}
		d := decoder{b: prefix, plus: enc == RencodePlus}
		var t []byte
		if enc == Bencode {
			t, err = d.peekBencode()
		} else {
			t, err = d.peekRencode()
		}
		if err != nil {
			// an unusually long type: look once more at a larger prefix
			if errors.Is(err, ErrTruncated) && len(prefix) == n && n < peekPrefixMax {
				n = peekPrefixMax
				continue
			}
			return "", fmt.Errorf("peek type: %v: %w", enc, err)
		}
		return internType(t), nil
	}
}

func (d *decoder) peekBencode() ([]byte, error) {
	if len(d.b) == 0 {
		return nil, d.truncated("empty packet")
	}
	if d.b[0] != 'l' {
		return nil, d.errf(ErrSyntax, "packet is not a list (0x%02x)", d.b[0])
	}
	d.pos = 1
	if d.pos >= len(d.b) {
		return nil, d.truncated("packet type expected")
	}
	switch c := d.b[d.pos]; {
	case c == 'i':
		return nil, nil
	case c == 'u':
		d.pos++
		return d.bstring()
	case c >= '0' && c <= '9':
		return d.bstring()
	case c == 'e':
		return nil, d.errf(ErrSyntax, "empty packet")
	default:
		return nil, d.errf(ErrSyntax, "packet type has typecode 0x%02x", c)
	}
}

func (d *decoder) peekRencode() ([]byte, error) {
	if len(d.b) == 0 {
		return nil, d.truncated("empty packet")
	}
	c := d.b[0]
	switch {
	case c == rcListFixedStart:
		return nil, d.errf(ErrSyntax, "empty packet")
	case c > rcListFixedStart || c == rcList:
	default:
		return nil, d.errf(ErrSyntax, "packet is not a list (0x%02x)", c)
	}
	d.pos = 1
	if d.pos >= len(d.b) {
		return nil, d.truncated("packet type expected")
	}
	c = d.b[d.pos]
	switch {
	case c <= rcIntPosFixedMax || (c >= rcInt8 && c <= rcInt64) || (c >= rcIntNegFixedStart && c < rcIntNegFixedStart+rcIntNegFixedCount) || c == rcBigInt:
		return nil, nil
	case c >= rcStrFixedStart && c < rcStrFixedStart+rcStrFixedCount:
		n := int(c - rcStrFixedStart)
		d.pos++
		if err := d.need(n, "packet type"); err != nil {
			return nil, err
		}
		return d.b[d.pos : d.pos+n], nil
	case c >= '0' && c <= '9':
		minFirst := byte('1')
		if d.plus {
			minFirst = '0'
		}
		n, _, err := d.decimalLength(minFirst, false)
		if err != nil {
			return nil, err
		}
		return d.b[d.pos : d.pos+n], nil
	case c == rcList && len(d.b) > 2 && d.b[2] == rcTerm:
		return nil, d.errf(ErrSyntax, "empty packet")
	}
	return nil, d.errf(ErrSyntax, "packet type has typecode 0x%02x", c)
}

// internType returns common packet types without allocating.
func internType(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "hello":
		return "hello"
	case "challenge":
		return "challenge"
	case "disconnect":
		return "disconnect"
	case "ping":
		return "ping"
	case "ping_echo":
		return "ping_echo"
	case "set_deflate":
		return "set_deflate"
	case "info-request":
		return "info-request"
	case "info-response":
		return "info-response"
	case "draw":
		return "draw"
	case "damage-sequence":
		return "damage-sequence"
	case "cursor":
		return "cursor"
	case "window-icon":
		return "window-icon"
	case "sound-data":
		return "sound-data"
	case "pointer-position":
		return "pointer-position"
	case "key-action":
		return "key-action"
	case "button-action":
		return "button-action"
	case "configure-window":
		return "configure-window"
	case "new-window":
		return "new-window"
	case "lost-window":
		return "lost-window"
	case "startup-complete":
		return "startup-complete"
	case "setting-change":
		return "setting-change"
	case "send-file":
		return "send-file"
	case "send-file-chunk":
		return "send-file-chunk"
	case "connection-lost":
		return "connection-lost"
	}
	return string(b)
}

// PacketReader reads whole packets: raw chunks are decompressed, copied and
// substituted at their index into the next main packet, and integer packet
// types are mapped through Aliases (those we advertised, if any).
//
// No record decompresses to more than MaxDecompressed bytes (0: the frame
// reader's payload limit, Frames.MaxSize, so a peer's packet size limit
// bounds what it makes us hold, compressed or not), and with NoChunks a raw
// chunk is refused (ErrChunkIndex) before it is decompressed: a peer that is
// not logged in has no business sending any.
type PacketReader struct {
	Frames          *FrameReader
	Aliases         map[int64]string
	MaxDecompressed int
	NoChunks        bool

	chunks [MaxChunkIndex + 1][]byte
	have   uint16
}

// NewPacketReader returns a reader over r with the default size limit.
func NewPacketReader(r *bufio.Reader) *PacketReader {
	return &PacketReader{Frames: NewFrameReader(r)}
}

// ReadPacket returns the next main packet and its header.
func (pr *PacketReader) ReadPacket() (Packet, Header, error) {
	for {
		h, payload, err := pr.Frames.Next()
		if err != nil {
			pr.reset()
			return nil, h, err
		}
		max := pr.MaxDecompressed
		if max <= 0 {
			max = int(pr.Frames.MaxSize())
		}
		if h.Index > 0 {
			if pr.NoChunks {
				pr.reset()
				return nil, h, fmt.Errorf("%w: raw chunk %d refused here", ErrChunkIndex, h.Index)
			}
			if h.Flags&FlagCipher != 0 {
				pr.reset()
				return nil, h, fmt.Errorf("%w: raw chunk %d", ErrCipher, h.Index)
			}
			data, err := Decompress(nil, h.Level, payload, max)
			if err != nil {
				pr.reset()
				return nil, h, fmt.Errorf("raw chunk %d: %w", h.Index, err)
			}
			pr.chunks[h.Index] = data
			pr.have |= 1 << h.Index
			continue
		}
		p, err := DecodeMainLimit(h, payload, max)
		if err != nil {
			pr.reset()
			return nil, h, err
		}
		for i := 1; i <= MaxChunkIndex; i++ {
			if pr.have&(1<<i) == 0 {
				continue
			}
			if i >= len(p) {
				pr.reset()
				return nil, h, fmt.Errorf("%w: raw chunk %d for a packet of %d elements", ErrChunkIndex, i, len(p))
			}
			p[i] = pr.chunks[i]
		}
		pr.reset()
		if _, isString := p[0].(string); !isString {
			if _, isBytes := p[0].([]byte); !isBytes {
				alias, ok := p[0].(int64)
				name, found := pr.Aliases[alias]
				if !ok || !found {
					return nil, h, fmt.Errorf("%w: packet type %s is not a known alias", ErrSyntax, describeType(p[0]))
				}
				p[0] = name
			}
		}
		return p, h, nil
	}
}

func describeType(v any) string {
	if i, ok := v.(int64); ok {
		return fmt.Sprintf("%d", i)
	}
	return "of type " + typeName(v)
}

func (pr *PacketReader) reset() {
	pr.chunks = [MaxChunkIndex + 1][]byte{}
	pr.have = 0
}

// RawChunk as a packet argument (index >= 1) is sent by PacketWriter as its
// own record before the main one, with an empty bytes placeholder in the main
// packet. Level is the compression byte Data is already compressed with (0: raw).
type RawChunk struct {
	Data  []byte
	Level Level
}

// PacketWriter encodes and writes packets. It never aliases packet types.
type PacketWriter struct {
	Frames           *FrameWriter
	Encoding         Encoding
	Compressor       Compressor // for main packets larger than MinCompressSize
	CompressionLevel int        // 0: never compress
	Flush            bool       // set FlagFlush on main records (only for peers that advertised "flush")
	LargeArgSize     int        // []byte arguments (index>=1) larger than this go as raw chunks when level>0; 0 never
	MaxSize          int        // main records whose payload (encoded, compressed) is larger are ErrTooLarge, unwritten; 0: AbsMaxPacketSize

	buf, zbuf []byte  // reused encode and compress buffers
	frames    []Frame // reused by WritePacket
}

// NewPacketWriter returns an uncompressed writer with encoder e.
func NewPacketWriter(fw *FrameWriter, e Encoding) *PacketWriter {
	return &PacketWriter{Frames: fw, Encoding: e}
}

// WritePacket encodes p and writes its records in one vectored write. The
// writer's buffers are reused (up to writerKeepMax), so steady-state writes
// of plain packets allocate little; a PacketWriter is not safe for
// concurrent use.
func (pw *PacketWriter) WritePacket(p Packet) error {
	frames, err := pw.encode(p, false)
	if err != nil {
		return err
	}
	if len(frames) == 1 {
		err = pw.Frames.WriteFrame(frames[0].Header, frames[0].Payload)
	} else {
		err = pw.Frames.WriteFrames(frames)
	}
	// An occasional large packet does not make the writer hold its size
	// for as long as it lives.
	if cap(pw.buf) > writerKeepMax {
		pw.buf = nil
	}
	if cap(pw.zbuf) > writerKeepMax {
		pw.zbuf = nil
	}
	return err
}

// writerKeepMax is the largest encode or compress buffer a PacketWriter
// keeps for the next packet.
const writerKeepMax = 1 << 20

// EncodePacket returns the records WritePacket would write (raw chunks first,
// then the main record) without writing them.
func (pw *PacketWriter) EncodePacket(p Packet) ([]Frame, error) {
	return pw.encode(p, true)
}

// encode builds the records; with own=false the main payload lives in the
// writer's reused buffers and is valid only until the next call.
func (pw *PacketWriter) encode(p Packet, own bool) ([]Frame, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: empty packet", ErrUnencodable)
	}
	var frames []Frame
	if !own {
		frames = pw.frames[:0]
	}
	main := p
	copied := false
	for i := 1; i < len(p) && i <= MaxChunkIndex; i++ {
		var f Frame
		switch a := p[i].(type) {
		case RawChunk:
			f = Frame{Header: Header{Level: a.Level, Index: uint8(i)}, Payload: a.Data}
		case *RawChunk:
			if a == nil {
				continue
			}
			f = Frame{Header: Header{Level: a.Level, Index: uint8(i)}, Payload: a.Data}
		case []byte:
			if pw.LargeArgSize <= 0 || pw.CompressionLevel <= 0 || len(a) <= pw.LargeArgSize || len(frames) >= MaxPendingChunks {
				continue
			}
			data, lvl, err := Compress(nil, pw.Compressor, pw.CompressionLevel, a)
			if err != nil {
				return nil, fmt.Errorf("raw chunk %d: %w", i, err)
			}
			f = Frame{Header: Header{Level: lvl, Index: uint8(i)}, Payload: data}
		default:
			continue
		}
		if len(frames) >= MaxPendingChunks {
			return nil, fmt.Errorf("%w: more than %d raw chunk arguments", ErrTooManyChunks, MaxPendingChunks)
		}
		if !copied {
			main = append(Packet(nil), p...)
			copied = true
		}
		main[i] = []byte{}
		frames = append(frames, f)
	}
	for i := MaxChunkIndex + 1; i < len(p); i++ {
		switch p[i].(type) {
		case RawChunk, *RawChunk:
			return nil, fmt.Errorf("%w: raw chunk argument at index %d", ErrChunkIndex, i)
		}
	}
	body, err := appendList(pw.buf[:0], pw.Encoding, main)
	if err != nil {
		return nil, fmt.Errorf("encode %q packet: %w", p.Type(), err)
	}
	h := Header{Flags: pw.Encoding.Flag()}
	if pw.Flush {
		h.Flags |= FlagFlush
	}
	pw.buf = body[:0]
	payload := body
	if pw.CompressionLevel > 0 && pw.Compressor != NoCompression && len(body) > MinCompressSize {
		var zdst []byte
		if !own {
			zdst = pw.zbuf[:0]
		}
		out, lvl, err := Compress(zdst, pw.Compressor, pw.CompressionLevel, body)
		if err != nil {
			return nil, fmt.Errorf("compress %q packet: %w", p.Type(), err)
		}
		if !own {
			pw.zbuf = out[:0]
		}
		payload, h.Level = out, lvl
	} else if own {
		payload = bytes.Clone(body)
	}
	if pw.MaxSize > 0 && len(payload) > pw.MaxSize {
		return nil, fmt.Errorf("%w: %q packet of %d bytes once encoded, limit %d", ErrTooLarge, p.Type(), len(payload), pw.MaxSize)
	}
	h.Size = uint32(len(payload))
	frames = append(frames, Frame{Header: h, Payload: payload})
	if !own {
		pw.frames = frames
	}
	return frames, nil
}
