package xprawire

import (
	"math/big"
	"strconv"
	"unicode/utf8"
)

// xpra bencode (3.1.3 cython_bencode): i<int>e, <len>:<bytes>, l...e,
// d...e with insertion-ordered keys of any type. bools are written as i1e/i0e,
// str as its UTF-8 bytes; None and floats cannot be written. The decoder also
// reads u<len>:<utf8> as str; every other string decodes to []byte.

// maxIntDigits bounds decimal integers (python 3.11's own int/str limit is 4300 digits).
const maxIntDigits = 4300

func bencodeAppend(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, unencodable("nesting deeper than 256 at %s", v)
	}
	switch x := v.(type) {
	case string:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case []byte:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case bool:
		if x {
			return append(dst, "i1e"...), nil
		}
		return append(dst, "i0e"...), nil
	case int64:
		dst = append(dst, 'i')
		dst = strconv.AppendInt(dst, x, 10)
		return append(dst, 'e'), nil
	case int:
		dst = append(dst, 'i')
		dst = strconv.AppendInt(dst, int64(x), 10)
		return append(dst, 'e'), nil
	case []any:
		dst = append(dst, 'l')
		var err error
		for _, e := range x {
			if dst, err = bencodeAppend(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, 'e'), nil
	case Dict:
		dst = append(dst, 'd')
		var err error
		for _, kv := range x {
			switch kv.Key.(type) {
			case []any, Dict: // bencode lists decode to python lists
				return dst, unencodable("unhashable dict key (%s)", kv.Key)
			}
			if dst, err = bencodeAppend(dst, kv.Key, depth+1); err != nil {
				return dst, err
			}
			if dst, err = bencodeAppend(dst, kv.Value, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, 'e'), nil
	case nil:
		return dst, unencodable("bencode cannot encode None (%s)", v)
	case float32, float64:
		return dst, unencodable("bencode cannot encode a float (%s)", v)
	}
	if i, b, ok := intValue(v); ok {
		dst = append(dst, 'i')
		if b != nil {
			dst = b.Append(dst, 10)
		} else {
			dst = strconv.AppendInt(dst, i, 10)
		}
		return append(dst, 'e'), nil
	}
	n, ok := normalize(v)
	if !ok {
		return dst, unencodable("bencode cannot encode type %s", v)
	}
	if n == nil {
		return dst, unencodable("bencode cannot encode None (%s)", v)
	}
	return bencodeAppend(dst, n, depth+1)
}

func (d *decoder) bdecode(depth int) (any, error) {
	if err := d.enter(depth); err != nil {
		return nil, err
	}
	c := d.b[d.pos]
	switch {
	case c == 'i':
		d.pos++
		return d.bint()
	case c >= '0' && c <= '9':
		s, err := d.bstring()
		if err != nil {
			return nil, err
		}
		return s, nil
	case c == 'u':
		d.pos++
		start := d.pos
		s, err := d.bstring()
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(s) {
			d.pos = start
			return nil, d.errf(ErrSyntax, "invalid utf-8 in a u-string")
		}
		return string(s), nil
	case c == 'l':
		d.pos++
		l := []any{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.truncated("unterminated list")
			}
			if d.b[d.pos] == 'e' {
				d.pos++
				return l, nil
			}
			v, err := d.bdecode(depth + 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
	case c == 'd':
		d.pos++
		m := Dict{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.truncated("unterminated dict")
			}
			if d.b[d.pos] == 'e' {
				d.pos++
				return m, nil
			}
			kpos := d.pos
			k, err := d.bdecode(depth + 1)
			if err != nil {
				return nil, err
			}
			switch k.(type) {
			case []any, Dict:
				d.pos = kpos
				return nil, d.errf(ErrSyntax, "unhashable dict key (%s)", typeName(k))
			}
			v, err := d.bdecode(depth + 1)
			if err != nil {
				return nil, err
			}
			m = append(m, KV{k, v})
		}
	}
	return nil, d.errf(ErrSyntax, "unexpected byte 0x%02x", c)
}

// bint parses <digits>e after the 'i'. "-0" and leading zeros are rejected.
func (d *decoder) bint() (any, error) {
	start := d.pos
	end := -1
	for i := start; i < len(d.b) && i-start <= maxIntDigits+1; i++ {
		if d.b[i] == 'e' {
			end = i
			break
		}
	}
	if end < 0 {
		if len(d.b)-start > maxIntDigits+1 {
			return nil, d.errf(ErrSyntax, "integer longer than %d digits", maxIntDigits)
		}
		return nil, d.truncated("unterminated integer")
	}
	s := d.b[start:end]
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || !allDigits(digits) {
		return nil, d.errf(ErrSyntax, "invalid integer %q", clip(s))
	}
	if digits[0] == '0' && (len(digits) > 1 || len(s) != len(digits)) {
		return nil, d.errf(ErrSyntax, "integer with a leading zero or negative zero %q", clip(s))
	}
	d.pos = end + 1
	return parseDecimal(s), nil
}

// bstring parses <len>:<bytes>; a length with a leading zero is rejected.
func (d *decoder) bstring() ([]byte, error) {
	n, _, err := d.decimalLength('0', true)
	if err != nil {
		return nil, err
	}
	s := d.b[d.pos : d.pos+n]
	d.pos += n
	return s, nil
}

// decimalLength parses "<digits><sep>" at d.pos, where the first digit is >=
// minFirst and sep is ':' (or '/' with rencodeplus rules), checks that that
// many bytes remain, and leaves d.pos after the separator. noLeadingZero
// rejects lengths like "01:" (bencode).
func (d *decoder) decimalLength(minFirst byte, noLeadingZero bool) (int, byte, error) {
	start := d.pos
	i := start
	n := 0
	for ; i < len(d.b) && d.b[i] >= '0' && d.b[i] <= '9'; i++ {
		if i-start >= 10 {
			return 0, 0, d.errf(ErrSyntax, "string length with more than 10 digits")
		}
		n = n*10 + int(d.b[i]-'0')
	}
	if i == start || d.b[start] < minFirst {
		return 0, 0, d.errf(ErrSyntax, "invalid string length")
	}
	if i >= len(d.b) {
		return 0, 0, d.truncated("string length without separator")
	}
	sep := d.b[i]
	if sep != ':' && !(d.plus && sep == '/') {
		return 0, 0, d.errf(ErrSyntax, "string length followed by 0x%02x", sep)
	}
	if noLeadingZero && d.b[start] == '0' && i != start+1 {
		return 0, 0, d.errf(ErrSyntax, "string length with a leading zero")
	}
	if n > len(d.b)-i-1 {
		return 0, 0, d.errf(ErrTruncated, "string of %d bytes declared, %d remain", n, len(d.b)-i-1)
	}
	d.pos = i + 1
	return n, sep, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseDecimal converts a validated [-]digits string to int64 or *big.Int.
func parseDecimal(s []byte) any {
	if len(s) <= 18 {
		var n int64
		neg := s[0] == '-'
		for _, c := range s[btoi(neg):] {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n
	}
	if n, err := strconv.ParseInt(string(s), 10, 64); err == nil {
		return n
	}
	b, _ := new(big.Int).SetString(string(s), 10)
	return b
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// clip shortens input echoed into error messages.
func clip(b []byte) string {
	if len(b) > 24 {
		return string(b[:24]) + "..."
	}
	return string(b)
}
