package xprawire

import (
	"bufio"
	"bytes"
	"testing"
)

// TestLargeBufferKeptWhileLargeRecordsCome: records of mixed sizes (a
// large one, then smaller ones, then a large one again) reuse one payload
// buffer instead of allocating (and clearing) a large one per large
// record; Release still drops it.
func TestLargeBufferKeptWhileLargeRecordsCome(t *testing.T) {
	var in bytes.Buffer
	fw := NewFrameWriter(&in)
	sizes := []int{4 << 20, 1000, 20000, 3 << 20, 500, 2 << 20}
	for _, n := range sizes {
		if err := fw.WriteFrame(Header{Flags: FlagRencode}, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	fr := NewFrameReader(bufio.NewReader(&in))
	fr.SetMaxSize(16 << 20)
	var first *byte
	for i, n := range sizes {
		_, p, err := fr.Next()
		if err != nil || len(p) != n {
			t.Fatalf("record %d: %d bytes, %v", i, len(p), err)
		}
		if i == 0 {
			first = &p[:1][0]
		} else if &p[:1][0] != first {
			t.Fatalf("record %d (%d bytes) got a new buffer", i, n)
		}
	}
	fr.Release()
	if fr.buf != nil {
		t.Fatal("Release kept the buffer")
	}
}
