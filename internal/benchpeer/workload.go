// Package benchpeer plays both ends of synthetic xpra sessions for load
// tests: a Server that answers the hello and streams draw, cursor,
// window-icon and ping packets with deterministic contents, and a client
// (Login, Session) that authenticates through a proxy's challenge and checks
// every byte it receives against what the server was bound to send, so a
// relay that corrupts, drops or reorders data is caught.
//
// It speaks only through the project's codec (internal/xprawire) and the
// auth package's response math. It must not start or manage processes,
// measure resources or print anything: the bench command does that. It only
// ever talks to the connections and listeners it is given.
package benchpeer

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strconv"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Mode is what the server does after the hello.
type Mode string

const (
	// ModeIdle: the server sends nothing on its own and answers pings.
	ModeIdle Mode = "idle"
	// ModeStream: the server streams draw packets (with cursor, icon and
	// ping packets mixed in) under a window of acknowledgements.
	ModeStream Mode = "stream"
)

// Sizes of the synthetic data.
const (
	// PoolSize is the size of the shared random byte pool that every
	// payload is a slice of.
	PoolSize = 8 << 20
	// MaxDrawSize is the largest pixel chunk a draw carries.
	MaxDrawSize = 4 << 20
	// SmallDrawMax is the largest draw of a Small workload.
	SmallDrawMax = 2 << 10
	// CursorSize is the size of the raw cursor pixels (32x32 BGRA).
	CursorSize = 32 * 32 * 4
	// IconSize is the size of the window-icon data.
	IconSize = 8 << 10
	// CursorEvery, IconEvery and PingEvery say after which draws the
	// server also sends a cursor, a window-icon or a ping.
	CursorEvery = 16
	IconEvery   = 64
	PingEvery   = 50
)

// Capability keys the client uses to tell the server what to do. They
// pass through xpra's proxy and xpra-edge, which forward unknown caps.
const (
	capMode   = "bench.mode"
	capSeed   = "bench.seed"
	capDraws  = "bench.draws"
	capWindow = "bench.window"
	capSmall  = "bench.small"
)

// Workload is what one session asks of the server.
type Workload struct {
	Mode Mode
	// Seed selects the data; client and server derive every payload
	// from it.
	Seed uint64
	// Draws is how many draw packets to stream; 0 means until the
	// client goes away.
	Draws int
	// Window is how many draws may be unacknowledged; 0 means 32.
	Window int
	// Small limits every draw to SmallDrawMax bytes, so that a stream is
	// bound by packets per second rather than bytes.
	Small bool
}

func (w Workload) window() int {
	if w.Window <= 0 {
		return 32
	}
	return w.Window
}

func (w Workload) setCaps(d *xprawire.Dict) {
	d.Set(capMode, string(w.Mode))
	d.Set(capSeed, strconv.FormatUint(w.Seed, 10))
	d.Set(capDraws, int64(w.Draws))
	d.Set(capWindow, int64(w.window()))
	d.Set(capSmall, w.Small)
}

// ErrBadWorkload is returned by the server for a hello whose bench caps it
// cannot use.
var ErrBadWorkload = errors.New("benchpeer: bad workload caps")

func workloadFromCaps(c xprawire.Caps) (Workload, error) {
	var w Workload
	m, ok := c.Str(capMode)
	if !ok {
		return w, ErrBadWorkload
	}
	w.Mode = Mode(m)
	if w.Mode != ModeIdle && w.Mode != ModeStream {
		return w, ErrBadWorkload
	}
	if s, ok := c.Str(capSeed); ok {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return w, ErrBadWorkload
		}
		w.Seed = v
	}
	if n, ok := c.Int(capDraws); ok && n >= 0 && n < 1<<40 {
		w.Draws = int(n)
	}
	if n, ok := c.Int(capWindow); ok && n > 0 && n <= 4096 {
		w.Window = int(n)
	}
	w.Small = c.Bool(capSmall, false)
	return w, nil
}

// Pool is the shared read-only byte pool every payload is cut from.
type Pool struct{ b []byte }

// NewPool makes the pool from a fixed seed, so every process that builds it
// gets the same bytes.
func NewPool() *Pool {
	var key [32]byte
	copy(key[:], "xpra-edge-bench data pool v1....")
	r := rand.NewChaCha8(key)
	b := make([]byte, PoolSize)
	_, _ = r.Read(b)
	return &Pool{b: b}
}

// mix is splitmix64 of a and b: a cheap stateless hash for the schedule.
func mix(a, b uint64) uint64 {
	z := a ^ (b+0x9e3779b97f4a7c15)*0xbf58476d1ce4e5b9
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// kinds of payload, part of the hash so they differ.
const (
	kindDraw uint64 = iota + 1
	kindCursor
	kindIcon
)

// DrawSize is the size of draw i's pixels: 60% from 256 bytes to 16 KiB,
// 30% from 16 KiB to 512 KiB, 10% from 1 MiB to 4 MiB.
func DrawSize(seed uint64, i int) int {
	return drawSize(seed, i, false)
}

// Size is the size of draw i of this workload.
func (w Workload) Size(i int) int { return drawSize(w.Seed, i, w.Small) }

func drawSize(seed uint64, i int, small bool) int {
	h := mix(seed^kindDraw<<56, uint64(i))
	if small {
		return 64 + int(h%(SmallDrawMax-64))
	}
	r := h % 100
	h >>= 8
	switch {
	case r < 60:
		return 256 + int(h%(16<<10-256))
	case r < 90:
		return 16<<10 + int(h%(496<<10))
	default:
		return 1<<20 + int(h%(3<<20))
	}
}

// slice returns the payload of the given kind and index.
func (p *Pool) slice(seed, kind uint64, i, size int) []byte {
	h := mix(seed^kind<<56^0x5bd1e995, uint64(i))
	off := int(h % uint64(len(p.b)-size))
	return p.b[off : off+size]
}

// Draw returns draw i's pixels.
func (p *Pool) Draw(seed uint64, i int) []byte {
	return p.slice(seed, kindDraw, i, DrawSize(seed, i))
}

// DrawOf returns draw i's pixels for workload w.
func (p *Pool) DrawOf(w Workload, i int) []byte {
	return p.slice(w.Seed, kindDraw, i, w.Size(i))
}

// Cursor returns cursor n's pixels.
func (p *Pool) Cursor(seed uint64, n int) []byte {
	return p.slice(seed, kindCursor, n, CursorSize)
}

// Icon returns icon n's data.
func (p *Pool) Icon(seed uint64, n int) []byte {
	return p.slice(seed, kindIcon, n, IconSize)
}

// tag is a 16-byte value put in draw options so the client can check that
// the main packet belongs with its chunk.
func tag(seed uint64, i int) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, mix(seed, uint64(i)))
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	return b
}
