package edge

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Decompression bombs, built without compressing their whole output (the
// tests run under -race, where that takes seconds).

// zlibBomb inflates to mib MiB of zeros: one flushed (byte-aligned,
// non-final) deflate block of 1 MiB of zeros, repeated (each copy only
// refers one byte back), a final empty block and the adler32 of the zeros.
func zlibBomb(t testing.TB, mib int) []byte {
	t.Helper()
	var blk bytes.Buffer
	fw, err := flate.NewWriter(&blk, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(make([]byte, 1<<20))
	_ = fw.Flush()
	out := []byte{0x78, 0xda}
	for range mib {
		out = append(out, blk.Bytes()...)
	}
	out = append(out, 0x03, 0x00) // final fixed-Huffman block, end of block only
	n := uint32(mib) << 20
	return binary.BigEndian.AppendUint32(out, (n%65521)<<16|1)
}

// lz4Bomb is an lz4 block (with xpra's 4-byte size prefix) of about size
// bytes that expands ~255 times: one zero literal, one long match at
// offset 1, five trailing zero literals.
func lz4Bomb(size int) []byte {
	m := size - 15
	out := binary.LittleEndian.AppendUint32(nil, 0)
	out = append(out, 0x1f, 0x00, 0x01, 0x00)
	for range m {
		out = append(out, 0xff)
	}
	out = append(out, 0x00, 0x50, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(out, uint32(1+15+4+255*m+5))
	return out
}

// brotliBomb inflates to 256 MiB of zeros: andybalholm/brotli at quality
// 9, lgwin 24, over 256 MiB of zeros (203 bytes).
var brotliBomb = func() []byte {
	b, err := hex.DecodeString("cfffff7f002400e2b14072effff9ffff0f8004401c1680eefd3fffffff01900088c302d0bdffe7ffff3f001200715800baf7fffcffff074002200e0b40f7fe9fffffff004800c46101e8defff3ffff1f000980382c00ddfb7ffeffff032001108705a07bffcfffff7f002400e2b00074effff9ffff0f8004401c1680eefd3fffffff01900088c302d0bdffe7ffff3f001200715800baf7fffcffff074002200e0b40f7fe9fffffff004800c46101e8defff3ffff1f000980382c00ddfb7ffeffff032001108705a07bff3f")
	if err != nil {
		panic(err)
	}
	return b
}()

func TestBombsInflate(t *testing.T) {
	// The bombs are what they claim (so the test below tests something):
	// a small zlib one inflates fully, the lz4 one declares its size and
	// the brotli one inflates past 32 MiB (inflating 256 MiB takes a
	// minute under -race).
	if out, err := xprawire.Decompress(nil, xprawire.MakeLevel(xprawire.Zlib, 9), zlibBomb(t, 8), 0); err != nil || len(out) != 8<<20 || bytes.IndexByte(out, 1) >= 0 {
		t.Fatalf("zlib bomb: %d bytes, %v", len(out), err)
	}
	if b := lz4Bomb(255 << 10); binary.LittleEndian.Uint32(b) < 60<<20 {
		t.Fatalf("lz4 bomb declares %d bytes", binary.LittleEndian.Uint32(b))
	}
	if out, err := xprawire.Decompress(nil, xprawire.MakeLevel(xprawire.LZ4, 1), lz4Bomb(64<<10), 0); err != nil || len(out) < 15<<20 {
		t.Fatalf("lz4 bomb: %d bytes, %v", len(out), err)
	}
	if _, err := xprawire.Decompress(nil, xprawire.MakeLevel(xprawire.Brotli, 9), brotliBomb, 32<<20); !errors.Is(err, xprawire.ErrTooLarge) {
		t.Fatalf("brotli bomb: %v, want it too large for 32 MiB", err)
	}
}

// heapSampler records the largest live heap seen while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func heapNow() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.peak.Store(heapNow())
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
				if v := heapNow(); v > h.peak.Load() {
					h.peak.Store(v)
				}
			}
		}
	}()
	return h
}

func (h *heapSampler) done() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load()
}

// Issue 11, item 1: zlib, lz4 and brotli bombs sent before login, as raw
// chunks (indexes 1-3, no hello) and as compressed main packets, over
// several connections held open, cost the proxy no more than a few MiB
// each. Before the fix, each raw chunk was inflated (up to 256 MiB) and
// held until the login timeout.
func TestDecompressionBombsBeforeLogin(t *testing.T) {
	addr, _ := miniProxy(t, tomlAuth(t, auth.User{Name: "u", Password: "p"}), Limits{LoginTimeout: 30 * time.Second})
	bombs := []struct {
		name  string
		level xprawire.Level
		data  []byte
	}{
		{"zlib", xprawire.MakeLevel(xprawire.Zlib, 9), zlibBomb(t, 250)},
		{"lz4", xprawire.MakeLevel(xprawire.LZ4, 1), lz4Bomb(250 << 10)},
		{"brotli", xprawire.MakeLevel(xprawire.Brotli, 9), brotliBomb},
	}
	const perBomb = 2 // connections per bomb and kind
	runtime.GC()
	base := heapNow()
	sampler := startHeapSampler()
	var conns []net.Conn
	for _, b := range bombs {
		for _, asChunks := range []bool{true, false} {
			for range perBomb {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns = append(conns, c)
				fw := xprawire.NewFrameWriter(c)
				var frames []xprawire.Frame
				if asChunks {
					for i := 1; i <= xprawire.MaxPendingChunks; i++ {
						frames = append(frames, xprawire.Frame{Header: xprawire.Header{Flags: xprawire.FlagRencode, Level: b.level, Index: uint8(i)}, Payload: b.data})
					}
				} else {
					frames = append(frames, xprawire.Frame{Header: xprawire.Header{Flags: xprawire.FlagRencode, Level: b.level}, Payload: b.data})
				}
				_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if err := fw.WriteFrames(frames); err != nil {
					t.Logf("%s: write: %v (the proxy may hang up first)", b.name, err)
				}
			}
		}
	}
	// Give the proxy time to inflate what it would.
	time.Sleep(3 * time.Second)
	runtime.GC()
	runtime.GC() // and the pools' victim caches
	held := heapNow()
	peak := sampler.done()
	n := uint64(len(conns))
	grow := func(v uint64) uint64 {
		if v < base {
			return 0
		}
		return v - base
	}
	t.Logf("%d connections: live heap %d MiB before, peak %+d MiB, held %+d MiB (%.2f MiB per connection)",
		n, base>>20, grow(peak)>>20, grow(held)>>20, float64(grow(held))/float64(n)/(1<<20))
	const perConn = 4 << 20
	if grow(held) > n*perConn/2 {
		t.Errorf("the proxy holds %d MiB after %d bombed connections, more than %d MiB each", grow(held)>>20, n, perConn>>21)
	}
	if grow(peak) > n*perConn {
		t.Errorf("the proxy's heap peaked %d MiB above its start during %d bombed connections, more than %d MiB each", grow(peak)>>20, n, perConn>>20)
	}
}

// A client may send pings before its hello; one of nearly the hello limit,
// then silence, must not leave its payload buffer held until the login
// timeout (1 MiB each, 1 GiB with 1024 unauthenticated connections).
func TestPreLoginPingBufferReleased(t *testing.T) {
	addr, srv := miniProxy(t, tomlAuth(t, auth.User{Name: "u", Password: "p"}), Limits{LoginTimeout: 30 * time.Second, MaxUnauthenticatedPerIP: 100})
	enc := xprawire.NewPacketWriter(nil, xprawire.Rencode)
	frames, err := enc.EncodePacket(xprawire.Packet{"ping", bytes.Repeat([]byte{'x'}, 900<<10)})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base := heapNow()
	const n = 40
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := xprawire.NewFrameWriter(c).WriteFrames(frames); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.unauth.Load() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	runtime.GC()
	runtime.GC()
	held := heapNow()
	var grow uint64
	if held > base {
		grow = held - base
	}
	t.Logf("%d connections idle after a 900 KiB ping: heap %+d KiB (%d KiB each)", n, grow>>10, grow/n>>10)
	if grow > n*(256<<10) {
		t.Errorf("%d idle connections after a 900 KiB ping hold %d MiB", n, grow>>20)
	}
}
