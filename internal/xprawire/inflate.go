package xprawire

import "fmt"

// A small DEFLATE (RFC 1951) decoder inside a zlib (RFC 1950) wrapper that
// stops after the first n output bytes. PeekType uses it: compress/flate
// decodes up to a whole 32 KiB window before returning anything, which costs
// hundreds of microseconds per zlib packet; this reads only what it needs.
// It checks every length and distance; the adler32 checksum is not read.

const (
	maxCodeBits = 15
	numLitLen   = 288 // 286 used, 2 reserved in the fixed code
	numDist     = 30
	numCodeLen  = 19
)

// huffman is a canonical Huffman code: count[l] codes of length l, symbols in code order.
type huffman struct {
	count  [maxCodeBits + 1]uint16
	symbol [numLitLen]uint16
}

type inflater struct {
	in     []byte
	pos    int
	bitbuf uint32
	bitcnt uint
	out    []byte
	limit  int
}

var errInflateDone = fmt.Errorf("inflate: output limit reached")

func (f *inflater) bits(n uint) (uint32, error) {
	for f.bitcnt < n {
		if f.pos >= len(f.in) {
			return 0, fmt.Errorf("%w: zlib stream ends inside a block", ErrTruncated)
		}
		f.bitbuf |= uint32(f.in[f.pos]) << f.bitcnt
		f.pos++
		f.bitcnt += 8
	}
	v := f.bitbuf & (1<<n - 1)
	f.bitbuf >>= n
	f.bitcnt -= n
	return v, nil
}

// build fills h from code lengths; it reports whether the code is complete
// and fails when it is over-subscribed.
func (h *huffman) build(lengths []uint8) (complete bool, err error) {
	h.count = [maxCodeBits + 1]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	if int(h.count[0]) == len(lengths) {
		return true, nil // no codes: fine unless one is decoded (decode then fails)
	}
	left := 1
	for l := 1; l <= maxCodeBits; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return false, fmt.Errorf("%w: zlib: over-subscribed huffman code", ErrSyntax)
		}
	}
	var offs [maxCodeBits + 1]uint16
	for l := 1; l < maxCodeBits; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return left == 0, nil
}

func (f *inflater) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l <= maxCodeBits; l++ {
		b, err := f.bits(1)
		if err != nil {
			return 0, err
		}
		code |= int(b)
		count := int(h.count[l])
		if code-count < first {
			return int(h.symbol[index+(code-first)]), nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, fmt.Errorf("%w: zlib: invalid huffman code", ErrSyntax)
}

var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtr = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

	fixedLit, fixedDist huffman
)

func init() {
	var l [numLitLen]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	_, _ = fixedLit.build(l[:])
	var d [numDist]uint8
	for i := range d {
		d[i] = 5
	}
	_, _ = fixedDist.build(d[:])
}

func (f *inflater) emit(b byte) error {
	f.out = append(f.out, b)
	if len(f.out) >= f.limit {
		return errInflateDone
	}
	return nil
}

func (f *inflater) codes(lit, dist *huffman) error {
	for {
		sym, err := f.decode(lit)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			if err := f.emit(byte(sym)); err != nil {
				return err
			}
			continue
		case sym == 256:
			return nil
		}
		sym -= 257
		if sym >= len(lenBase) {
			return fmt.Errorf("%w: zlib: invalid length symbol", ErrSyntax)
		}
		e, err := f.bits(uint(lenExtra[sym]))
		if err != nil {
			return err
		}
		n := int(lenBase[sym]) + int(e)
		dsym, err := f.decode(dist)
		if err != nil {
			return err
		}
		if dsym >= numDist {
			return fmt.Errorf("%w: zlib: invalid distance symbol", ErrSyntax)
		}
		if e, err = f.bits(uint(distExtr[dsym])); err != nil {
			return err
		}
		d := int(distBase[dsym]) + int(e)
		if d > len(f.out) {
			return fmt.Errorf("%w: zlib: distance %d too far back", ErrSyntax, d)
		}
		for range n {
			if err := f.emit(f.out[len(f.out)-d]); err != nil {
				return err
			}
		}
	}
}

func (f *inflater) stored() error {
	f.bitbuf, f.bitcnt = 0, 0
	if len(f.in)-f.pos < 4 {
		return fmt.Errorf("%w: zlib: stored block header", ErrTruncated)
	}
	n := int(f.in[f.pos]) | int(f.in[f.pos+1])<<8
	if n != ^(int(f.in[f.pos+2])|int(f.in[f.pos+3])<<8)&0xffff {
		return fmt.Errorf("%w: zlib: stored block length check", ErrSyntax)
	}
	f.pos += 4
	for range n {
		if f.pos >= len(f.in) {
			return fmt.Errorf("%w: zlib: stored block data", ErrTruncated)
		}
		if err := f.emit(f.in[f.pos]); err != nil {
			return err
		}
		f.pos++
	}
	return nil
}

var codeLenOrder = [numCodeLen]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (f *inflater) dynamic() error {
	v, err := f.bits(14)
	if err != nil {
		return err
	}
	nlen, ndist, ncode := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	if nlen > 286 || ndist > numDist {
		return fmt.Errorf("%w: zlib: bad dynamic block counts", ErrSyntax)
	}
	var lengths [numLitLen + numDist]uint8
	for i := range ncode {
		b, err := f.bits(3)
		if err != nil {
			return err
		}
		lengths[codeLenOrder[i]] = uint8(b)
	}
	var lencode, distcode huffman
	if complete, err := lencode.build(lengths[:numCodeLen]); err != nil || !complete {
		return fmt.Errorf("%w: zlib: incomplete code-length code", ErrSyntax)
	}
	lengths = [numLitLen + numDist]uint8{}
	for i := 0; i < nlen+ndist; {
		sym, err := f.decode(&lencode)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep uint32
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return fmt.Errorf("%w: zlib: repeat with no previous length", ErrSyntax)
			}
			val = lengths[i-1]
			rep, err = f.bits(2)
			rep += 3
		case 17:
			rep, err = f.bits(3)
			rep += 3
		default:
			rep, err = f.bits(7)
			rep += 11
		}
		if err != nil {
			return err
		}
		if i+int(rep) > nlen+ndist {
			return fmt.Errorf("%w: zlib: too many code lengths", ErrSyntax)
		}
		for range rep {
			lengths[i] = val
			i++
		}
	}
	if lengths[256] == 0 {
		return fmt.Errorf("%w: zlib: no end-of-block code", ErrSyntax)
	}
	// an incomplete code is allowed only as a single code of length 1 (RFC 1951 3.2.7)
	complete, err := lencode.build(lengths[:nlen])
	if err != nil || (!complete && nlen != int(lencode.count[0])+int(lencode.count[1])) {
		return fmt.Errorf("%w: zlib: incomplete literal/length code", ErrSyntax)
	}
	complete, err = distcode.build(lengths[nlen : nlen+ndist])
	if err != nil || (!complete && ndist != int(distcode.count[0])+int(distcode.count[1])) {
		return fmt.Errorf("%w: zlib: incomplete distance code", ErrSyntax)
	}
	return f.codes(&lencode, &distcode)
}

// zlibPrefix returns the first n bytes (fewer if the stream is shorter) of a zlib stream.
func zlibPrefix(src []byte, n int) ([]byte, error) {
	if len(src) < 2 {
		return nil, fmt.Errorf("%w: zlib header", ErrTruncated)
	}
	cmf, flg := src[0], src[1]
	if cmf&0x0f != 8 || cmf>>4 > 7 || (uint16(cmf)<<8|uint16(flg))%31 != 0 {
		return nil, fmt.Errorf("%w: zlib header %02x%02x", ErrSyntax, cmf, flg)
	}
	if flg&0x20 != 0 {
		return nil, fmt.Errorf("%w: zlib preset dictionary", ErrSyntax)
	}
	f := inflater{in: src, pos: 2, out: make([]byte, 0, n), limit: n}
	if n <= 0 {
		return f.out, nil
	}
	for {
		last, err := f.bits(1)
		if err != nil {
			return f.finish(err)
		}
		typ, err := f.bits(2)
		if err != nil {
			return f.finish(err)
		}
		switch typ {
		case 0:
			err = f.stored()
		case 1:
			err = f.codes(&fixedLit, &fixedDist)
		case 2:
			err = f.dynamic()
		default:
			err = fmt.Errorf("%w: zlib: block type 3", ErrSyntax)
		}
		if err != nil {
			return f.finish(err)
		}
		if last == 1 {
			return f.out, nil
		}
	}
}

func (f *inflater) finish(err error) ([]byte, error) {
	if err == errInflateDone {
		return f.out, nil
	}
	return nil, err
}
