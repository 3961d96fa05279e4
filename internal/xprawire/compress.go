package xprawire

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/pierrec/lz4/v4"
)

// Compressor is a payload compression algorithm.
type Compressor uint8

// Implemented compressors. lzo and zstd are deliberately absent: never advertise them.
const (
	NoCompression Compressor = iota
	Zlib
	LZ4
	Brotli
)

// String returns the name xpra uses in its "compressors" caps.
func (c Compressor) String() string {
	switch c {
	case NoCompression:
		return "none"
	case Zlib:
		return "zlib"
	case LZ4:
		return "lz4"
	case Brotli:
		return "brotli"
	}
	return fmt.Sprintf("compressor(%d)", uint8(c))
}

// Compression byte layout: low nibble = level 1..15, high bits = algorithm.
const (
	levelZlibBits   = 0x00
	levelLZ4Bits    = 0x10
	levelLZOBits    = 0x20 // python-lzo: not implemented
	levelBrotliBits = 0x40
	levelAlgoMask   = 0xF0
	levelValueMask  = 0x0F
)

// Level is the compression byte of a record header.
type Level byte

// MakeLevel returns the compression byte for c at level: zlib is the level
// itself, lz4 0x10|min(15,level), brotli 0x40|min(15,level); NoCompression or
// a level <= 0 gives 0 (uncompressed).
func MakeLevel(c Compressor, level int) Level {
	if level <= 0 {
		return 0
	}
	level = min(level, 15)
	switch c {
	case Zlib:
		return Level(levelZlibBits | level)
	case LZ4:
		return Level(levelLZ4Bits | level)
	case Brotli:
		return Level(levelBrotliBits | level)
	}
	return 0
}

// Compressor returns the algorithm of a compression byte: 0 is NoCompression,
// a non-zero byte without algorithm bits is zlib, lzo (0x20), zstd (0x80) and
// combinations of bits are ErrUnsupportedCompression.
func (l Level) Compressor() (Compressor, error) {
	if l == 0 {
		return NoCompression, nil
	}
	switch l & levelAlgoMask {
	case levelZlibBits:
		return Zlib, nil
	case levelLZ4Bits:
		return LZ4, nil
	case levelBrotliBits:
		return Brotli, nil
	case levelLZOBits:
		return 0, fmt.Errorf("%w: lzo (compression byte 0x%02x)", ErrUnsupportedCompression, byte(l))
	}
	return 0, fmt.Errorf("%w: compression byte 0x%02x", ErrUnsupportedCompression, byte(l))
}

// Value returns the level nibble.
func (l Level) Value() int { return int(l & levelValueMask) }

var (
	zlibWriters   [10]sync.Pool // by level 1..9
	zlibReaders   sync.Pool
	brotliWriters [12]sync.Pool // by quality 1..11
	brotliReaders sync.Pool
	lz4Fast       = sync.Pool{New: func() any { return new(lz4.Compressor) }}
	lz4HC         sync.Pool
)

// Compress appends src compressed with c at level to dst and returns the
// header byte to send with it. A level <= 0 or NoCompression appends src as is
// with level byte 0. zlib levels above 9 compress at 9; brotli quality is
// min(11, level), min(9, level) above 1 MiB, as xpra does.
func Compress(dst []byte, c Compressor, level int, src []byte) ([]byte, Level, error) {
	if c > Brotli {
		return dst, 0, fmt.Errorf("%w: %v", ErrUnsupportedCompression, c)
	}
	lb := MakeLevel(c, level)
	if lb == 0 {
		return append(dst, src...), 0, nil
	}
	switch c {
	case Zlib:
		zl := min(level, 9)
		buf := bytes.NewBuffer(dst)
		w, _ := zlibWriters[zl].Get().(*zlib.Writer)
		if w == nil {
			var err error
			if w, err = zlib.NewWriterLevel(buf, zl); err != nil {
				return dst, 0, fmt.Errorf("xprawire: zlib level %d: %w", zl, err)
			}
		} else {
			w.Reset(buf)
		}
		_, err := w.Write(src)
		if err == nil {
			err = w.Close()
		}
		zlibWriters[zl].Put(w)
		if err != nil {
			return dst, 0, fmt.Errorf("xprawire: zlib compress: %w", err)
		}
		return buf.Bytes(), lb, nil
	case LZ4:
		if len(src) > AbsMaxPacketSize {
			return dst, 0, fmt.Errorf("%w: lz4 input of %d bytes", ErrTooLarge, len(src))
		}
		start := len(dst)
		bound := lz4.CompressBlockBound(len(src))
		dst = grow(dst, 4+bound)
		binary.LittleEndian.PutUint32(dst[start:], uint32(len(src)))
		out := dst[start+4 : start+4+bound]
		var n int
		var err error
		if level >= 7 {
			hc, _ := lz4HC.Get().(*lz4.CompressorHC)
			if hc == nil {
				hc = new(lz4.CompressorHC)
			}
			hc.Level = lz4.CompressionLevel(1 << (8 + min(level, 9)))
			n, err = hc.CompressBlock(src, out)
			lz4HC.Put(hc)
		} else {
			fc := lz4Fast.Get().(*lz4.Compressor)
			n, err = fc.CompressBlock(src, out)
			lz4Fast.Put(fc)
		}
		if err != nil {
			return dst[:start], 0, fmt.Errorf("xprawire: lz4 compress: %w", err)
		}
		if n == 0 { // empty input: one token with no literals
			out[0] = 0
			n = 1
		}
		return dst[:start+4+n], lb, nil
	case Brotli:
		q := min(level, 11)
		if len(src) > 1<<20 {
			q = min(q, 9)
		}
		buf := bytes.NewBuffer(dst)
		w, _ := brotliWriters[q].Get().(*brotli.Writer)
		if w == nil {
			w = brotli.NewWriterLevel(buf, q)
		} else {
			w.Reset(buf)
		}
		_, err := w.Write(src)
		if err == nil {
			err = w.Close()
		}
		w.Reset(nil)
		brotliWriters[q].Put(w)
		if err != nil {
			return dst, 0, fmt.Errorf("xprawire: brotli compress: %w", err)
		}
		return buf.Bytes(), lb, nil
	}
	return dst, 0, fmt.Errorf("%w: %v", ErrUnsupportedCompression, c)
}

func getBrotliReader(src []byte) *brotli.Reader {
	if r, _ := brotliReaders.Get().(*brotli.Reader); r != nil {
		if r.Reset(bytes.NewReader(src)) == nil {
			return r
		}
	}
	return brotli.NewReader(bytes.NewReader(src))
}

// grow extends dst by n bytes (contents of the new bytes unspecified).
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), len(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	return dst[:len(dst)+n]
}

// Decompress appends the decompression of src (compression byte l) to dst.
// Output larger than max (clamped to MaxDecompressedSize; <= 0 means
// MaxDecompressedSize) is ErrTooLarge. Level 0 appends src unchanged.
func Decompress(dst []byte, l Level, src []byte, max int) ([]byte, error) {
	if max <= 0 || max > MaxDecompressedSize {
		max = MaxDecompressedSize
	}
	c, err := l.Compressor()
	if err != nil {
		return dst, err
	}
	switch c {
	case NoCompression:
		if len(src) > max {
			return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(src), max)
		}
		return append(dst, src...), nil
	case Zlib:
		zr, _ := zlibReaders.Get().(io.ReadCloser)
		br := bytes.NewReader(src)
		if zr == nil {
			zr, err = zlib.NewReader(br)
		} else {
			err = zr.(zlib.Resetter).Reset(br, nil)
		}
		if err != nil {
			return dst, fmt.Errorf("%w: zlib header: %v", ErrSyntax, err)
		}
		dst, err = readAllLimit(dst, zr, max, "zlib")
		zlibReaders.Put(zr)
		return dst, err
	case LZ4:
		if len(src) < 4 {
			return dst, fmt.Errorf("%w: lz4 payload of %d bytes has no size prefix", ErrTruncated, len(src))
		}
		n := binary.LittleEndian.Uint32(src)
		if uint64(n) > uint64(max) {
			return dst, fmt.Errorf("%w: lz4 declares %d bytes, limit %d", ErrTooLarge, n, max)
		}
		// A block expands at most ~255 times; refuse absurd declarations before allocating.
		if uint64(n) > 255*uint64(len(src)-4)+16 {
			return dst, fmt.Errorf("%w: lz4 declares %d bytes from %d compressed", ErrSyntax, n, len(src)-4)
		}
		if n == 0 { // an empty block is one zero token (or nothing)
			if len(src) > 5 || (len(src) == 5 && src[4] != 0) {
				return dst, fmt.Errorf("%w: lz4 declares 0 bytes but has a %d-byte block", ErrSyntax, len(src)-4)
			}
			return dst, nil
		}
		start := len(dst)
		dst = grow(dst, int(n))
		got, err := lz4.UncompressBlock(src[4:], dst[start:])
		if err != nil {
			return dst[:start], fmt.Errorf("%w: lz4 block: %v", ErrSyntax, err)
		}
		if got != int(n) {
			return dst[:start], fmt.Errorf("%w: lz4 block gave %d bytes, declared %d", ErrSyntax, got, n)
		}
		return dst, nil
	case Brotli:
		r := getBrotliReader(brotliWindowFor(src, max))
		defer brotliReaders.Put(r)
		return readAllLimit(dst, r, max, "brotli")
	}
	return dst, fmt.Errorf("%w: %v", ErrUnsupportedCompression, c)
}

// brotliWindowFor returns src with its window shrunk to the smallest that
// holds max bytes. The decoder allocates its ring buffer from the window
// and the declared length of a meta-block, before it produces anything:
// 203 bytes declaring a 16 MiB window and 16 MiB meta-blocks cost 16 MiB
// however early the output limit stops them. Only windows of 256 KiB to
// 16 MiB (WBITS 18-24: a 1 then 3 bits n, WBITS = 17+n, RFC 7932 9.1) are
// shrunk, to WBITS 18 at least, so the code keeps its 4 bits and every
// later bit stays in place. The first max bytes decode the same: a
// distance beyond min(window-16, bytes so far) is a dictionary reference
// under either window, and the bytes so far never exceed window-16.
func brotliWindowFor(src []byte, max int) []byte {
	if len(src) == 0 || src[0]&1 == 0 {
		return src
	}
	n := src[0] >> 1 & 7
	if n == 0 {
		return src // WBITS 10-17: 128 KiB or less
	}
	want := byte(1) // WBITS 18
	for want < n && (1<<(17+int(want)))-16 < max {
		want++
	}
	if want >= n {
		return src
	}
	out := bytes.Clone(src)
	out[0] = out[0]&^0x0e | want<<1
	return out
}

func readAllLimit(dst []byte, r io.Reader, max int, what string) ([]byte, error) {
	start := len(dst)
	for {
		if len(dst) == cap(dst) {
			if len(dst)-start > max {
				return dst[:start], fmt.Errorf("%w: %s output over %d bytes", ErrTooLarge, what, max)
			}
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst)-start > max {
			return dst[:start], fmt.Errorf("%w: %s output over %d bytes", ErrTooLarge, what, max)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return dst[:start], fmt.Errorf("%w: %s stream: %v", ErrTruncated, what, err)
			}
			return dst[:start], fmt.Errorf("%w: %s stream: %v", ErrSyntax, what, err)
		}
	}
}

// decompressPrefix returns up to n leading bytes of the decompressed payload,
// decompressing no more than needed (lz4 is decoded token by token).
func decompressPrefix(l Level, src []byte, n int) ([]byte, error) {
	c, err := l.Compressor()
	if err != nil {
		return nil, err
	}
	switch c {
	case NoCompression:
		return src[:min(n, len(src))], nil
	case LZ4:
		if len(src) < 4 {
			return nil, fmt.Errorf("%w: lz4 payload of %d bytes has no size prefix", ErrTruncated, len(src))
		}
		declared := binary.LittleEndian.Uint32(src)
		return lz4Prefix(src[4:], int(min(uint32(n), declared)))
	case Zlib:
		return zlibPrefix(src, n)
	case Brotli:
		r := getBrotliReader(brotliWindowFor(src, n))
		defer brotliReaders.Put(r)
		buf := make([]byte, n)
		got, err := io.ReadFull(r, buf)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return nil, fmt.Errorf("%w: %v stream: %v", ErrSyntax, c, err)
		}
		return buf[:got], nil
	}
	return nil, fmt.Errorf("%w: %v", ErrUnsupportedCompression, c)
}

// lz4Prefix decodes the first n bytes of a raw lz4 block, with bounds checks
// on every step. It is used to peek at packet types cheaply.
func lz4Prefix(src []byte, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	bad := func(what string) ([]byte, error) {
		return nil, fmt.Errorf("%w: lz4 block: %s", ErrSyntax, what)
	}
	i := 0
	for i < len(src) && len(out) < n {
		token := src[i]
		i++
		lit := int(token >> 4)
		if lit == 15 {
			for {
				if i >= len(src) {
					return bad("truncated literal length")
				}
				b := src[i]
				i++
				lit += int(b)
				if lit > len(src) {
					return bad("literal length beyond input")
				}
				if b != 255 {
					break
				}
			}
		}
		if lit > len(src)-i {
			return bad("literals beyond input")
		}
		out = append(out, src[i:i+min(lit, n-len(out))]...)
		i += lit
		if len(out) >= n || i == len(src) {
			break
		}
		if i+2 > len(src) {
			return bad("truncated match offset")
		}
		off := int(src[i]) | int(src[i+1])<<8
		i += 2
		if off == 0 || off > len(out) {
			return bad("match offset out of range")
		}
		ml := int(token&15) + 4
		if token&15 == 15 {
			for {
				if i >= len(src) {
					return bad("truncated match length")
				}
				b := src[i]
				i++
				ml += int(b)
				if ml > n+(1<<20) {
					ml = n + (1 << 20) // only n bytes are needed anyway
				}
				if b != 255 {
					break
				}
			}
		}
		for k := 0; k < ml && len(out) < n; k++ {
			out = append(out, out[len(out)-off])
		}
	}
	return out, nil
}
