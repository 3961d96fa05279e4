package benchpeer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Server is a synthetic xpra server. Each connection sends a hello with
// bench caps (see Workload); the server answers with a server hello of the
// client's generation (see serverHello), in the best encoder the client
// offered, and then idles or streams.
type Server struct {
	pool *Pool
	// HelloTimeout bounds the wait for the first hello; 0 means 30 s.
	HelloTimeout time.Duration
	// Legacy makes it strict like xpra 3.1.3: a first hello in
	// rencodeplus is refused as 3.1.3 refuses it (a text "disconnect:"
	// line: it parses the record as bencode), and so is any later
	// rencodeplus packet. The bench's bridged scenario needs it.
	Legacy bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	sessions atomic.Int64
	errs     atomic.Int64
	lastErr  atomic.Value // string
}

// NewServer returns a server that serves payloads from pool.
func NewServer(pool *Pool) *Server {
	return &Server{pool: pool, conns: map[net.Conn]struct{}{}}
}

// Stats are the server's counters.
type Stats struct {
	Sessions int64  // connections that completed the hello
	Errors   int64  // connections that ended with an error other than the peer leaving
	LastErr  string // the last such error
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	st := Stats{Sessions: s.sessions.Load(), Errors: s.errs.Load()}
	st.LastErr, _ = s.lastErr.Load().(string)
	return st
}

// Serve accepts connections on ln until ln is closed or Close is called.
// It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return fmt.Errorf("benchpeer: accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			err := s.serveConn(c)
			_ = c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			closed := s.closed
			s.mu.Unlock()
			if err != nil && !closed && !isPeerGone(err) {
				s.errs.Add(1)
				s.lastErr.Store(err.Error())
			}
		}()
	}
}

// Close closes every connection and waits for their goroutines. The
// listener is the caller's to close.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// isPeerGone tells the normal end of a session (the client or proxy
// closing) from a failure.
func isPeerGone(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, errPeerDisconnect) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) // reset by peer, broken pipe
}

var errPeerDisconnect = errors.New("benchpeer: peer sent disconnect")

// sconn is one server-side session.
type sconn struct {
	c    net.Conn
	pool *Pool
	pr   *xprawire.PacketReader
	bw   *bufio.Writer
	wmu  sync.Mutex
	pw   *xprawire.PacketWriter
	w    Workload
	// plus: the session is in rencodeplus, which is then required of
	// every packet the peer sends after its hello
	plus bool
	// legacy: like xpra 3.1.3, rencodeplus packets are refused
	legacy bool

	// acknowledgement window
	amu   sync.Mutex
	acond *sync.Cond
	acked int // draws acknowledged
	gone  bool
}

func (s *Server) serveConn(c net.Conn) error {
	timeout := s.HelloTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	sc := &sconn{c: c, pool: s.pool, pr: xprawire.NewPacketReader(bufio.NewReaderSize(c, 256<<10))}
	sc.pr.Frames.SetMaxSize(64 << 20)
	sc.acond = sync.NewCond(&sc.amu)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	var caps xprawire.Caps
	for {
		p, h, err := sc.pr.ReadPacket()
		if err != nil {
			return fmt.Errorf("benchpeer: read hello: %w", err)
		}
		if s.Legacy && h.Flags&xprawire.FlagRencodePlus != 0 {
			_ = c.SetWriteDeadline(time.Now().Add(timeout))
			_, _ = c.Write([]byte("disconnect: failed to parse bencode packet\n"))
			return nil
		}
		if p.Type() == "hello" && len(p) > 1 {
			d, _ := p[1].(xprawire.Dict)
			caps = xprawire.Caps{Dict: d}
			break
		}
		if p.Type() == "disconnect" {
			return errPeerDisconnect
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	enc := chooseEncoding(caps)
	// Strict like a 6.x server only toward a peer that offered nothing but
	// rencodeplus (a 6.x client); one that also offered rencode may keep
	// writing it, as xpra's decoders go by each packet's flags.
	if s.Legacy && enc == xprawire.RencodePlus {
		enc = xprawire.Rencode // 3.1.3 does not know rencodeplus
	}
	sc.plus = enc == xprawire.RencodePlus && !slices.Contains(caps.StrList("encoders"), "rencode")
	sc.legacy = s.Legacy
	sc.bw = bufio.NewWriterSize(c, 64<<10)
	sc.pw = xprawire.NewPacketWriter(xprawire.NewFrameWriter(sc.bw), enc)
	w, err := workloadFromCaps(caps)
	if err != nil {
		// not one of ours (or a proxy that dropped the caps): answer
		// the hello and idle, so request clients still work.
		w = Workload{Mode: ModeIdle}
	}
	sc.w = w
	if err := sc.send(xprawire.Packet{"hello", serverHello(enc)}); err != nil {
		return err
	}
	s.sessions.Add(1)

	errc := make(chan error, 1)
	if w.Mode == ModeStream {
		go func() { errc <- sc.stream() }()
	} else {
		errc <- nil
	}
	rerr := sc.readLoop()
	sc.amu.Lock()
	sc.gone = true
	sc.acond.Broadcast()
	sc.amu.Unlock()
	_ = c.Close()
	werr := <-errc
	if rerr != nil && !isPeerGone(rerr) {
		return rerr
	}
	if werr != nil && !isPeerGone(werr) {
		return werr
	}
	return nil
}

func chooseEncoding(c xprawire.Caps) xprawire.Encoding {
	listed := c.StrList("encoders")
	has := func(e string) bool {
		for _, x := range listed {
			if x == e {
				return true
			}
		}
		return false
	}
	switch {
	case c.Bool("rencodeplus", has("rencodeplus")):
		return xprawire.RencodePlus
	case c.Bool("rencode", has("rencode")):
		return xprawire.Rencode
	}
	return xprawire.Bencode
}

// serverHello is what a server says about itself, reduced to what xpra's
// proxy and clients look at: like a 6.x server (version 6.5.5, rencodeplus
// only, lz4/none) to a peer that offered rencodeplus, like a 3.1.3 server
// otherwise.
func serverHello(enc xprawire.Encoding) xprawire.Dict {
	d := xprawire.Dict{}
	if enc == xprawire.RencodePlus {
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
		d.Set("rencodeplus", false)
		d.Set("encoders", []any{"rencode", "bencode"})
		d.Set("compressors", []any{"zlib", "lz4"})
		d.Set("zlib", true)
		d.Set("lz4", true)
	}
	d.Set("lzo", false)
	d.Set("yaml", false)
	d.Set("display", ":bench")
	d.Set("uuid", "0123456789abcdef0123456789abcdef01234567")
	d.Set("session-type", "bench")
	d.Set("platform", "linux")
	d.Set("ping-echo-sourceid", true)
	d.Set("max_desktop_size", []any{int64(4096), int64(4096)})
	d.Set("desktop_size", []any{int64(1920), int64(1080)})
	d.Set("actual_desktop_size", []any{int64(1920), int64(1080)})
	d.Set("file-transfer", false)
	d.Set("sharing", false)
	d.Set("window.pre-map", true)
	return d
}

// send writes one packet and flushes it.
func (sc *sconn) send(p xprawire.Packet) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if err := sc.pw.WritePacket(p); err != nil {
		return fmt.Errorf("benchpeer: write %s: %w", p.Type(), err)
	}
	if err := sc.bw.Flush(); err != nil {
		return fmt.Errorf("benchpeer: write %s: %w", p.Type(), err)
	}
	return nil
}

func (sc *sconn) readLoop() error {
	for {
		p, h, err := sc.pr.ReadPacket()
		if err != nil {
			return err
		}
		if sc.plus && h.Flags&(xprawire.FlagRencodePlus|xprawire.FlagRencode) != xprawire.FlagRencodePlus {
			// a 6.x-style session: the peer said it speaks
			// rencodeplus, and a 6.x server decodes nothing else
			return fmt.Errorf("benchpeer: %q with flags 0x%02x in a rencodeplus session", p.Type(), byte(h.Flags))
		}
		if sc.legacy && h.Flags&xprawire.FlagRencodePlus != 0 {
			return fmt.Errorf("benchpeer: %q in rencodeplus to a 3.1.3-style server", p.Type())
		}
		switch p.Type() {
		case "damage-sequence":
			sc.amu.Lock()
			sc.acked++
			sc.acond.Broadcast()
			sc.amu.Unlock()
		case "ping":
			if err := sc.send(pingEcho(p)); err != nil {
				return err
			}
		case "disconnect":
			return errPeerDisconnect
		}
	}
}

// pingEcho answers a ping: ["ping_echo", echotime, l1, l2, l3, latency, sid].
func pingEcho(p xprawire.Packet) xprawire.Packet {
	var echo any = int64(0)
	if len(p) > 1 {
		echo = p[1]
	}
	e := xprawire.Packet{"ping_echo", echo, int64(0), int64(0), int64(0), int64(-1)}
	if len(p) > 3 {
		e = append(e, p[3])
	}
	return e
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// stream sends the workload: for each draw i, a cursor first when
// i%CursorEvery==0, an icon when i%IconEvery==0, a ping when
// i%PingEvery==0, then the draw itself once fewer than the window are
// unacknowledged.
func (sc *sconn) stream() error {
	seed := sc.w.Seed
	win := sc.w.window()
	for i := 0; sc.w.Draws == 0 || i < sc.w.Draws; i++ {
		sc.amu.Lock()
		for i-sc.acked >= win && !sc.gone {
			sc.acond.Wait()
		}
		gone := sc.gone
		sc.amu.Unlock()
		if gone {
			return nil
		}
		if i%CursorEvery == 0 {
			n := i / CursorEvery
			// ["cursor", encoding, x, y, w, h, xhot, yhot, serial, pixels, name]
			if err := sc.send(xprawire.Packet{"cursor", "raw", int64(0), int64(0), int64(32), int64(32), int64(1), int64(1),
				int64(n), xprawire.RawChunk{Data: sc.pool.Cursor(seed, n)}, "bench"}); err != nil {
				return err
			}
		}
		if i%IconEvery == 0 {
			n := i / IconEvery
			// ["window-icon", wid, w, h, encoding, data]
			if err := sc.send(xprawire.Packet{"window-icon", int64(1), int64(48), int64(int64(IconSize) / 48), "png/bench", xprawire.RawChunk{Data: sc.pool.Icon(seed, n)}}); err != nil {
				return err
			}
		}
		if i%PingEvery == 0 {
			if err := sc.send(xprawire.Packet{"ping", nowMillis(), nowMillis()}); err != nil {
				return err
			}
		}
		px := sc.pool.DrawOf(sc.w, i)
		opts := xprawire.Dict{}
		opts.Set("bench.tag", tag(seed, i))
		opts.Set("bench.size", int64(len(px)))
		// ["draw", wid, x, y, w, h, encoding, pixels, sequence, rowstride, options]
		if err := sc.send(xprawire.Packet{"draw", int64(1), int64(0), int64(0), int64(640), int64(480), "jpeg",
			xprawire.RawChunk{Data: px}, int64(i), int64(0), opts}); err != nil {
			return err
		}
	}
	return nil
}
