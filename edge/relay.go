package edge

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// session is one relayed client ↔ backend pair. It owns its two legs,
// both relay goroutines and the ping timer; end is the one way it ends.
type session struct {
	id      int
	uuid    string
	user    string
	module  string
	remote  string
	target  router.Target
	started time.Time
	log     *slog.Logger
	lim     Limits // taken when the session starts

	c, b           *xconn
	client, server *peer
	// bridged: the legs share no encoder; every packet is decoded and
	// encoded again (edge/bridge.go).
	bridged bool

	endOnce     sync.Once
	release     func() // the session's slot under the limits
	adm         Admission
	pinging     bool // the proxy pings a leg (set before the relay starts)
	pingTimer   atomic.Pointer[time.Timer]
	pingStopped atomic.Bool
	ending      chan struct{} // closed by end, after both legs are closed
	clientGone  chan struct{} // closed once the client's side stops reading (EOF or error)
	goneOnce    sync.Once
	reason      atomic.Value  // string: why it ended
	done        chan struct{} // closed when runSession returns

	latency struct {
		sync.Mutex
		client, server time.Duration
	}
	pingsOut sync.Map // leg name -> last ping time (int64 ms)
}

// newUUID is a session's uuid: 128 random bits in hex.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	return hex.EncodeToString(u[:])
}

// admitTimeout bounds a registry's admission of one session.
const admitTimeout = 3 * time.Second

func (s *Server) newSession(h *handshake, t router.Target, b *xconn, id int, uuid string) *session {
	sess := &session{
		id:         id,
		uuid:       uuid,
		user:       h.identity.Username,
		module:     h.identity.Module,
		remote:     h.meta.remote,
		target:     t,
		started:    time.Now(),
		c:          h.x,
		b:          b,
		ending:     make(chan struct{}),
		clientGone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	sess.log = s.log.With("session", sess.id, "user", sess.user, "remote", sess.remote, "target", t.String())
	return sess
}

// helloInfo is the proxy.* data added to the hellos each way. xpra
// servers check proxy.version as a numeric xpra version, so it carries the
// client's (protocol-compatible) version; ours is proxy.edge-version.
func (sess *session) helloInfo(client *peer) map[string]any {
	return map[string]any{
		"version":      compatVersion(client),
		"edge-version": Version,
		"hostname":     hostname(),
		"session":      int64(sess.id),
		"uuid":         sess.uuid,
	}
}

// Which legs end tells why.
type tellMask uint8

const (
	tellNone   tellMask = 0
	tellClient tellMask = 1 << legClient
	tellServer tellMask = 1 << legServer
	tellBoth            = tellClient | tellServer
)

// tellTimeout bounds how long end waits to tell a leg why its session
// ends; a peer that does not take the packet by then is closed untold.
const tellTimeout = 500 * time.Millisecond

// end is the one way a session ends, once: the legs in tell are sent
// ["disconnect", "server shutdown", reason, detail...] (each within
// tellTimeout, whatever the peers do), then both legs are closed, which
// ends both relay goroutines.
func (sess *session) end(reason string, tell tellMask, detail ...string) {
	sess.endOnce.Do(func() {
		sess.reason.Store(reason)
		p := xprawire.Packet{"disconnect", reasonServerShutdown}
		if reason != "" {
			p = append(p, reason)
		}
		for _, d := range detail {
			p = append(p, d)
		}
		var wg sync.WaitGroup
		for l, x := range []*xconn{sess.c, sess.b} {
			if tell&(1<<l) == 0 {
				continue
			}
			wg.Add(1)
			go func(x *xconn, l leg) {
				defer wg.Done()
				if err := x.tell(p, tellTimeout); err != nil {
					sess.log.Debug("could not send disconnect", "to", l.String(), "err", err)
				}
			}(x, leg(l))
		}
		wg.Wait()
		if tell&tellClient != 0 {
			// Let the client act on the disconnect and close first: an xpra
			// 6 client over WebSocket drops the packets it has not parsed
			// yet when the close frame arrives, and so never learns why.
			linger := time.NewTimer(disconnectLinger)
			select {
			case <-sess.clientGone:
			case <-linger.C:
			}
			linger.Stop()
		}
		sess.c.Close()
		sess.b.Close()
		close(sess.ending)
	})
}

// disconnectLinger bounds how long end waits, after telling the client, for
// the client to close its side.
const disconnectLinger = 500 * time.Millisecond

// stop ends the session on request, telling both sides.
func (sess *session) stop(reason string, detail ...string) { sess.end(reason, tellBoth, detail...) }

func (s *Server) runSession(ctx context.Context, sess *session) {
	defer close(sess.done)
	defer s.unregister(sess) // registered by connectBackend before the client saw the hello
	s.metrics.sessionStarted(sess.module)
	sess.log.Info("session started", "module", sess.module, "encoder", sess.client.encoding.String(), "backend_encoder", sess.server.encoding.String(), "bridged", sess.bridged)

	sess.c.writeTimeout = sess.lim.WriteTimeout
	sess.b.writeTimeout = sess.lim.WriteTimeout
	if sess.bridged {
		// Bridged packets are encoded again, and can grow (bencode, the
		// 3.1 keymap names): none goes to a peer over the packet limit.
		for _, x := range []*xconn{sess.c, sess.b} {
			x.lockWriter()
			x.pw.MaxSize = sess.lim.MaxPacketSize
			_ = x.unlockWriter()
		}
	}
	sess.pinging = sess.client.pingEcho || sess.server.pingEcho
	// The handshake is over: drop what only it needed.
	sess.client.forget()
	sess.server.forget()
	sess.c.frames.Release()
	sess.b.frames.Release()
	var wg sync.WaitGroup
	wg.Add(2)
	relay := sess.relay
	if sess.bridged {
		relay = sess.bridge
	}
	go func() { defer wg.Done(); relay(sess.c, sess.b, legClient) }()
	go func() { defer wg.Done(); relay(sess.b, sess.c, legServer) }()
	if sess.pinging {
		// A timer, not a goroutine: idle sessions stay small.
		t := time.AfterFunc(pingInterval, func() { sess.ping() })
		sess.pingTimer.Store(t)
		defer func() {
			sess.pingStopped.Store(true)
			t.Stop()
		}()
	}
	select {
	case <-sess.ending:
	case <-ctx.Done():
		sess.end("proxy shutdown", tellBoth)
	}
	wg.Wait()
	reason, _ := sess.reason.Load().(string)
	if sess.adm != nil {
		sess.adm.End(reason, sess.c.bytesIn.Load(), sess.b.bytesIn.Load())
	}
	s.metrics.sessionEnded(sess.c.bytesIn.Load(), sess.b.bytesIn.Load())
	sess.log.Info("session ended", "reason", reason,
		"bytes_from_client", sess.c.bytesIn.Load(), "bytes_from_server", sess.b.bytesIn.Load(),
		"packets_from_client", sess.c.packetsIn.Load(), "packets_from_server", sess.b.packetsIn.Load(),
		"duration", time.Since(sess.started).Round(time.Millisecond))
}

type leg int

const (
	legClient leg = iota // reading from the client
	legServer            // reading from the backend
)

func (l leg) String() string {
	if l == legClient {
		return "client"
	}
	return "server"
}

func (l leg) other() leg { return 1 - l }

func (l leg) tell() tellMask { return 1 << l }

// spliceMin is the raw chunk size from which the relay moves a payload
// kernel to kernel instead of copying it through its own buffer.
const spliceMin = 64 << 10

// Gathering: while the source has more complete frames already buffered,
// the relay copies small frames into one buffer and writes them with one
// write (one syscall, one TLS record, one WebSocket frame), in order.
const (
	gatherFrameMax  = 16 << 10 // larger frames are written on their own
	gatherMaxBytes  = 64 << 10 // one gathered write
	gatherMaxFrames = 64
)

var gatherPool = sync.Pool{New: func() any { b := make([]byte, 0, gatherMaxBytes); return &b }}

// nextFrameBuffered reports whether src's reader already holds the whole
// next frame, so reading it cannot block.
func nextFrameBuffered(src *xconn) bool {
	n := src.br.Buffered()
	if n < xprawire.HeaderSize {
		return false
	}
	hb, err := src.br.Peek(xprawire.HeaderSize)
	if err != nil || hb[0] != xprawire.Magic {
		return false
	}
	return n >= xprawire.HeaderSize+int(binary.BigEndian.Uint32(hb[4:8]))
}

// relay moves frames from src to dst until the session ends. Raw chunks
// and main packets pass unchanged; only the few packet types the proxy
// must see are decoded. Large raw chunks between two plain TCP legs are
// spliced and never copied into user space; small frames that arrive
// together are gathered into one write.
//
// The relay is the one writer of data to dst. It takes dst's writer for
// each write and gives it back after it, except between a raw chunk and
// its main packet (a group), which go out contiguously: once a chunk is
// written it keeps the writer and reads the rest of the group under the
// write timeout, so a peer that stalls inside a group holds nothing for
// longer. Before any read that can block, everything gathered is written.
func (sess *session) relay(src, dst *xconn, from leg) {
	idle := sess.lim.IdleTimeout
	wt := sess.lim.WriteTimeout
	dstFlush := (from == legClient && sess.server.flush) || (from == legServer && sess.client.flush)
	srcTCP, _ := src.Conn.(*net.TCPConn)
	dstTCP, _ := dst.Conn.(*net.TCPConn)
	canSplice := srcTCP != nil && dstTCP != nil
	chunkOpen := false         // the last frame taken is a raw chunk (written or gathered)
	var out *[]byte            // gathered frames not yet written (from gatherPool)
	outFrames := 0             // frames in out
	var readDeadline time.Time // as last set on src
	stale := true              // src's read deadline is not readDeadline
	dropOut := func() {
		if out != nil {
			*out = (*out)[:0]
			gatherPool.Put(out)
			out, outFrames = nil, 0
		}
	}
	defer dropOut()
	// (what is gathered and not yet written is dropped by the defer)
	f := &legFailure{sess: sess, dst: dst, from: from, wt: wt}
	// wrote finishes a write to dst: the writer stays ours inside a group.
	wrote := func(err error) error {
		dst.writes.Add(1)
		if chunkOpen {
			f.group = true
			return err
		}
		f.group = false
		if err2 := dst.unlockWriter(); err == nil {
			err = err2
		}
		return err
	}
	flush := func() error {
		if out == nil {
			return nil
		}
		if !f.group {
			dst.lockWriter()
		}
		dst.armWrite(wt)
		_, err := dst.Conn.Write(*out)
		dropOut()
		return wrote(err)
	}
	// writeOne writes one frame on its own.
	writeOne := func(h xprawire.Header, payload []byte) error {
		if !f.group {
			dst.lockWriter()
		}
		chunkOpen = h.Index > 0
		return wrote(dst.writeFrame(h, payload))
	}
	for {
		// The read deadline: the write timeout inside a group, else the
		// idle timeout (if any). Set only when it changes by much, so a
		// busy relay does not touch the runtime's timers per frame.
		var want time.Time
		slack := time.Second
		switch {
		case f.group:
			want, slack = time.Now().Add(wt), min(slack, wt/8)
		case idle > 0:
			want, slack = time.Now().Add(idle), min(slack, idle/8)
		}
		if stale || want.IsZero() != readDeadline.IsZero() || want.Sub(readDeadline) > slack {
			_ = src.SetReadDeadline(want)
			readDeadline, stale = want, false
		}
		h, err := src.frames.NextHeader()
		if err != nil {
			f.readFailed(err)
			return
		}
		if !dstFlush {
			h.Flags &^= xprawire.FlagFlush
		}
		if h.Index > 0 && canSplice && h.Size >= spliceMin {
			if err := flush(); err != nil {
				f.writeFailed(err)
				return
			}
			if !f.group {
				dst.lockWriter()
				f.group = true
			}
			chunkOpen = true
			err := spliceChunk(src, dst, srcTCP, dstTCP, h, wt)
			stale = true // the splice moved src's read deadline
			if err != nil {
				f.spliceFailed(err, dstTCP)
				return
			}
			continue
		}
		payload, err := src.frames.Payload(h)
		if err != nil {
			f.readFailed(err)
			return
		}
		src.bytesIn.Add(int64(xprawire.HeaderSize + len(payload)))
		if h.Index == 0 {
			src.packetsIn.Add(1)
		}
		// Main packets are peeked at, except the backend's after raw chunks
		// (its draws), which the proxy never intercepts.
		if h.Index == 0 && (from == legClient || !chunkOpen) {
			typ, perr := xprawire.PeekType(h, payload)
			if from == legClient {
				if reason := clientRefusal(typ, perr, chunkOpen); reason != "" {
					f.fail(reason, tellBoth)
					return
				}
			}
			if !chunkOpen && sess.intercepted(typ, from) {
				if err := flush(); err != nil {
					f.writeFailed(err)
					return
				}
				end, err := sess.intercept(src, dst, from, typ, h, payload)
				if err != nil {
					var de decodeError
					if errors.As(err, &de) {
						f.fail(from.errorReason(err), tellBoth)
					} else {
						f.writeFailed(err)
					}
					return
				}
				if end {
					return
				}
				continue
			}
		}
		size := xprawire.HeaderSize + len(payload)
		if out != nil && (len(*out)+size > gatherMaxBytes || size > gatherFrameMax) {
			if err := flush(); err != nil {
				f.writeFailed(err)
				return
			}
		}
		if out == nil && (size > gatherFrameMax || !nextFrameBuffered(src)) {
			if err := writeOne(h, payload); err != nil {
				f.writeFailed(err)
				return
			}
			continue
		}
		if out == nil {
			out = gatherPool.Get().(*[]byte)
		}
		h.Size = uint32(len(payload))
		var hb [xprawire.HeaderSize]byte
		h.Put(hb[:])
		*out = append(append(*out, hb[:]...), payload...)
		outFrames++
		chunkOpen = h.Index > 0
		if outFrames >= gatherMaxFrames || !nextFrameBuffered(src) {
			if err := flush(); err != nil {
				f.writeFailed(err)
				return
			}
		}
	}
}

// legFailure ends a session after a failure while one relay (or bridge)
// goroutine moves frames from leg from to dst. group is that goroutine's
// hold of dst's writer between a raw chunk and its main packet: the
// writer is given back first, so that end can tell dst at once.
type legFailure struct {
	sess  *session
	dst   *xconn
	from  leg
	wt    time.Duration
	group bool // dst's writer is ours: a chunk is written, its main packet not yet
}

func (f *legFailure) fail(reason string, tell tellMask) {
	if f.group {
		f.group = false
		_ = f.dst.unlockWriter()
	}
	f.sess.end(reason, tell)
}

func (f *legFailure) readFailed(err error) {
	if f.from == legClient {
		f.sess.goneOnce.Do(func() { close(f.sess.clientGone) })
	}
	f.fail(f.from.readFailReason(err, f.group, f.wt))
}

func (f *legFailure) writeFailed(err error) {
	f.fail(writeFailReason(f.from.other(), err, f.wt), f.from.tell())
}

// spliceFailed ends the session after spliceChunk failed: a timeout is
// the receiver's when dst has no room, else the sender's.
func (f *legFailure) spliceFailed(err error, dstTCP *net.TCPConn) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout() && !writable(dstTCP):
		f.writeFailed(err)
	case errors.As(err, &ne) && ne.Timeout():
		f.readFailed(err)
	default:
		f.fail("relay error", tellBoth)
	}
}

// spliceChunk moves one raw chunk, whose header NextHeader just read from
// src, to dst kernel to kernel (both TCP), under wt per piece each way;
// the caller holds dst's writer.
func spliceChunk(src, dst *xconn, srcTCP, dstTCP *net.TCPConn, h xprawire.Header, wt time.Duration) error {
	var hb [xprawire.HeaderSize]byte
	h.Put(hb[:])
	dst.armWrite(wt)
	_, err := dst.Conn.Write(hb[:])
	var n int64
	if err == nil {
		n, err = src.frames.CopyPayload(spliceWriter{dst: dstTCP, src: srcTCP, d: wt, rd: wt}, src.Conn, h)
	}
	dst.writes.Add(1)
	src.bytesIn.Add(xprawire.HeaderSize + n)
	return err
}

func (l leg) lostReason() string {
	if l == legServer {
		return "backend connection lost"
	}
	return "client connection lost"
}

func (l leg) errorReason(err error) string {
	if l == legServer {
		return "backend connection error"
	}
	return "client connection error: " + err.Error()
}

// readFailReason is why a session ends after a failed read from leg l
// (inGroup: inside a raw-chunk group, whose stall is cut at the write
// timeout wt), and whom to tell.
func (l leg) readFailReason(err error, inGroup bool, wt time.Duration) (string, tellMask) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout() && inGroup:
		return fmt.Sprintf("%s stalled for %v inside a packet (after a raw chunk)", l, wt), tellBoth
	case errors.As(err, &ne) && ne.Timeout():
		return "idle timeout", tellBoth
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return l.lostReason(), l.other().tell()
	default:
		return l.errorReason(err), l.other().tell()
	}
}

// writeFailReason says why writing to leg to failed.
func writeFailReason(to leg, err error, wt time.Duration) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("write timeout: the %s accepted nothing for %v", to, wt)
	case errors.Is(err, errOutboxFull):
		return fmt.Sprintf("write timeout: the %s accepts nothing", to)
	default:
		return to.lostReason()
	}
}

// clientRefusal says why a client's main packet ends its session, or "".
// Every one is classified, whatever came before it: the proxy declared no
// aliases, so a type that is not a name (an integer alias, or undecodable)
// is refused, and so is a packet that stops the backend or restarts the
// handshake after raw chunks (it can no longer be dropped alone; without
// chunks, intercept drops it).
func clientRefusal(typ string, peekErr error, afterChunk bool) string {
	if peekErr != nil || typ == "" {
		return "client sent a packet without a type name"
	}
	switch typ {
	case "shutdown-server", "exit-server", "hello", "challenge":
		if afterChunk {
			return "client sent " + typ + " after a raw chunk"
		}
	}
	return ""
}

// intercepted reports whether a packet type must be decoded: the ones the
// proxy answers or changes, and ping_echo only while it pings itself.
func (sess *session) intercepted(typ string, from leg) bool {
	switch typ {
	case "ping_echo":
		return sess.pinging
	case "hello", "challenge", "disconnect", "set_deflate", "shutdown-server", "exit-server":
		return true
	case "info-response":
		return from == legServer
	}
	return false
}

// decodeError is a packet from src that could not be decoded.
type decodeError struct{ error }

// intercept handles one decoded packet; end reports that the session
// ended. Other errors are write failures.
func (sess *session) intercept(src, dst *xconn, from leg, typ string, h xprawire.Header, payload []byte) (end bool, err error) {
	p, err := xprawire.DecodeMainLimit(h, payload, sess.lim.MaxPacketSize)
	if err != nil {
		return false, decodeError{fmt.Errorf("decode %s: %w", typ, err)}
	}
	return sess.handle(src, dst, from, typ, p)
}

// handle acts on one decoded packet the proxy intercepts (see intercept).
func (sess *session) handle(src, dst *xconn, from leg, typ string, p xprawire.Packet) (end bool, err error) {
	switch typ {
	case "ping_echo":
		if len(p) > 6 {
			if sid := string(anyBytes(p[6])); sid == sess.uuid {
				sess.recordEcho(from, p)
				return false, nil
			}
		}
	case "set_deflate":
		if from == legClient {
			// Echoed, as xpra's proxy does; the backend's compression is
			// the proxy's business. Posted: src's writer belongs to the
			// other relay, which may be inside a group.
			if err := src.post(p, sess.lim.WriteTimeout); err != nil {
				sess.end(writeFailReason(from, err, sess.lim.WriteTimeout), from.other().tell())
				return true, nil
			}
		}
		return false, nil
	case "hello", "challenge":
		sess.log.Debug("dropped late packet", "type", typ, "from", from.String())
		return false, nil
	case "shutdown-server", "exit-server":
		sess.log.Info("client asked to stop the backend; refused", "type", typ)
		return false, nil
	case "disconnect":
		// Pass it on, then end the session.
		_ = dst.tell(p, tellTimeout)
		sess.end(fmt.Sprintf("%s disconnected: %s", from, packetStrings(p[1:])), tellNone)
		return true, nil
	case "info-response":
		if len(p) > 1 {
			if d, ok := p[1].(xprawire.Dict); ok {
				d.Set("proxy", sess.infoDict())
				p[1] = d
			}
		}
	}
	return false, dst.send(p)
}

const pingInterval = 5 * time.Second

// ping measures latency to both legs with the proxy's own pings (only to
// peers that echo the source id back, as xpra's proxy does), then
// schedules itself again. Pings are posted: they never wait behind a
// stalled peer, and a leg that cannot take one ends the session.
func (sess *session) ping() {
	if sess.pingStopped.Load() {
		return
	}
	select {
	case <-sess.ending:
		return
	default:
	}
	mono := time.Now().UnixMilli()
	for _, x := range []struct {
		c *xconn
		p *peer
		l leg
	}{{sess.c, sess.client, legClient}, {sess.b, sess.server, legServer}} {
		if !x.p.pingEcho {
			continue
		}
		sess.pingsOut.Store(x.l, mono)
		if err := x.c.post(xprawire.Packet{"ping", mono, mono, sess.uuid}, sess.lim.WriteTimeout); err != nil {
			sess.end(writeFailReason(x.l, err, sess.lim.WriteTimeout), x.l.other().tell())
			return
		}
	}
	if t := sess.pingTimer.Load(); t != nil && !sess.pingStopped.Load() {
		t.Reset(pingInterval)
	}
}

func (sess *session) recordEcho(from leg, p xprawire.Packet) {
	sent, ok := sess.pingsOut.Load(from)
	if !ok {
		return
	}
	d := time.Since(time.UnixMilli(sent.(int64)))
	sess.latency.Lock()
	if from == legClient {
		sess.latency.client = d
	} else {
		sess.latency.server = d
	}
	sess.latency.Unlock()
}

// infoDict is the proxy's view of a session, for info-response and the
// session's control socket.
func (sess *session) infoDict() xprawire.Dict {
	sess.latency.Lock()
	lc, ls := sess.latency.client, sess.latency.server
	sess.latency.Unlock()
	d := xprawire.Dict{}
	d.Set("version", Version)
	d.Set("type", "xpra-edge")
	d.Set("hostname", hostname())
	d.Set("session", int64(sess.id))
	d.Set("user", sess.user)
	d.Set("auth", sess.module)
	d.Set("client", sess.remote)
	d.Set("target", sess.target.String())
	d.Set("display", sess.target.Display)
	d.Set("uptime", int64(time.Since(sess.started).Seconds()))
	d.Set("latency", xprawire.Dict{{Key: "client", Value: lc.Milliseconds()}, {Key: "server", Value: ls.Milliseconds()}})
	d.Set("encoder", xprawire.Dict{{Key: "client", Value: sess.client.encoding.String()}, {Key: "server", Value: sess.server.encoding.String()}})
	d.Set("bridged", sess.bridged)
	d.Set("bytes", xprawire.Dict{{Key: "from-client", Value: sess.c.bytesIn.Load()}, {Key: "from-server", Value: sess.b.bytesIn.Load()}})
	return d
}
