// Package xprawire is the xpra wire codec: the 8-byte record header, the frame
// reader and writer (raw chunks included), the three packet encoders (xpra
// bencode, python-rencode 1.0.6 and rencodeplus), the zlib, lz4 and brotli
// compressors, and typedict-style capability lookups.
//
// It is a pure codec. It must not open sockets, start goroutines, log, or know
// anything about authentication, routing or sessions; it imports only the
// standard library and the compression libraries. It never panics on input:
// every malformed input yields an error that wraps one of the sentinel errors
// below and names what was wrong.
//
// Value model. Decoded values are int64 (or *big.Int beyond the int64 range),
// bool, nil (None), float64, float32 (rencode typecode 0x42), string (str),
// []byte (bytes), []any (list or tuple) and Dict (an insertion-ordered dict
// whose keys may be of any decoded type). rencode and bencode decode every
// string to []byte, as python does; rencodeplus keeps str (string) and bytes
// ([]byte) apart.
//
// Known, deliberate differences from the python implementations (everything
// else is byte-identical, checked against python-rencode 1.0.6 and xpra
// 3.1.3's bencode by the differential test):
//   - python-rencode 1.0.6 byte-swaps float32 values through a float
//     variable, so a value whose swapped bits form a signalling NaN gets its
//     quiet bit set (bit 14 of the value changes). We write the correct IEEE
//     bytes; python decodes them correctly.
//   - rencode 1.0.6 decodes unknown typecodes as None; we return ErrSyntax.
//   - Duplicate dict keys are kept in order (python keeps the last value);
//     Dict.Get returns the first.
//   - Unmarshal requires the whole input to be consumed; python's
//     rencode.loads ignores trailing bytes (xpra's bencode path checks).
package xprawire
