package edge

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
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

// WriteConn: a metaConn adds nothing to writes (see wsconn.WriteThrough).
func (c *metaConn) WriteConn() net.Conn { return c.Conn }

type metaKey struct{}

// Web configures the HTTP side of every listener.
type Web struct {
	// Root is a directory served at / (xpra's HTML5 client); empty: none.
	Root string
	// Disable serves no files, whatever Root says (WebSocket still works).
	Disable bool
	// AllowedOrigins are the origins ("https://portal.example.com") whose
	// pages may open WebSockets besides the proxy's own (an Origin that
	// matches the request's Host). A request without Origin (xpra's own
	// clients) is always allowed.
	AllowedOrigins []string
	// IdleTimeout closes a keep-alive connection idle this long
	// (default DefaultWebIdleTimeout). Until it closes, an HTTP connection
	// counts as unauthenticated, in total and for its address.
	IdleTimeout time.Duration
	// Portal, when set, is served at its paths ("/" among them) on every
	// listener; the HTML5 client files are then at ClientPrefix (and at
	// every other path, as before). See Portal.
	Portal Portal
}

// DefaultWebIdleTimeout is Web.IdleTimeout's default: long enough for a
// browser to fetch the HTML5 client's files over its connections, short
// enough that idle ones do not hold unauthenticated slots for long.
const DefaultWebIdleTimeout = 10 * time.Second

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
		if err := s.Health(); err != nil {
			// A fleet node without its store takes no login: a load
			// balancer's health check sends new clients elsewhere.
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("store unreachable\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	var files http.Handler = http.NotFoundHandler()
	haveFiles := false
	if s.cfg.Web.Root != "" && !s.cfg.Web.Disable {
		if wf, err := newWebFiles(s.cfg.Web.Root); err != nil {
			s.log.Warn("web root not served", "root", s.cfg.Web.Root, "err", err)
		} else {
			files, haveFiles = wf, true
		}
	}
	mux.Handle("/", files)
	portalPaths := map[string]bool{}
	if p := s.cfg.Web.Portal; p != nil {
		for _, pat := range p.Paths() {
			mux.Handle(pat, p)
			portalPaths[pat] = true
		}
	}
	if haveFiles {
		mux.Handle(ClientPrefix, http.StripPrefix(strings.TrimSuffix(ClientPrefix, "/"), files))
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		meta, _ := r.Context().Value(metaKey{}).(connMeta)
		securityHeaders(w.Header(), meta.tls)
		if isWebSocket(r) {
			if meta.listener != nil && !meta.listener.accepts(pick(meta.tls, "ws", "wss")) {
				http.Error(w, "websocket connections are not accepted on this port", http.StatusForbidden)
				return
			}
			if !s.originAllowed(r) {
				s.log.Info("websocket refused", "remote", meta.remote, "reason", "origin does not match the host", "origin", r.Header.Get("Origin"), "host", r.Host)
				http.Error(w, "cross-origin websocket connections are not allowed", http.StatusForbidden)
				return
			}
			s.serveWebSocket(ctx, w, r, meta)
			return
		}
		if r.URL.Path != "/healthz" {
			w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		}
		if scheme := pick(meta.tls, "http", "https"); meta.listener != nil && r.URL.Path != "/healthz" && !meta.listener.accepts(scheme) {
			http.Error(w, "this port serves no files over "+scheme, http.StatusForbidden)
			return
		}
		if _, pat := mux.Handler(r); s.cfg.Web.Portal != nil && portalPaths[pat] {
			mux.ServeHTTP(w, r) // the portal checks its own methods and sets its own CSP
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		mux.ServeHTTP(w, r)
	})
	ws := &webServer{ln: newConnListener()}
	idle := s.cfg.Web.IdleTimeout
	if idle <= 0 {
		idle = DefaultWebIdleTimeout
	}
	ws.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          nil,
		// A connection's unauthenticated slot is given back when it
		// closes; a hijacked one (a WebSocket) keeps it until it logs in;
		// an idle one gives it up (and is closed) when a connection needs
		// a slot and none is free.
		ConnState: func(c net.Conn, st http.ConnState) {
			mc, ok := c.(*metaConn)
			if !ok {
				return
			}
			s.unauthIP.setIdle(mc, st == http.StateIdle)
			if st == http.StateClosed {
				mc.meta.slot.release()
			}
		},
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

// contentSecurityPolicy is sent with every file. xpra's HTML5 client has
// inline scripts and styles, draws with data: and blob: images, decodes
// in blob: workers and connects back to the proxy over ws/wss.
const contentSecurityPolicy = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; " +
	"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"

// originAllowed: a WebSocket request with an Origin header must come from
// a page of the proxy itself (the Origin's host and port are the Host's)
// or of a configured origin; without one (xpra's Python client) it is
// allowed. Any web page could otherwise open a WebSocket to the proxy
// with the visitor's network position.
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Values("Origin")
	if len(o) == 0 {
		return true
	}
	if len(o) > 1 {
		return false
	}
	origin := strings.TrimSpace(o[0])
	for _, a := range s.cfg.Web.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return false
	}
	var def string
	switch strings.ToLower(u.Scheme) {
	case "https":
		def = "443"
	case "http":
		def = "80"
	default:
		return false
	}
	return sameHostPort(u.Host, r.Host, def)
}

// sameHostPort compares host[:port] values, a missing port being def on
// the origin's side and the origin scheme's default on the Host's too.
func sameHostPort(a, b, def string) bool {
	split := func(hp string) (string, string) {
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			return strings.Trim(hp, "[]"), def
		}
		return h, p
	}
	ha, pa := split(a)
	hb, pb := split(b)
	return ha != "" && strings.EqualFold(ha, hb) && pa == pb
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
// The connection keeps its unauthenticated slot (idle keep-alive
// connections count like logins that have not finished) until it closes.
func (s *Server) serveHTTP(c net.Conn, meta connMeta, sniffDeadline time.Time) {
	meta.slot = meta.slot.transfer() // from the sniffing goroutine to the http server
	meta.authDone = nil
	if meta.slot != nil {
		meta.authDone = meta.slot.release
	}
	if s.web == nil || !s.web.ln.push(&metaConn{Conn: c, meta: meta, sniffDeadline: sniffDeadline}) {
		meta.slot.release()
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
	// Until it logs in, the xpra stream inside holds the HTTP
	// connection's unauthenticated slot, like a plain xpra connection.
	slot := meta.slot
	if slot == nil {
		if slot = s.takeUnauth(meta.st.Limits); slot == nil {
			s.log.Warn("connection refused", "remote", meta.remote, "reason", "too many unauthenticated connections")
			http.Error(w, "too many unauthenticated connections, try again later", http.StatusServiceUnavailable)
			return
		}
	}
	meta.authDone = slot.release
	defer slot.release()
	if p := s.cfg.Web.Portal; p != nil {
		if a, ok := p.TicketAuth(r); ok {
			meta.ticketAuth = a
		}
	}
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
	meta.phases = nil // a timer of its own, over the upgraded stream
	s.serveXpra(connCtx, c, nil, meta)
}
