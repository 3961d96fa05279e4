package benchpeer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Errors a caller tells apart.
var (
	// ErrCorrupt: a payload, a sequence number or a packet's shape
	// differed from what the server was bound to send.
	ErrCorrupt = errors.New("benchpeer: corrupt data")
	// ErrRejected: the proxy or server sent a disconnect instead of a
	// hello.
	ErrRejected = errors.New("benchpeer: rejected")
	// ErrProtocol: an unexpected packet during login.
	ErrProtocol = errors.New("benchpeer: protocol error")
)

// Gen is the xpra generation the synthetic client imitates.
type Gen int

const (
	// Gen3 speaks like an xpra 3.1.3 client (the zero value): hello and
	// packets in rencode, bencode also offered, zlib and lz4 offered.
	Gen3 Gen = iota
	// Gen6 speaks like an xpra 6.x client: version 6.5.5, rencodeplus
	// only (every packet written and expected in it), lz4 and none as
	// compressors.
	Gen6
)

func (g Gen) String() string {
	if g == Gen6 {
		return "6.x"
	}
	return "3.1.3"
}

// LoginOptions say who logs in and what the session does.
type LoginOptions struct {
	// Gen is the client generation; the zero value is Gen3.
	Gen      Gen
	Username string
	Password string
	// AllowXOR permits an xor challenge (only over TLS or local sockets).
	AllowXOR bool
	Workload Workload
	// Timeout bounds the whole login; 0 means 30 s.
	Timeout time.Duration
}

// Session is the client side of one logged-in session.
type Session struct {
	c          net.Conn
	pr         *xprawire.PacketReader
	bw         *bufio.Writer
	pw         *xprawire.PacketWriter
	pool       *Pool
	w          Workload
	gen        Gen
	ServerCaps xprawire.Caps
	// Challenged reports whether the login answered a challenge.
	Challenged bool
}

// clientHello is the hello of the client generation. Gen3: rencode and
// bencode only, so that xpra 3.1.3's proxy can decode it. Gen6: rencodeplus
// only (xpra 6.x has no other encoder) and lz4/none (6.x has no zlib). Both
// ask for no compression.
func clientHello(o LoginOptions) xprawire.Dict {
	d := xprawire.Dict{}
	if o.Gen == Gen6 {
		d.Set("version", "6.5.5")
		d.Set("rencodeplus", true)
		d.Set("rencode", false)
		d.Set("bencode", false)
		d.Set("encoders", []any{"rencodeplus"})
		d.Set("compressors", []any{"lz4", "none"})
		d.Set("zlib", false)
		d.Set("lz4", true)
		d.Set("brotli", false)
	} else {
		d.Set("version", "3.1.3")
		d.Set("rencode", true)
		d.Set("bencode", true)
		d.Set("encoders", []any{"rencode", "bencode"})
		d.Set("compressors", []any{"zlib", "lz4"})
		d.Set("zlib", true)
		d.Set("lz4", true)
	}
	d.Set("lzo", false)
	d.Set("yaml", false)
	d.Set("compression_level", int64(0))
	d.Set("digest", []any{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac"})
	d.Set("salt-digest", []any{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224"})
	d.Set("client_type", "bench")
	d.Set("uuid", "fedcba9876543210fedcba9876543210fedcba98")
	d.Set("windows", true)
	d.Set("keyboard", false)
	d.Set("mouse", false)
	d.Set("share", false)
	d.Set("file-transfer", false)
	d.Set("encodings", []any{"jpeg", "png", "rgb32"})
	d.Set("encoding", "jpeg")
	if o.Username != "" {
		d.Set("username", o.Username)
	}
	o.Workload.setCaps(&d)
	return d
}

// Login sends the hello on c, answers one challenge with the password,
// and returns once the server's hello has arrived (through the proxy, that
// means the backend session is set up). On error c is left for the caller
// to close.
func Login(c net.Conn, pool *Pool, o LoginOptions) (*Session, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	s := &Session{c: c, pool: pool, w: o.Workload, gen: o.Gen}
	s.pr = xprawire.NewPacketReader(bufio.NewReaderSize(c, 256<<10))
	s.pr.Frames.SetMaxSize(64 << 20)
	s.bw = bufio.NewWriterSize(c, 16<<10)
	enc := xprawire.Rencode
	if o.Gen == Gen6 {
		enc = xprawire.RencodePlus
	}
	s.pw = xprawire.NewPacketWriter(xprawire.NewFrameWriter(s.bw), enc)
	deadline := time.Now().Add(timeout)
	_ = c.SetDeadline(deadline)
	defer func() { _ = c.SetDeadline(time.Time{}) }()

	hello := clientHello(o)
	if o.Password != "" {
		hello.Set("challenge", true)
	}
	if err := s.send(xprawire.Packet{"hello", hello}); err != nil {
		return nil, err
	}
	for {
		p, err := s.read()
		if err != nil {
			return nil, fmt.Errorf("benchpeer: login: %w", err)
		}
		switch p.Type() {
		case "hello":
			d, _ := p[1].(xprawire.Dict)
			s.ServerCaps = xprawire.Caps{Dict: d}
			return s, nil
		case "challenge":
			if o.Password == "" || s.Challenged {
				return nil, fmt.Errorf("%w: unexpected challenge", ErrProtocol)
			}
			s.Challenged = true
			ch, err := xpraclient.ParseChallenge(p)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
			}
			resp, salt, err := auth.Respond([]byte(o.Password), ch, o.AllowXOR)
			if err != nil {
				return nil, fmt.Errorf("benchpeer: challenge: %w", err)
			}
			hello.Set("challenge_response", resp)
			hello.Set("challenge_client_salt", salt)
			if o.Gen == Gen6 {
				// a 6.x server answers a response hello that still
				// asks for a challenge with another (fake) challenge
				hello.Delete("challenge")
			}
			if err := s.send(xprawire.Packet{"hello", hello}); err != nil {
				return nil, err
			}
		case "disconnect":
			var rs []string
			for _, x := range p[1:] {
				rs = append(rs, string(asBytes(x)))
			}
			return nil, fmt.Errorf("%w: %q", ErrRejected, rs)
		case "ping":
			if err := s.send(pingEcho(p)); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: %q before the hello", ErrProtocol, p.Type())
		}
	}
}

// Close closes the connection.
func (s *Session) Close() error { return s.c.Close() }

// ErrEncoding: a Gen6 client received a packet in an encoding other than
// rencodeplus, which a real xpra 6.x client could not decode.
var ErrEncoding = errors.New("benchpeer: packet not in rencodeplus")

// read reads the next packet. A Gen6 session requires rencodeplus: a
// relay that re-encodes packets into rencode or bencode fails it.
func (s *Session) read() (xprawire.Packet, error) {
	p, h, err := s.pr.ReadPacket()
	if err != nil {
		return nil, err
	}
	if s.gen == Gen6 && h.Flags&(xprawire.FlagRencodePlus|xprawire.FlagRencode) != xprawire.FlagRencodePlus {
		return nil, fmt.Errorf("%w: %q with flags 0x%02x", ErrEncoding, p.Type(), byte(h.Flags))
	}
	return p, nil
}

func (s *Session) send(p xprawire.Packet) error {
	if err := s.pw.WritePacket(p); err != nil {
		return fmt.Errorf("benchpeer: write %s: %w", p.Type(), err)
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("benchpeer: write %s: %w", p.Type(), err)
	}
	return nil
}

// Ping sends n pings one after the other and returns each round trip,
// measured on this side's monotonic clock.
func (s *Session) Ping(n int, timeout time.Duration) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	_ = s.c.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = s.c.SetDeadline(time.Time{}) }()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := s.send(xprawire.Packet{"ping", int64(i)}); err != nil {
			return out, err
		}
		for {
			p, err := s.read()
			if err != nil {
				return out, fmt.Errorf("benchpeer: ping: %w", err)
			}
			if p.Type() == "ping" {
				if err := s.send(pingEcho(p)); err != nil {
					return out, err
				}
				continue
			}
			if p.Type() != "ping_echo" {
				continue
			}
			if len(p) < 2 {
				return out, fmt.Errorf("%w: short ping_echo", ErrCorrupt)
			}
			if v, ok := asInt(p[1]); !ok || v != int64(i) {
				// an echo for someone else's ping (a proxy's own)
				continue
			}
			break
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// StreamStats count what a stream delivered, all of it verified.
type StreamStats struct {
	Draws   int
	Cursors int
	Icons   int
	Pings   int
	Packets int   // every packet received
	Bytes   int64 // payload bytes verified (pixels, cursors, icons)
	First   time.Time
	Last    time.Time
}

// Stream receives the workload until the wanted number of draws (the
// workload's Draws, or unbounded when 0) or the deadline, checking every
// payload. Reaching the deadline is not an error.
func (s *Session) Stream(deadline time.Time) (StreamStats, error) {
	var st StreamStats
	_ = s.c.SetReadDeadline(deadline)
	defer func() { _ = s.c.SetReadDeadline(time.Time{}) }()
	seed := s.w.Seed
	want := s.w.Draws
	done := func() bool {
		return want > 0 && st.Draws >= want && st.Cursors >= (want+CursorEvery-1)/CursorEvery && st.Icons >= (want+IconEvery-1)/IconEvery
	}
	for !done() {
		p, err := s.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(deadline) {
				return st, nil
			}
			return st, fmt.Errorf("benchpeer: stream: %w", err)
		}
		now := time.Now()
		if st.Packets == 0 {
			st.First = now
		}
		st.Last = now
		st.Packets++
		switch p.Type() {
		case "draw":
			if err := s.checkDraw(p, st.Draws); err != nil {
				return st, err
			}
			st.Bytes += int64(s.w.Size(st.Draws))
			// ["damage-sequence", seq, wid, w, h, decode_time, message]
			if err := s.send(xprawire.Packet{"damage-sequence", int64(st.Draws), int64(1), int64(640), int64(480), int64(1), ""}); err != nil {
				return st, err
			}
			st.Draws++
		case "cursor":
			if err := s.checkCursor(p, st.Cursors); err != nil {
				return st, err
			}
			st.Bytes += CursorSize
			st.Cursors++
		case "window-icon":
			if len(p) < 6 || !bytes.Equal(asBytes(p[5]), s.pool.Icon(seed, st.Icons)) {
				return st, fmt.Errorf("%w: window-icon %d", ErrCorrupt, st.Icons)
			}
			st.Bytes += IconSize
			st.Icons++
		case "ping":
			st.Pings++
			if err := s.send(pingEcho(p)); err != nil {
				return st, err
			}
		case "disconnect":
			var rs []string
			for _, x := range p[1:] {
				rs = append(rs, string(asBytes(x)))
			}
			return st, fmt.Errorf("%w: disconnect %q", ErrRejected, rs)
		}
	}
	return st, nil
}

func (s *Session) checkDraw(p xprawire.Packet, i int) error {
	seed := s.w.Seed
	if len(p) < 11 {
		return fmt.Errorf("%w: draw %d has %d elements", ErrCorrupt, i, len(p))
	}
	if seq, ok := asInt(p[8]); !ok || seq != int64(i) {
		return fmt.Errorf("%w: draw sequence %v, want %d", ErrCorrupt, p[8], i)
	}
	if !bytes.Equal(asBytes(p[7]), s.pool.DrawOf(s.w, i)) {
		return fmt.Errorf("%w: draw %d pixels (%d bytes, want %d)", ErrCorrupt, i, len(asBytes(p[7])), s.w.Size(i))
	}
	opts, _ := p[10].(xprawire.Dict)
	c := xprawire.Caps{Dict: opts}
	tv, _ := opts.Get("bench.tag")
	if !bytes.Equal(asBytes(tv), tag(seed, i)) {
		return fmt.Errorf("%w: draw %d tag", ErrCorrupt, i)
	}
	if n, ok := c.Int("bench.size"); !ok || n != int64(s.w.Size(i)) {
		return fmt.Errorf("%w: draw %d size option", ErrCorrupt, i)
	}
	return nil
}

func (s *Session) checkCursor(p xprawire.Packet, n int) error {
	if len(p) < 11 {
		return fmt.Errorf("%w: cursor %d has %d elements", ErrCorrupt, n, len(p))
	}
	if serial, ok := asInt(p[8]); !ok || serial != int64(n) {
		return fmt.Errorf("%w: cursor serial %v, want %d", ErrCorrupt, p[8], n)
	}
	if !bytes.Equal(asBytes(p[9]), s.pool.Cursor(s.w.Seed, n)) {
		return fmt.Errorf("%w: cursor %d pixels", ErrCorrupt, n)
	}
	return nil
}

func asBytes(v any) []byte {
	switch b := v.(type) {
	case []byte:
		return b
	case string:
		return []byte(b)
	}
	return nil
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case []byte:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return i, err == nil
	}
	return 0, false
}
