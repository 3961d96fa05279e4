package xprawire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Named bad inputs for the three decoders: each must fail with the named
// sentinel, never panic, and never allocate what a length merely declares.
func TestDecodeBadInputs(t *testing.T) {
	deepR := strings.Repeat("\xc1", 300) + "\x00"
	deepB := strings.Repeat("l", 300) + "i1e" + strings.Repeat("e", 300)
	for _, tc := range []struct {
		name string
		e    Encoding
		in   string
		err  error
	}{
		// bencode
		{"bencode empty", Bencode, "", ErrTruncated},
		{"bencode unterminated int", Bencode, "i12", ErrTruncated},
		{"bencode negative zero", Bencode, "i-0e", ErrSyntax},
		{"bencode leading zero int", Bencode, "i012e", ErrSyntax},
		{"bencode empty int", Bencode, "ie", ErrSyntax},
		{"bencode int garbage", Bencode, "i1x2e", ErrSyntax},
		{"bencode huge int", Bencode, "i" + strings.Repeat("9", 5000) + "e", ErrSyntax},
		{"bencode string leading zero", Bencode, "01:a", ErrSyntax},
		{"bencode huge declared string", Bencode, "999999999:abc", ErrTruncated},
		{"bencode 11-digit length", Bencode, "99999999999:a", ErrSyntax},
		{"bencode missing colon", Bencode, "3abc", ErrSyntax},
		{"bencode truncated string", Bencode, "5:abc", ErrTruncated},
		{"bencode truncated list", Bencode, "li1e", ErrTruncated},
		{"bencode truncated dict", Bencode, "d1:ai1e", ErrTruncated},
		{"bencode dict missing value", Bencode, "d1:ae", ErrSyntax},
		{"bencode list as dict key", Bencode, "dli1eei1ee", ErrSyntax},
		{"bencode u-string bad utf-8", Bencode, "u1:\xff", ErrSyntax},
		{"bencode unknown byte", Bencode, "x", ErrSyntax},
		{"bencode trailing bytes", Bencode, "i1ei2e", ErrSyntax},
		{"bencode too deep", Bencode, deepB, ErrSyntax},
		// rencode
		{"rencode empty", Rencode, "", ErrTruncated},
		{"rencode 0: (not in 1.0.6)", Rencode, "0:", ErrSyntax},
		{"rencode / strings (rencodeplus only)", Rencode, "1/a", ErrSyntax},
		{"rencode huge declared string", Rencode, "999999999:abc", ErrTruncated},
		{"rencode 11-digit length", Rencode, "12345678901:a", ErrSyntax},
		{"rencode truncated fixed string", Rencode, "\x85abc", ErrTruncated},
		{"rencode truncated int16", Rencode, "\x3f\x01", ErrTruncated},
		{"rencode truncated int64", Rencode, "\x41\x00\x00", ErrTruncated},
		{"rencode truncated float32", Rencode, "\x42\x00", ErrTruncated},
		{"rencode truncated float64", Rencode, "\x2c\x00", ErrTruncated},
		{"rencode truncated fixed list", Rencode, "\xc3\x01\x02", ErrTruncated},
		{"rencode unterminated list", Rencode, "\x3b\x01\x02", ErrTruncated},
		{"rencode truncated fixed dict", Rencode, "\x68\x81a\x01", ErrTruncated},
		{"rencode unterminated dict", Rencode, "\x3c\x81a\x01", ErrTruncated},
		{"rencode fixed list claiming 63 items", Rencode, "\xff", ErrTruncated},
		{"rencode unterminated big int", Rencode, "\x3d123", ErrTruncated},
		{"rencode big int too long", Rencode, "\x3d" + strings.Repeat("1", 80) + "\x7f", ErrSyntax},
		{"rencode big int garbage", Rencode, "\x3d1x\x7f", ErrSyntax},
		{"rencode stray terminator", Rencode, "\x7f", ErrSyntax},
		{"rencode unknown typecode 0x2d", Rencode, "\x2d", ErrSyntax},
		{"rencode unknown typecode 0x3a", Rencode, ":", ErrSyntax},
		{"rencode dict as dict key", Rencode, "\x67\x66\x01", ErrSyntax},
		{"rencode trailing bytes", Rencode, "\x01\x02", ErrSyntax},
		{"rencode too deep", Rencode, deepR, ErrSyntax},
		// rencodeplus
		{"rencodeplus invalid utf-8 str", RencodePlus, "\x81\xff", ErrSyntax},
		{"rencodeplus invalid utf-8 colon str", RencodePlus, "1:\xff", ErrSyntax},
		{"rencodeplus huge declared bytes", RencodePlus, "999999999/abc", ErrTruncated},
		{"rencodeplus bad separator", RencodePlus, "3-abc", ErrSyntax},
		{"rencodeplus truncated bytes", RencodePlus, "5/ab", ErrTruncated},
		{"rencodeplus truncated list", RencodePlus, "\xc2\x01", ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Unmarshal(tc.e, []byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("Unmarshal = %v, %v; want %v", v, err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.e.String()) {
				t.Fatalf("error %q does not name the encoding", err)
			}
		})
	}
	if _, err := Unmarshal(Encoding(9), []byte("x")); !errors.Is(err, ErrUnsupportedEncoding) {
		t.Fatal(err)
	}
	if _, err := Marshal(Encoding(0), 1); !errors.Is(err, ErrUnsupportedEncoding) {
		t.Fatal(err)
	}
}

// TestUnmarshalDoesNotAlias: decoded bytes survive the caller reusing its buffer.
func TestUnmarshalDoesNotAlias(t *testing.T) {
	in := []byte("\xc1\x83abc")
	v, err := Unmarshal(Rencode, in)
	if err != nil {
		t.Fatal(err)
	}
	copy(in, "\x00\x00\x00\x00\x00")
	if got := string(v.([]any)[0].([]byte)); got != "abc" {
		t.Fatalf("decoded value aliases the input: %q", got)
	}
}

// TestDecodeValueBudget: a packet of millions of tiny values is refused
// before it turns into gigabytes of Go values.
func TestDecodeValueBudget(t *testing.T) {
	n := MaxDecodedValues + 10
	for _, tc := range []struct {
		e  Encoding
		in []byte
	}{
		{Rencode, append(append([]byte{rcList}, bytes.Repeat([]byte{0xc0}, n)...), rcTerm)},
		{RencodePlus, append(append([]byte{rcList}, bytes.Repeat([]byte{0x66}, n)...), rcTerm)},
		{Bencode, append(append([]byte{'l'}, bytes.Repeat([]byte("le"), n)...), 'e')},
	} {
		if _, err := Unmarshal(tc.e, tc.in); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%v: err = %v, want ErrTooLarge", tc.e, err)
		}
	}
	// just under the budget decodes
	ok := append(append([]byte{rcList}, bytes.Repeat([]byte{0x01}, MaxDecodedValues-1)...), rcTerm)
	if _, err := Unmarshal(Rencode, ok); err != nil {
		t.Fatal(err)
	}
}

// The encoders write no dictionary key their own decoders (and python's)
// refuse as unhashable: a list or dict key toward bencode (lists decode to
// python lists), a dict key toward rencode (lists decode to tuples there).
// The bridge re-encodes what one peer sent for the other: before, a list
// key from a rencode peer went to a bencode peer, which could not parse it.
func TestEncodeUnhashableKeys(t *testing.T) {
	for _, tc := range []struct {
		e   Encoding
		key any
	}{
		{Bencode, []any{int64(1)}},
		{Bencode, Dict{{Key: "a", Value: int64(1)}}},
		{Rencode, Dict{{Key: "a", Value: int64(1)}}},
		{RencodePlus, Dict{{Key: "a", Value: int64(1)}}},
	} {
		v := []any{"x", Dict{{Key: tc.key, Value: int64(1)}}}
		b, err := Marshal(tc.e, v)
		if !errors.Is(err, ErrUnencodable) {
			_, derr := Unmarshal(tc.e, b)
			t.Errorf("%v key %s: encoded (%v), decodes: %v", tc.e, typeName(tc.key), err, derr)
		}
	}
	// a list key stays fine for rencode, which python reads as a tuple
	if b, err := Marshal(Rencode, []any{"x", Dict{{Key: []any{int64(1)}, Value: int64(1)}}}); err != nil {
		t.Error(err)
	} else if _, err := Unmarshal(Rencode, b); err != nil {
		t.Error(err)
	}
}
