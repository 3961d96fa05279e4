package xprawire

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// rencode typecodes (python-rencode 1.0.6; rencodeplus shares the table).
const (
	rcIntPosFixedMax   = 43   // 0x00..0x2B: ints 0..43
	rcFloat64          = 0x2C // 8-byte IEEE float, big-endian
	rcList             = 0x3B // items..., 0x7F
	rcDict             = 0x3C // key, value..., 0x7F
	rcBigInt           = 0x3D // ASCII decimal, 0x7F
	rcInt8             = 0x3E
	rcInt16            = 0x3F
	rcInt32            = 0x40
	rcInt64            = 0x41
	rcFloat32          = 0x42 // 4-byte IEEE float, big-endian
	rcTrue             = 0x43
	rcFalse            = 0x44
	rcNone             = 0x45
	rcIntNegFixedStart = 0x46 // 0x46..0x65: ints -1..-32
	rcIntNegFixedCount = 32
	rcDictFixedStart   = 0x66 // 0x66..0x7E: dicts of 0..24 pairs
	rcDictFixedCount   = 25
	rcTerm             = 0x7F
	rcStrFixedStart    = 0x80 // 0x80..0xBF: strings of 0..63 bytes
	rcStrFixedCount    = 64
	rcListFixedStart   = 0xC0 // 0xC0..0xFF: lists of 0..63 items
	rcListFixedCount   = 64
	rcMaxBigIntLen     = 64 // decimal digits (with sign) accepted for 0x3D
)

func rencodeInt(dst []byte, x int64) []byte {
	switch {
	case x >= 0 && x <= rcIntPosFixedMax:
		return append(dst, byte(x))
	case x < 0 && x >= -rcIntNegFixedCount:
		return append(dst, byte(rcIntNegFixedStart-1-x))
	case x >= math.MinInt8 && x <= math.MaxInt8:
		return append(dst, rcInt8, byte(x))
	case x >= math.MinInt16 && x <= math.MaxInt16:
		return binary.BigEndian.AppendUint16(append(dst, rcInt16), uint16(x))
	case x >= math.MinInt32 && x <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(append(dst, rcInt32), uint32(x))
	}
	return binary.BigEndian.AppendUint64(append(dst, rcInt64), uint64(x))
}

func rencodeStr(dst []byte, s string) []byte {
	if len(s) < rcStrFixedCount {
		dst = append(dst, byte(rcStrFixedStart+len(s)))
		return append(dst, s...)
	}
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

func rencodeBytes(dst []byte, b []byte, plus bool) []byte {
	if plus {
		dst = strconv.AppendInt(dst, int64(len(b)), 10)
		dst = append(dst, '/')
		return append(dst, b...)
	}
	if len(b) < rcStrFixedCount {
		dst = append(dst, byte(rcStrFixedStart+len(b)))
		return append(dst, b...)
	}
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, ':')
	return append(dst, b...)
}

func rencodeFloat(dst []byte, f float64, plus bool) []byte {
	if plus {
		return binary.BigEndian.AppendUint64(append(dst, rcFloat64), math.Float64bits(f))
	}
	return binary.BigEndian.AppendUint32(append(dst, rcFloat32), math.Float32bits(float32(f)))
}

func rencodeAppend(dst []byte, v any, plus bool, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, unencodable("nesting deeper than 256 at %s", v)
	}
	var err error
	switch x := v.(type) {
	case string:
		if plus && !utf8.ValidString(x) {
			// the peer decodes str with .decode("utf8") and would drop the connection
			return dst, unencodable("rencodeplus str must be valid utf-8 (%s); send []byte", x)
		}
		return rencodeStr(dst, x), nil
	case []byte:
		return rencodeBytes(dst, x, plus), nil
	case int64:
		return rencodeInt(dst, x), nil
	case int:
		return rencodeInt(dst, int64(x)), nil
	case bool:
		if x {
			return append(dst, rcTrue), nil
		}
		return append(dst, rcFalse), nil
	case nil:
		return append(dst, rcNone), nil
	case float64:
		return rencodeFloat(dst, x, plus), nil
	case float32:
		if plus {
			return rencodeFloat(dst, float64(x), plus), nil
		}
		return binary.BigEndian.AppendUint32(append(dst, rcFloat32), math.Float32bits(x)), nil
	case []any:
		if len(x) < rcListFixedCount {
			dst = append(dst, byte(rcListFixedStart+len(x)))
		} else {
			dst = append(dst, rcList)
		}
		for _, e := range x {
			if dst, err = rencodeAppend(dst, e, plus, depth+1); err != nil {
				return dst, err
			}
		}
		if len(x) >= rcListFixedCount {
			dst = append(dst, rcTerm)
		}
		return dst, nil
	case Dict:
		if len(x) < rcDictFixedCount {
			dst = append(dst, byte(rcDictFixedStart+len(x)))
		} else {
			dst = append(dst, rcDict)
		}
		for _, kv := range x {
			if _, isDict := kv.Key.(Dict); isDict { // lists are tuples there
				return dst, unencodable("unhashable dict key (%s)", kv.Key)
			}
			if dst, err = rencodeAppend(dst, kv.Key, plus, depth+1); err != nil {
				return dst, err
			}
			if dst, err = rencodeAppend(dst, kv.Value, plus, depth+1); err != nil {
				return dst, err
			}
		}
		if len(x) >= rcDictFixedCount {
			dst = append(dst, rcTerm)
		}
		return dst, nil
	}
	if i, b, ok := intValue(v); ok {
		if b == nil {
			return rencodeInt(dst, i), nil
		}
		s := b.String()
		if len(s) >= rcMaxBigIntLen {
			return dst, unencodable("rencode cannot encode an integer of 64 or more characters (%s)", v)
		}
		dst = append(dst, rcBigInt)
		dst = append(dst, s...)
		return append(dst, rcTerm), nil
	}
	n, ok := normalize(v)
	if !ok {
		return dst, unencodable("rencode cannot encode type %s", v)
	}
	return rencodeAppend(dst, n, plus, depth+1)
}

func (d *decoder) need(n int, what string) error {
	if len(d.b)-d.pos < n {
		return d.errf(ErrTruncated, "%s needs %d bytes, %d remain", what, n, len(d.b)-d.pos)
	}
	return nil
}

// enter starts decoding one value: input left, nesting bound, value count.
func (d *decoder) enter(depth int) error {
	if d.pos >= len(d.b) {
		return d.truncated("value expected")
	}
	if depth > maxDepth {
		return d.errf(ErrSyntax, "nesting deeper than %d", maxDepth)
	}
	return d.count()
}

func (d *decoder) rdecode(depth int) (any, error) {
	if err := d.enter(depth); err != nil {
		return nil, err
	}
	c := d.b[d.pos]
	switch {
	case c <= rcIntPosFixedMax:
		d.pos++
		return int64(c), nil
	case c >= rcIntNegFixedStart && c < rcIntNegFixedStart+rcIntNegFixedCount:
		d.pos++
		return -int64(c-rcIntNegFixedStart) - 1, nil
	case c >= rcStrFixedStart && c < rcStrFixedStart+rcStrFixedCount:
		n := int(c - rcStrFixedStart)
		d.pos++
		if err := d.need(n, "string"); err != nil {
			return nil, err
		}
		s := d.b[d.pos : d.pos+n]
		if d.plus {
			if !utf8.Valid(s) {
				return nil, d.errf(ErrSyntax, "invalid utf-8 in a str")
			}
			d.pos += n
			return string(s), nil
		}
		d.pos += n
		return s, nil
	case c >= rcListFixedStart:
		n := int(c - rcListFixedStart)
		d.pos++
		l := make([]any, 0, min(n, len(d.b)-d.pos))
		for range n {
			v, err := d.rdecode(depth + 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case c >= rcDictFixedStart && c < rcDictFixedStart+rcDictFixedCount:
		n := int(c - rcDictFixedStart)
		d.pos++
		m := make(Dict, 0, min(n, (len(d.b)-d.pos)/2))
		for range n {
			kv, err := d.rpair(depth)
			if err != nil {
				return nil, err
			}
			m = append(m, kv)
		}
		return m, nil
	case c >= '0' && c <= '9':
		minFirst := byte('1') // rencode 1.0.6 does not accept "0:"
		if d.plus {
			minFirst = '0'
		}
		n, sep, err := d.decimalLength(minFirst, false)
		if err != nil {
			return nil, err
		}
		s := d.b[d.pos : d.pos+n]
		if d.plus && sep == ':' {
			if !utf8.Valid(s) {
				return nil, d.errf(ErrSyntax, "invalid utf-8 in a str")
			}
			d.pos += n
			return string(s), nil
		}
		d.pos += n
		return s, nil
	}
	switch c {
	case rcFloat64:
		if err := d.need(9, "float64"); err != nil {
			return nil, err
		}
		f := math.Float64frombits(binary.BigEndian.Uint64(d.b[d.pos+1:]))
		d.pos += 9
		return f, nil
	case rcFloat32:
		if err := d.need(5, "float32"); err != nil {
			return nil, err
		}
		f := math.Float32frombits(binary.BigEndian.Uint32(d.b[d.pos+1:]))
		d.pos += 5
		return f, nil
	case rcInt8:
		if err := d.need(2, "int8"); err != nil {
			return nil, err
		}
		v := int64(int8(d.b[d.pos+1]))
		d.pos += 2
		return v, nil
	case rcInt16:
		if err := d.need(3, "int16"); err != nil {
			return nil, err
		}
		v := int64(int16(binary.BigEndian.Uint16(d.b[d.pos+1:])))
		d.pos += 3
		return v, nil
	case rcInt32:
		if err := d.need(5, "int32"); err != nil {
			return nil, err
		}
		v := int64(int32(binary.BigEndian.Uint32(d.b[d.pos+1:])))
		d.pos += 5
		return v, nil
	case rcInt64:
		if err := d.need(9, "int64"); err != nil {
			return nil, err
		}
		v := int64(binary.BigEndian.Uint64(d.b[d.pos+1:]))
		d.pos += 9
		return v, nil
	case rcTrue:
		d.pos++
		return true, nil
	case rcFalse:
		d.pos++
		return false, nil
	case rcNone:
		d.pos++
		return nil, nil
	case rcBigInt:
		start := d.pos + 1
		end := -1
		for i := start; i < len(d.b) && i-start <= rcMaxBigIntLen; i++ {
			if d.b[i] == rcTerm {
				end = i
				break
			}
		}
		if end < 0 {
			if len(d.b)-start > rcMaxBigIntLen {
				return nil, d.errf(ErrSyntax, "big integer longer than %d characters", rcMaxBigIntLen)
			}
			return nil, d.truncated("unterminated big integer")
		}
		s := d.b[start:end]
		digits := s
		if len(digits) > 0 && (digits[0] == '-' || digits[0] == '+') {
			digits = digits[1:]
		}
		if len(digits) == 0 || !allDigits(digits) {
			return nil, d.errf(ErrSyntax, "invalid big integer %q", clip(s))
		}
		d.pos = end + 1
		if s[0] == '+' {
			s = s[1:]
		}
		return parseDecimal(s), nil
	case rcList:
		d.pos++
		l := []any{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.truncated("unterminated list")
			}
			if d.b[d.pos] == rcTerm {
				d.pos++
				return l, nil
			}
			v, err := d.rdecode(depth + 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
	case rcDict:
		d.pos++
		m := Dict{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.truncated("unterminated dict")
			}
			if d.b[d.pos] == rcTerm {
				d.pos++
				return m, nil
			}
			kv, err := d.rpair(depth)
			if err != nil {
				return nil, err
			}
			m = append(m, kv)
		}
	}
	return nil, d.errf(ErrSyntax, "unknown typecode 0x%02x", c)
}

func (d *decoder) rpair(depth int) (KV, error) {
	kpos := d.pos
	k, err := d.rdecode(depth + 1)
	if err != nil {
		return KV{}, err
	}
	if _, isDict := k.(Dict); isDict {
		d.pos = kpos
		return KV{}, d.errf(ErrSyntax, "unhashable dict key (dict)")
	}
	v, err := d.rdecode(depth + 1)
	if err != nil {
		return KV{}, err
	}
	return KV{k, v}, nil
}
