package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/sockdir"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// requestScope says who asks: a network client (after authentication),
// or a local tool on a control socket.
type requestScope int

const (
	scopeNetwork requestScope = iota
	scopeControl
)

// listenControl creates <dir>/<hostname>-<display> (mode 0600), refusing
// to replace a live socket and removing a dead one, as xpra does.
func listenControl(dir, display string) (net.Listener, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket dir: %w", err)
	}
	path := filepath.Join(dir, sockdir.SocketName(display))
	if _, err := os.Lstat(path); err == nil {
		if sockdir.Probe(path, time.Second) == sockdir.StateLive {
			return nil, fmt.Errorf("control socket %s is in use by a live server", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// controlLoop serves a control socket: the proxy's own (sess == nil) or a
// session's (:proxy-<id>).
func (s *Server) controlLoop(ctx context.Context, ln net.Listener, sess *session) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ctx, done, ok := s.track(c, phaseControl)
		if !ok {
			c.Close()
			continue
		}
		go func() {
			defer done()
			defer c.Close()
			s.serveControl(ctx, c, sess)
		}()
	}
}

// serveControl answers one request on a control socket: info, version, id,
// stop. Control sockets are local and owner-only, so they ask no password.
func (s *Server) serveControl(ctx context.Context, c net.Conn, sess *session) {
	st := s.snapshot() // on arrival, as for every connection
	x := newXconn(c, nil)
	x.frames.SetMaxSize(uint32(st.Limits.MaxHelloSize))
	h := &handshake{s: s, st: st, lim: st.Limits, x: x, log: s.log.With("control", true), start: time.Now()}
	caps, err := h.readHello(time.Now().Add(10 * time.Second))
	if errors.Is(err, io.EOF) {
		// `xpra list` probes sockets by connecting and closing.
		h.log.Debug("control socket probed")
		return
	}
	if err != nil {
		h.fail(err)
		return
	}
	client, err := newPeer(caps)
	if err != nil {
		h.fail(tell(reasonProtocol, err, err.Error()))
		return
	}
	h.client = client
	x.setPeer(client)
	req := requestOf(caps)
	switch req {
	case "version", "info", "id", "connect_test":
		_ = x.sendDeadline(xprawire.Packet{"hello", s.answerRequest(req, client, scopeControl, sess)}, 5*time.Second)
		h.linger()
	case "stop":
		hello := s.answerRequest("id", client, scopeControl, sess)
		hello.Set("client-shutdown", true)
		if err := x.sendDeadline(xprawire.Packet{"hello", hello}, 5*time.Second); err != nil {
			return
		}
		// The client confirms with shutdown-server.
		for {
			p, err := x.readPacket(time.Now().Add(10 * time.Second))
			if err != nil {
				return
			}
			if t := p.Type(); t == "shutdown-server" || t == "exit-server" {
				break
			}
		}
		bye := xprawire.Packet{"disconnect", reasonServerShutdown, "socket request"}
		if sess != nil {
			s.log.Info("session stopped by control socket", "session", sess.id)
			sess.stop("socket request")
			<-sess.done
			_ = x.sendDeadline(bye, time.Second)
			return
		}
		// Answered before the stop: shutdown closes every connection it
		// tracks, this one included, and the answer raced it.
		_ = x.sendDeadline(bye, time.Second)
		s.log.Info("proxy stop requested on its control socket")
		s.RequestStop("socket request")
	case "":
		h.fail(tell(reasonInvalidRequest, errors.New("control sockets take requests only"), "this socket only answers info, version, id and stop"))
	default:
		h.fail(tell(reasonInvalidRequest, fmt.Errorf("unsupported control request %q", req)))
	}
}

// compatVersion is the xpra version we present: the peer's own when it
// is a numeric xpra version, so its version check passes; our build is in
// "xpra-edge.version".
func compatVersion(p *peer) string {
	if p != nil && p.version != "" && strings.Trim(p.version, "0123456789.") == "" {
		return p.version
	}
	return "3.1.3"
}

func (s *Server) versionCaps(p *peer) xprawire.Dict {
	d := xprawire.Dict{}
	d.Set("version", compatVersion(p))
	d.Set("xpra-edge.version", Version)
	d.Set("build.version", compatVersion(p))
	d.Set("platform", runtime.GOOS)
	setCodecCaps(&d, p.encoders, p.compressors)
	return d
}

// answerRequest builds the hello that answers info, id, version and
// connect_test. Network clients see the proxy's basic info; local control
// sockets see the sessions as well.
func (s *Server) answerRequest(req string, p *peer, scope requestScope, sess *session) xprawire.Dict {
	d := s.versionCaps(p)
	switch req {
	case "connect_test":
		v, _ := p.caps.Get("connect_test_request")
		if v == nil {
			v = ""
		}
		d.Set("connect_test_response", v)
	case "id":
		d.Set("uuid", s.uuid)
		d.Set("platform", runtime.GOOS)
		if sess != nil {
			d.Set("session-type", "proxy-instance")
			d.Set("session-name", "xpra-edge session "+fmt.Sprint(sess.id))
			d.Set("display", fmt.Sprintf(":proxy-%d", sess.id))
			d.Set("uuid", sess.uuid)
		} else {
			d.Set("session-type", "proxy")
			d.Set("session-name", "xpra-edge")
			d.Set("display", s.cfg.Display)
		}
	case "info":
		if sess != nil {
			// xpra's instance sockets answer with a "proxy" tree.
			flattenInto(&d, "proxy", sess.infoDict())
			return d
		}
		s.proxyInfo(&d, scope)
	}
	return d
}

func (s *Server) proxyInfo(d *xprawire.Dict, scope requestScope) {
	d.Set("server.type", "xpra-edge")
	d.Set("server.mode", "proxy")
	d.Set("server.version", Version)
	d.Set("server.hostname", hostname())
	d.Set("server.platform", runtime.GOOS)
	d.Set("server.uuid", s.uuid)
	d.Set("server.start_time", s.started.Unix())
	d.Set("server.display", s.cfg.Display)
	d.Set("session-type", "proxy")
	d.Set("mode", "proxy")
	d.Set("display", s.cfg.Display)
	if scope != scopeControl {
		return
	}
	d.Set("server.pid", int64(os.Getpid()))
	d.Set("server.go", runtime.Version())
	d.Set("server.goroutines", int64(runtime.NumGoroutine()))
	sessions := s.liveSessions()
	d.Set("instances.count", int64(len(sessions)))
	for _, sess := range sessions {
		flattenInto(d, fmt.Sprintf("instances.%d", sess.id), sess.infoDict())
	}
}

// flattenInto adds the dict under prefix as flat "prefix.key" entries,
// the form xpra 3.1 reads.
func flattenInto(dst *xprawire.Dict, prefix string, src xprawire.Dict) {
	for _, kv := range src {
		k := prefix + "." + keyString(kv.Key)
		if sub, ok := kv.Value.(xprawire.Dict); ok {
			flattenInto(dst, k, sub)
			continue
		}
		dst.Set(strings.TrimPrefix(k, "."), kv.Value)
	}
}
