package xprawire

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
)

// maxDepth bounds container nesting on decode and encode (python's own
// recursion limit is 1000; xpra packets nest a handful of levels).
const maxDepth = 256

// MaxDecodedValues bounds how many values one Unmarshal or DecodeMain may
// produce. Each encoded byte can become a 16-40 byte Go value, so without a
// bound a 16 MiB packet of empty lists would cost hundreds of MiB; a real
// 3.1.3 client hello has about 5,000 values.
const MaxDecodedValues = 1 << 20

// Marshal encodes v with e.
//
// Accepted Go types: nil, bool, int, int8..int64, uint..uint64, *big.Int,
// big.Int, float32, float64, string, []byte, []any, []string, []int, Packet,
// Dict, *Dict, Caps, map[string]any (keys sorted), RawChunk with level 0 (as
// bytes), and by reflection any other slice, array, string-keyed map or
// pointer to those. bencode cannot carry None or floats (ErrUnencodable);
// rencode writes floats as float32 and strings and bytes identically;
// rencodeplus writes floats as float64 and bytes as "<len>/".
func Marshal(e Encoding, v any) ([]byte, error) {
	return AppendMarshal(nil, e, v)
}

// AppendMarshal appends the encoding of v to dst. On error dst is returned unchanged.
func AppendMarshal(dst []byte, e Encoding, v any) ([]byte, error) {
	var out []byte
	var err error
	switch e {
	case Bencode:
		out, err = bencodeAppend(dst, v, 0)
	case Rencode:
		out, err = rencodeAppend(dst, v, false, 0)
	case RencodePlus:
		out, err = rencodeAppend(dst, v, true, 0)
	default:
		return dst, fmt.Errorf("%w: %v", ErrUnsupportedEncoding, e)
	}
	if err != nil {
		return dst[:len(dst):len(dst)], err
	}
	return out, nil
}

// appendList encodes a top-level list (a packet) without boxing it in an interface.
func appendList(dst []byte, e Encoding, l []any) ([]byte, error) {
	start := len(dst)
	var err error
	switch e {
	case Bencode:
		dst = append(dst, 'l')
		for _, v := range l {
			if dst, err = bencodeAppend(dst, v, 1); err != nil {
				return dst[:start], err
			}
		}
		return append(dst, 'e'), nil
	case Rencode, RencodePlus:
		plus := e == RencodePlus
		if len(l) < rcListFixedCount {
			dst = append(dst, byte(rcListFixedStart+len(l)))
		} else {
			dst = append(dst, rcList)
		}
		for _, v := range l {
			if dst, err = rencodeAppend(dst, v, plus, 1); err != nil {
				return dst[:start], err
			}
		}
		if len(l) >= rcListFixedCount {
			dst = append(dst, rcTerm)
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: %v", ErrUnsupportedEncoding, e)
}

// Unmarshal decodes exactly one value from b with e; trailing bytes are an
// error (ErrSyntax), so is nesting deeper than 256; more than
// MaxDecodedValues values is ErrTooLarge. The returned value does not alias b.
func Unmarshal(e Encoding, b []byte) (any, error) {
	return unmarshalOwned(e, bytes.Clone(b))
}

// unmarshalOwned decodes b; decoded []byte values alias b, which the caller
// must not reuse.
func unmarshalOwned(e Encoding, b []byte) (any, error) {
	var d decoder
	d.b = b
	var v any
	var err error
	switch e {
	case Bencode:
		v, err = d.bdecode(0)
	case Rencode:
		v, err = d.rdecode(0)
	case RencodePlus:
		d.plus = true
		v, err = d.rdecode(0)
	default:
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedEncoding, e)
	}
	if err != nil {
		return nil, fmt.Errorf("%v: %w", e, err)
	}
	if d.pos != len(b) {
		return nil, fmt.Errorf("%v: %w: %d trailing bytes after the value", e, ErrSyntax, len(b)-d.pos)
	}
	return v, nil
}

type decoder struct {
	b      []byte
	pos    int
	plus   bool // rencodeplus rules
	values int  // decoded so far, bounded by MaxDecodedValues
}

// count charges one decoded value against the budget.
func (d *decoder) count() error {
	d.values++
	if d.values > MaxDecodedValues {
		return d.errf(ErrTooLarge, "more than %d values", MaxDecodedValues)
	}
	return nil
}

func (d *decoder) errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", sentinel, fmt.Sprintf(format, args...), d.pos)
}

func (d *decoder) truncated(what string) error {
	return d.errf(ErrTruncated, "%s", what)
}

// intValue normalises the Go integer kinds the encoders accept.
// It returns (i, nil, true) for values in the int64 range, (0, big, true) beyond.
func intValue(v any) (int64, *big.Int, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), nil, true
	case int64:
		return x, nil, true
	case int32:
		return int64(x), nil, true
	case int16:
		return int64(x), nil, true
	case int8:
		return int64(x), nil, true
	case uint8:
		return int64(x), nil, true
	case uint16:
		return int64(x), nil, true
	case uint32:
		return int64(x), nil, true
	case uint:
		return uintValue(uint64(x))
	case uint64:
		return uintValue(x)
	case uintptr:
		return uintValue(uint64(x))
	case *big.Int:
		if x == nil {
			return 0, nil, false
		}
		if x.IsInt64() {
			return x.Int64(), nil, true
		}
		return 0, x, true
	case big.Int:
		return intValue(&x)
	}
	return 0, nil, false
}

func uintValue(u uint64) (int64, *big.Int, bool) {
	if u <= math.MaxInt64 {
		return int64(u), nil, true
	}
	return 0, new(big.Int).SetUint64(u), true
}

// normalize maps the less common accepted types onto the core ones; ok is
// false for types that cannot be encoded.
func normalize(v any) (any, bool) {
	switch x := v.(type) {
	case Caps:
		return x.Dict, true
	case *Dict:
		if x == nil {
			return nil, true
		}
		return *x, true
	case Packet:
		return []any(x), true
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = s
		}
		return l, true
	case []int:
		l := make([]any, len(x))
		for i, n := range x {
			l[i] = n
		}
		return l, true
	case []int64:
		l := make([]any, len(x))
		for i, n := range x {
			l[i] = n
		}
		return l, true
	case map[string]any:
		return sortedDict(x), true
	case map[string]string:
		d := make(Dict, 0, len(x))
		for _, k := range slices.Sorted(mapsKeys(x)) {
			d = append(d, KV{k, x[k]})
		}
		return d, true
	case RawChunk:
		if x.Level != 0 {
			return nil, false
		}
		return x.Data, true
	}
	// reflection fallback for named and composite types
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil, true
	}
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, true
		}
		return rv.Elem().Interface(), true
	case reflect.Bool:
		return rv.Bool(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint(), true
	case reflect.Float32:
		return float32(rv.Float()), true
	case reflect.Float64:
		return rv.Float(), true
	case reflect.String:
		return rv.String(), true
	case reflect.Slice, reflect.Array:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return b, true
		}
		l := make([]any, rv.Len())
		for i := range l {
			l[i] = rv.Index(i).Interface()
		}
		return l, true
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, false
		}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		d := make(Dict, 0, len(keys))
		for _, k := range keys {
			d = append(d, KV{k, rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key())).Interface()})
		}
		return d, true
	}
	return nil, false
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func sortedDict(m map[string]any) Dict {
	d := make(Dict, 0, len(m))
	for _, k := range slices.Sorted(mapsKeys(m)) {
		d = append(d, KV{k, m[k]})
	}
	return d
}

func unencodable(format string, v any) error {
	s := fmt.Sprintf("%T", v)
	return fmt.Errorf("%w: "+format, ErrUnencodable, s)
}

// typeName describes a value for error messages without printing its content.
func typeName(v any) string {
	t := fmt.Sprintf("%T", v)
	return strings.TrimPrefix(t, "xprawire.")
}
