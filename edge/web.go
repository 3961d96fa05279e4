package edge

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/wsconn"
)

// connListener feeds sniffed connections to an http.Server.
type connListener struct {
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
	addr   net.Addr
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{}), addr: &net.TCPAddr{}}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

// metaConn carries what sniffing learned into the http.Server.
type metaConn struct {
	net.Conn
	meta connMeta
	// sniffDeadline caps the read deadline the http.Server sets for the
	// first request's header (ReadHeaderTimeout), so a client that sent a
	// request line and dribbles header lines is cut when a silent one is.
	sniffDeadline time.Time
	capped        atomic.Bool
}

// SetReadDeadline applies the sniff deadline to the first request header.
func (c *metaConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !c.sniffDeadline.IsZero() && c.capped.CompareAndSwap(false, true) && t.After(c.sniffDeadline) {
		t = c.sniffDeadline
	}
	return c.Conn.SetReadDeadline(t)
}

type metaKey struct{}

// Web configures the HTTP side of every listener.
type Web struct {
	// Root is a directory served at / (xpra's HTML5 client); empty: none.
	Root string
}

// webServer is the one http.Server behind every listener.
type webServer struct {
	ln  *connListener
	srv *http.Server
	wg  sync.WaitGroup
}

func (s *Server) startWeb(ctx context.Context) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	var files http.Handler = http.NotFoundHandler()
	if s.cfg.Web.Root != "" {
		files = http.FileServer(http.Dir(s.cfg.Web.Root))
	}
	mux.Handle("/", files)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		meta, _ := r.Context().Value(metaKey{}).(connMeta)
		securityHeaders(w.Header(), meta.tls)
		if isWebSocket(r) {
			if meta.listener != nil && !meta.listener.accepts(pick(meta.tls, "ws", "wss")) {
				http.Error(w, "websocket connections are not accepted on this port", http.StatusForbidden)
				return
			}
			s.serveWebSocket(ctx, w, r, meta)
			return
		}
		if scheme := pick(meta.tls, "http", "https"); meta.listener != nil && r.URL.Path != "/healthz" && !meta.listener.accepts(scheme) {
			http.Error(w, "this port serves no files over "+scheme, http.StatusForbidden)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		mux.ServeHTTP(w, r)
	})
	ws := &webServer{ln: newConnListener()}
	ws.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          nil,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if mc, ok := c.(*metaConn); ok {
				return context.WithValue(ctx, metaKey{}, mc.meta)
			}
			return ctx
		},
	}
	ws.wg.Add(1)
	go func() {
		defer ws.wg.Done()
		_ = ws.srv.Serve(ws.ln)
	}()
	s.web = ws
}

func (s *Server) stopWeb() {
	if s.web == nil {
		return
	}
	s.web.ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.web.srv.Shutdown(ctx)
	s.web.wg.Wait()
}

func securityHeaders(h http.Header, tls bool) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if tls {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// serveHTTP hands a sniffed HTTP connection to the web server; the first
// request's header must arrive before sniffDeadline.
func (s *Server) serveHTTP(c net.Conn, meta connMeta, sniffDeadline time.Time) {
	if meta.authDone != nil {
		meta.authDone() // the http server has its own limits
		meta.authDone = nil
	}
	if s.web == nil || !s.web.ln.push(&metaConn{Conn: c, meta: meta, sniffDeadline: sniffDeadline}) {
		c.Close()
	}
}

// isWebSocket applies wsconn's one rule for an upgrade request.
func isWebSocket(r *http.Request) bool { return wsconn.IsUpgrade(r.Header) }

// serveWebSocket upgrades any path (as xpra does) and runs the xpra
// pipeline over the frames' byte stream.
func (s *Server) serveWebSocket(ctx context.Context, w http.ResponseWriter, r *http.Request, meta connMeta) {
	if meta.listener == nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	// Until it logs in, the xpra stream inside holds an unauthenticated
	// slot like a plain xpra connection does (the sniffed HTTP connection
	// gave its slot back when it reached the web server).
	lim := s.limits()
	if n := s.unauth.Add(1); lim.MaxUnauthenticated > 0 && int(n) > lim.MaxUnauthenticated {
		s.unauth.Add(-1)
		s.log.Warn("connection refused", "remote", meta.remote, "reason", "too many unauthenticated connections")
		http.Error(w, "too many unauthenticated connections, try again later", http.StatusServiceUnavailable)
		return
	}
	released := false
	meta.authDone = func() {
		if !released {
			released = true
			s.unauth.Add(-1)
		}
	}
	defer meta.authDone()
	c, err := wsconn.Upgrade(w, r)
	if err != nil {
		s.log.Info("websocket upgrade refused", "remote", meta.remote, "err", err)
		return
	}
	meta.transport = auth.Transport{Kind: "ws", Remote: meta.remote}
	if meta.tls {
		meta.transport.Kind, meta.transport.Encrypted = "wss", true
	}
	meta.path = r.URL.Path
	meta.display = r.URL.Query().Get("display")
	// The upgraded stream is tracked like an accepted connection.
	// Its context is the tracked connection's, not the web server's.
	connCtx, done, ok := s.track(c, phaseLogin)
	if !ok {
		c.Close()
		return
	}
	defer done()
	s.serveXpra(connCtx, c, nil, meta)
}
