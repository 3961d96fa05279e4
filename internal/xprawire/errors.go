package xprawire

import "errors"

// Sentinel errors. Functions wrap them with detail (use errors.Is).
var (
	ErrBadMagic               = errors.New("xprawire: bad header magic")
	ErrTooLarge               = errors.New("xprawire: too large")
	ErrTooManyChunks          = errors.New("xprawire: too many pending raw chunks")
	ErrChunkIndex             = errors.New("xprawire: invalid chunk index")
	ErrDuplicateChunk         = errors.New("xprawire: duplicate chunk index")
	ErrUnsupportedEncoding    = errors.New("xprawire: unsupported packet encoding")
	ErrUnsupportedCompression = errors.New("xprawire: unsupported compression")
	ErrCipher                 = errors.New("xprawire: encrypted records are not supported")
	ErrTruncated              = errors.New("xprawire: truncated input")
	ErrSyntax                 = errors.New("xprawire: syntax error")
	// ErrUnencodable is returned by the encoders for values the format cannot carry
	// (None or floats in bencode, unknown Go types, nesting too deep).
	ErrUnencodable = errors.New("xprawire: value cannot be encoded")
)

// DisconnectTextError is returned by FrameReader.Next when, before any valid
// header, the peer sent a plain-text "disconnect: <reason>\n" line (what xpra
// sends when it rejects a first packet before it knows our encoder). Text is
// the line with the leading "disconnect" word, the separator and the line end
// removed.
type DisconnectTextError struct{ Text string }

func (e *DisconnectTextError) Error() string { return "peer sent a text disconnect: " + e.Text }
