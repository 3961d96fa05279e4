package xprawire

import (
	"encoding/binary"
	"fmt"
)

// Record layout (struct "!cBBBL", big-endian):
//
//	off size field
//	0   1    magic 'P' (0x50)
//	1   1    protocol flags (Flags)
//	2   1    compression byte (Level): low nibble level, high bits algorithm
//	3   1    chunk index: 0 main packet, 1..15 raw chunk substituted at that index
//	4   4    payload size, uint32 big-endian, header excluded
const (
	Magic                = 'P'
	HeaderSize           = 8
	DefaultMaxPacketSize = 16 << 20  // before and after the hello unless raised
	AbsMaxPacketSize     = 256 << 20 // no record payload is ever larger
	MaxDecompressedSize  = 256 << 20 // no decompressed payload is ever larger
	MaxPendingChunks     = 3         // raw chunks waiting for their main packet
	MaxChunkIndex        = 15        // highest raw chunk index (6.x rejects >= 16)
	MinCompressSize      = 378       // main packets up to this size go uncompressed
)

// Flags is the protocol flags byte of a record header.
type Flags uint8

// Protocol flag bits.
const (
	FlagRencode     Flags = 0x01 // payload is python-rencode 1.0.6
	FlagCipher      Flags = 0x02 // payload is AES-encrypted (not supported)
	FlagYAML        Flags = 0x04 // payload is yaml (not supported)
	FlagFlush       Flags = 0x08 // 5.x/6.x: nothing more queued; send only to peers that advertised "flush"
	FlagRencodePlus Flags = 0x10 // payload is rencodeplus (4.3+, 6.x)
)

// Header is a decoded record header.
type Header struct {
	Flags Flags
	Level Level // compression byte
	Index uint8 // 0: main packet; >0: raw chunk
	Size  uint32
}

// ParseHeader decodes the first HeaderSize bytes of b. It checks the length
// and the magic byte only; size limits are the reader's job.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header needs %d bytes, have %d", ErrTruncated, HeaderSize, len(b))
	}
	if b[0] != Magic {
		return Header{}, fmt.Errorf("%w: first byte 0x%02x (header %x)", ErrBadMagic, b[0], b[:HeaderSize])
	}
	return Header{Flags: Flags(b[1]), Level: Level(b[2]), Index: b[3], Size: binary.BigEndian.Uint32(b[4:8])}, nil
}

// Put writes the header into b[:HeaderSize]. b must have room for HeaderSize bytes.
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	b[0] = Magic
	b[1] = byte(h.Flags)
	b[2] = byte(h.Level)
	b[3] = h.Index
	binary.BigEndian.PutUint32(b[4:8], h.Size)
}

// Encoding is a packet encoder.
type Encoding uint8

// Packet encoders.
const (
	Bencode     Encoding = iota + 1 // xpra bencode, flag 0x00
	Rencode                         // python-rencode 1.0.6, flag 0x01
	RencodePlus                     // rencodeplus, flag 0x10
)

// String returns the name xpra uses in its caps.
func (e Encoding) String() string {
	switch e {
	case Bencode:
		return "bencode"
	case Rencode:
		return "rencode"
	case RencodePlus:
		return "rencodeplus"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// Flag returns the protocol flag bits that announce e.
func (e Encoding) Flag() Flags {
	switch e {
	case Rencode:
		return FlagRencode
	case RencodePlus:
		return FlagRencodePlus
	}
	return 0
}

// EncodingForFlags returns the encoder of a record, with 6.x precedence:
// rencodeplus, rencode, yaml (unsupported), else bencode. The cipher flag is
// an error (ErrCipher).
func EncodingForFlags(f Flags) (Encoding, error) {
	switch {
	case f&FlagCipher != 0:
		return 0, fmt.Errorf("%w: flags 0x%02x", ErrCipher, uint8(f))
	case f&FlagRencodePlus != 0:
		return RencodePlus, nil
	case f&FlagRencode != 0:
		return Rencode, nil
	case f&FlagYAML != 0:
		return 0, fmt.Errorf("%w: yaml (flags 0x%02x)", ErrUnsupportedEncoding, uint8(f))
	}
	return Bencode, nil
}
