package edge

import (
	"context"
	"crypto/rand"
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

// session is one relayed client ↔ backend pair.
type session struct {
	id      int
	uuid    string
	user    string
	module  string
	remote  string
	target  router.Target
	started time.Time
	log     *slog.Logger

	c, b           *xconn
	client, server *peer

	stopOnce    sync.Once
	release     func() // the session's slot under the limits
	pinging     bool   // the proxy pings a leg (set before the relay starts)
	pingTimer   atomic.Pointer[time.Timer]
	pingStopped atomic.Bool
	stopped     chan struct{}
	reason      atomic.Value // string: why it ended
	done        chan struct{}

	latency struct {
		sync.Mutex
		client, server time.Duration
	}
	pingsOut sync.Map // leg name -> last ping time (int64 ms)
}

func (s *Server) newSession(h *handshake, t router.Target, b *xconn) *session {
	var u [16]byte
	_, _ = rand.Read(u[:])
	sess := &session{
		uuid:    hex.EncodeToString(u[:]),
		user:    h.identity.Username,
		module:  h.identity.Module,
		remote:  h.meta.remote,
		target:  t,
		started: time.Now(),
		c:       h.x,
		b:       b,
		stopped: make(chan struct{}),
		done:    make(chan struct{}),
	}
	sess.id = s.nextID()
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

// stop ends the session once: both sides are told why, then closed.
func (sess *session) stop(reason string, detail ...string) {
	sess.stopOnce.Do(func() {
		sess.reason.Store(reason)
		p := xprawire.Packet{"disconnect", reasonServerShutdown}
		if reason != "" {
			p = append(p, reason)
		}
		for _, d := range detail {
			p = append(p, d)
		}
		var wg sync.WaitGroup
		for i, x := range []*xconn{sess.c, sess.b} {
			wg.Add(1)
			go func(x *xconn, l leg) {
				defer wg.Done()
				if err := x.sendDeadline(p, time.Second); err != nil {
					sess.log.Debug("could not send disconnect", "to", l.String(), "err", err)
				}
			}(x, leg(i))
		}
		wg.Wait()
		close(sess.stopped)
		sess.c.Close()
		sess.b.Close()
	})
}

// endedBy closes both sides without telling anyone (the peer already
// said goodbye, or a leg is gone).
func (sess *session) endedBy(reason string) {
	sess.stopOnce.Do(func() {
		sess.reason.Store(reason)
		close(sess.stopped)
		sess.c.Close()
		sess.b.Close()
	})
}

func (s *Server) runSession(ctx context.Context, sess *session) {
	defer close(sess.done)
	defer s.unregister(sess) // registered by connectBackend before the client saw the hello
	s.metrics.sessionStarted(sess.module)
	sess.log.Info("session started", "module", sess.module, "encoder", sess.client.encoding.String(), "backend_encoder", sess.server.encoding.String())

	sess.pinging = sess.client.pingEcho || sess.server.pingEcho
	// The handshake is over: drop what only it needed.
	sess.client.forget()
	sess.server.forget()
	sess.c.frames.Release()
	sess.b.frames.Release()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.relay(sess, sess.c, sess.b, legClient) }()
	go func() { defer wg.Done(); s.relay(sess, sess.b, sess.c, legServer) }()
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
	case <-sess.stopped:
	case <-ctx.Done():
		sess.stop("proxy shutdown")
	}
	wg.Wait()
	reason, _ := sess.reason.Load().(string)
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

// spliceMin is the raw chunk size from which the relay moves a payload
// kernel to kernel instead of copying it through its own buffer.
const spliceMin = 64 << 10

// relay moves frames from src to dst until either side ends. Raw chunks
// and main packets pass unchanged; only the few packet types the proxy
// must see are decoded. Large raw chunks between two plain TCP legs are
// spliced and never copied into user space.
func (s *Server) relay(sess *session, src, dst *xconn, from leg) {
	idle := s.limits().IdleTimeout
	dstFlush := (from == legClient && sess.server.flush) || (from == legServer && sess.client.flush)
	_, srcTCP := src.Conn.(*net.TCPConn)
	_, dstTCP := dst.Conn.(*net.TCPConn)
	canSplice := srcTCP && dstTCP
	holding := false // dst write lock held across a group of chunks
	release := func() {
		if holding {
			dst.wmu.Unlock()
			holding = false
		}
	}
	defer release()
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(idle))
		}
		h, err := src.frames.NextHeader()
		if err != nil {
			release()
			s.legEnded(sess, from, err)
			return
		}
		if !dstFlush {
			h.Flags &^= xprawire.FlagFlush
		}
		if h.Index > 0 {
			if !holding {
				dst.wmu.Lock()
				holding = true
			}
			if canSplice && h.Size >= spliceMin {
				var hb [xprawire.HeaderSize]byte
				h.Put(hb[:])
				_, err := dst.Conn.Write(hb[:])
				var n int64
				if err == nil {
					n, err = src.frames.CopyPayload(dst.Conn, src.Conn, h)
				}
				src.bytesIn.Add(xprawire.HeaderSize + n)
				if err != nil {
					release()
					sess.stop("relay error")
					return
				}
				continue
			}
		}
		payload, err := src.frames.Payload(h)
		if err != nil {
			release()
			s.legEnded(sess, from, err)
			return
		}
		src.bytesIn.Add(int64(xprawire.HeaderSize + len(payload)))
		if h.Index > 0 {
			if err := dst.fw.WriteFrame(h, payload); err != nil {
				release()
				s.legEnded(sess, 1-from, err)
				return
			}
			continue
		}
		src.packetsIn.Add(1)
		typ, _ := xprawire.PeekType(h, payload)
		if !holding && sess.intercepted(typ, from) {
			stop, err := s.intercept(sess, src, dst, from, typ, h, payload)
			if err != nil {
				s.legEnded(sess, from, err)
				return
			}
			if stop {
				return
			}
			continue
		}
		if !holding {
			dst.wmu.Lock()
			holding = true
		}
		err = dst.fw.WriteFrame(h, payload)
		release()
		if err != nil {
			s.legEnded(sess, 1-from, err)
			return
		}
	}
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

// intercept handles one decoded packet; stop reports that the session ended.
func (s *Server) intercept(sess *session, src, dst *xconn, from leg, typ string, h xprawire.Header, payload []byte) (stop bool, err error) {
	p, err := xprawire.DecodeMainLimit(h, payload, s.limits().MaxPacketSize)
	if err != nil {
		return false, fmt.Errorf("decode %s: %w", typ, err)
	}
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
			// the proxy's business.
			return false, src.send(p)
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
		_ = dst.sendDeadline(p, time.Second)
		sess.endedBy(fmt.Sprintf("%s disconnected: %s", from, packetStrings(p[1:])))
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

// legEnded handles a read or write failure on one leg.
func (s *Server) legEnded(sess *session, l leg, err error) {
	select {
	case <-sess.stopped:
		return // already ending; this is the close it caused
	default:
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		if l == legServer {
			sess.stop("backend connection lost")
		} else {
			sess.endedBy("client connection lost")
		}
	case errors.As(err, &ne) && ne.Timeout():
		sess.stop("idle timeout")
	default:
		if l == legServer {
			sess.stop("backend connection error")
		} else {
			sess.endedBy("client connection error: " + err.Error())
		}
	}
}

const pingInterval = 5 * time.Second

// ping measures latency to both legs with the proxy's own pings (only to
// peers that echo the source id back, as xpra's proxy does), then
// schedules itself again.
func (sess *session) ping() {
	if sess.pingStopped.Load() {
		return
	}
	select {
	case <-sess.stopped:
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
		_ = x.c.sendDeadline(xprawire.Packet{"ping", mono, mono, sess.uuid}, time.Second)
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
	d.Set("bytes", xprawire.Dict{{Key: "from-client", Value: sess.c.bytesIn.Load()}, {Key: "from-server", Value: sess.b.bytesIn.Load()}})
	return d
}
