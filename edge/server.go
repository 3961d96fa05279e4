// Package edge owns xpra-edge's sockets and goroutines: listeners, protocol
// sniffing, the per-connection pipeline (hello, authentication, routing,
// backend handshake), the relay, the registry of live sessions, the control
// sockets that xpra's own tools talk to, and graceful shutdown.
//
// It receives everything it needs as values (a *tls.Config, authenticators,
// a router); it never imports tlsconf or certmagic, and never exits the
// process.
package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/sockdir"
	"github.com/xpra-edge/xpra-edge/router"
)

// Version is xpra-edge's version, set by cmd at build time.
var Version = "0.1.0-dev"

// Limits bound what one connection may cost. Zero values take the
// documented defaults (see DefaultLimits).
type Limits struct {
	SniffTimeout            time.Duration // first bytes of a connection
	LoginTimeout            time.Duration // first hello
	ChallengeTimeout        time.Duration // answer to a challenge
	BackendHandshakeTimeout time.Duration // backend hello after connect
	WriteTimeout            time.Duration // one handshake packet
	IdleTimeout             time.Duration // 0: none (xpra pings keep live sessions busy)
	MaxHelloSize            int           // bytes, before authentication
	MaxPacketSize           int           // bytes, after the hello
	AuthFailDelay           time.Duration // before "authentication failed"
	MaxSessions             int           // live relayed sessions; 0: unlimited
	MaxSessionsPerIP        int           // live sessions per client address; 0: unlimited
	MaxUnauthenticated      int           // connections not yet logged in (sniffing, login)
	// MaxUnauthenticatedPerIP bounds the connections not yet logged in from
	// one client address (the PROXY header's, if trusted), so that one
	// address cannot take every unauthenticated slot; unix listeners are
	// not counted by address.
	MaxUnauthenticatedPerIP int
}

// DefaultLimits are the limits in force when a field is zero.
var DefaultLimits = Limits{
	SniffTimeout:            3 * time.Second,
	LoginTimeout:            31 * time.Second,
	ChallengeTimeout:        120 * time.Second,
	BackendHandshakeTimeout: 20 * time.Second,
	WriteTimeout:            10 * time.Second,
	MaxHelloSize:            1 << 20,
	MaxPacketSize:           16 << 20,
	AuthFailDelay:           time.Second,
	MaxUnauthenticated:      1024,
	MaxUnauthenticatedPerIP: 8,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	set := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	set(&d.SniffTimeout, l.SniffTimeout)
	set(&d.LoginTimeout, l.LoginTimeout)
	set(&d.ChallengeTimeout, l.ChallengeTimeout)
	set(&d.BackendHandshakeTimeout, l.BackendHandshakeTimeout)
	set(&d.WriteTimeout, l.WriteTimeout)
	set(&d.IdleTimeout, l.IdleTimeout)
	set(&d.AuthFailDelay, l.AuthFailDelay)
	if l.AuthFailDelay < 0 {
		d.AuthFailDelay = 0
	}
	if l.MaxHelloSize > 0 {
		d.MaxHelloSize = l.MaxHelloSize
	}
	if l.MaxPacketSize > 0 {
		d.MaxPacketSize = l.MaxPacketSize
	}
	d.MaxSessions, d.MaxSessionsPerIP = l.MaxSessions, l.MaxSessionsPerIP
	if l.MaxUnauthenticated > 0 {
		d.MaxUnauthenticated = l.MaxUnauthenticated
	}
	if l.MaxUnauthenticatedPerIP > 0 {
		d.MaxUnauthenticatedPerIP = l.MaxUnauthenticatedPerIP
	}
	return d
}

// Listener is one bound address and what it accepts.
type Listener struct {
	Name    string // for logs; defaults to the address
	Network string // "tcp" (default) or "unix"
	Address string
	// Auth authenticates every xpra connection on this listener.
	Auth auth.Authenticator
	// AllowPlain accepts unencrypted xpra (and ws) on a TCP listener.
	AllowPlain bool
	// AllowTLS accepts TLS (xpra over TLS, wss, https) with Config.TLS.
	AllowTLS bool
	// Accept, when not empty, lists exactly what the port takes, among
	// "xpra" (plain), "ssl" (xpra over TLS), "ws", "wss", "http" and
	// "https" (files); it replaces AllowPlain and AllowTLS.
	Accept []string
	// ProxyFrom are the networks whose connections may begin with a
	// PROXY protocol (v1 or v2) header naming the real client; a header
	// from anywhere else is refused.
	ProxyFrom []netip.Prefix

	// Listener, when set, is used instead of binding Address (tests,
	// systemd socket activation).
	Listener net.Listener
}

// SessionStarter starts a new xpra session as a system user (system-wide
// mode). request is the client's start-new-session dict, nil when the
// proxy starts one because the user has none.
type SessionStarter interface {
	StartSession(ctx context.Context, user string, request map[string]any) (router.Session, error)
}

// Protocols a listener can take.
var Protocols = []string{"xpra", "ssl", "ws", "wss", "http", "https"}

// accepts reports whether the listener takes protocol p.
func (l *Listener) accepts(p string) bool {
	if len(l.Accept) > 0 {
		for _, a := range l.Accept {
			if a == p {
				return true
			}
		}
		return false
	}
	switch p {
	case "xpra", "ws", "http":
		return l.AllowPlain || l.Network == "unix"
	default:
		return l.AllowTLS
	}
}

func (l *Listener) acceptsTLS() bool {
	return l.accepts("ssl") || l.accepts("wss") || l.accepts("https")
}

func (l *Listener) trustsProxy(remote net.Addr) bool {
	ta, ok := remote.(*net.TCPAddr)
	if !ok || len(l.ProxyFrom) == 0 {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.ProxyFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// State is the part of the configuration that a reload swaps atomically.
type State struct {
	// Starter, when set, starts sessions for users of local-session
	// modules who ask for one or have none.
	Starter   SessionStarter
	Router    *router.Router
	Dialer    *BackendDialer
	Limits    Limits
	Bans      BanPolicy
	Listeners []*Listener // matched to bound sockets by Name
}

// Config is everything a Server is built from.
type Config struct {
	// Display is the proxy's own display (":100"); with SocketDir it names
	// the control socket that `xpra list/info/stop` find.
	Display   string
	SocketDir string
	State     State
	Logger    *slog.Logger
	// TLS terminates TLS on listeners with AllowTLS; its GetCertificate
	// may change certificates at any time (ACME renewals, reloads).
	TLS *tls.Config
	// Web configures HTTP on the listeners (HTML5 client files).
	Web Web
}

// Server is a running xpra-edge.
type Server struct {
	log     *slog.Logger
	cfg     Config
	state   atomic.Pointer[State]
	uuid    string
	started time.Time
	metrics *metrics

	idSeq atomic.Int64

	mu        sync.Mutex
	sessions  map[int]*session
	slots     int            // reserved or live sessions
	slotsByIP map[string]int // the same, per client address
	controls  map[int]net.Listener
	listeners []net.Listener
	conns     sync.WaitGroup

	unauth    atomic.Int64
	unauthIP  unauthTable // unauthenticated connections per address
	stopReq   chan string
	isRoot    bool
	bans      *banList
	closeOnce sync.Once
	web       *webServer
}

// New builds a server; it binds nothing until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.State.Router == nil {
		return nil, errors.New("edge: no router")
	}
	if cfg.State.Dialer == nil {
		cfg.State.Dialer = &BackendDialer{}
	}
	if len(cfg.State.Listeners) == 0 {
		return nil, errors.New("edge: no listeners")
	}
	for _, l := range cfg.State.Listeners {
		if l.Name == "" {
			l.Name = l.Address
		}
	}
	var u [16]byte
	_, _ = rand.Read(u[:])
	s := &Server{
		log:       cfg.Logger,
		cfg:       cfg,
		uuid:      hex.EncodeToString(u[:]),
		started:   time.Now(),
		sessions:  map[int]*session{},
		slotsByIP: map[string]int{},
		controls:  map[int]net.Listener{},
		stopReq:   make(chan string, 1),
		isRoot:    os.Geteuid() == 0,
		bans:      newBanList(),
	}
	s.metrics = newMetrics(s.bans.count)
	st := cfg.State
	st.Limits = st.Limits.withDefaults()
	s.state.Store(&st)
	s.bans.setPolicy(st.Bans)
	s.bans.onBan = func(addr string) {
		s.metrics.bans.Inc()
		s.log.Warn("address banned after repeated failed logins", "addr", addr, "for", st.Bans.BanTime)
	}
	return s, nil
}

// Reload swaps the reloadable state; live sessions are not touched.
func (s *Server) Reload(st State) error {
	if st.Router == nil {
		return errors.New("edge: reload without a router")
	}
	if st.Dialer == nil {
		st.Dialer = &BackendDialer{}
	}
	old := s.state.Load()
	byName := map[string]*Listener{}
	for _, l := range st.Listeners {
		byName[l.Name] = l
	}
	for _, l := range old.Listeners {
		if _, ok := byName[l.Name]; !ok {
			return fmt.Errorf("edge: reload cannot remove listener %q; restart to change listeners", l.Name)
		}
	}
	st.Limits = st.Limits.withDefaults()
	s.state.Store(&st)
	s.bans.setPolicy(st.Bans)
	return nil
}

func (s *Server) limits() Limits          { return s.state.Load().Limits }
func (s *Server) router() *router.Router  { return s.state.Load().Router }
func (s *Server) dialer() *BackendDialer  { return s.state.Load().Dialer }
func (s *Server) starter() SessionStarter { return s.state.Load().Starter }
func (s *Server) nextID() int             { return int(s.idSeq.Add(1)) }

// listener returns the current configuration of a bound listener.
func (s *Server) listener(name string) *Listener {
	for _, l := range s.state.Load().Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// Bind opens every listener and the control socket. Serve calls it when
// it was not called before.
func (s *Server) Bind() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) > 0 {
		return nil
	}
	for _, l := range s.state.Load().Listeners {
		ln := l.Listener
		if ln == nil {
			network := l.Network
			if network == "" {
				network = "tcp"
			}
			var err error
			ln, err = net.Listen(network, l.Address)
			if err != nil {
				s.closeListenersLocked()
				return fmt.Errorf("listen %s: %w", l.Name, err)
			}
		}
		s.listeners = append(s.listeners, ln)
	}
	if s.cfg.SocketDir != "" && s.cfg.Display != "" {
		ln, err := listenControl(s.cfg.SocketDir, s.cfg.Display)
		if err != nil {
			s.closeListenersLocked()
			return err
		}
		s.controls[0] = ln
	}
	return nil
}

func (s *Server) closeListenersLocked() {
	for _, l := range s.listeners {
		l.Close()
	}
	s.listeners = nil
}

// Serve accepts until ctx ends or a stop is requested through the control
// socket, then drains: live sessions are told "server shutdown" after
// drain, and Serve returns once every goroutine it started has ended.
func (s *Server) Serve(ctx context.Context, drain time.Duration) error {
	if err := s.Bind(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sessCtx, cancelSessions := context.WithCancel(context.Background())
	defer cancelSessions()

	s.mu.Lock()
	lns := append([]net.Listener(nil), s.listeners...)
	cfgs := s.state.Load().Listeners
	ctl := s.controls[0]
	s.mu.Unlock()

	s.startWeb(sessCtx)
	defer s.stopWeb()
	var accepts sync.WaitGroup
	for i, ln := range lns {
		accepts.Add(1)
		go func(ln net.Listener, name string) {
			defer accepts.Done()
			s.acceptLoop(sessCtx, ln, name)
		}(ln, cfgs[i].Name)
	}
	if ctl != nil {
		accepts.Add(1)
		go func() {
			defer accepts.Done()
			s.controlLoop(sessCtx, ctl, nil)
		}()
	}
	s.log.Info("xpra-edge serving", "version", Version, "display", s.cfg.Display, "listeners", len(lns))

	reason := "shutdown"
	select {
	case <-ctx.Done():
	case reason = <-s.stopReq:
	}
	s.log.Info("stopping", "reason", reason, "sessions", s.SessionCount(), "drain", drain)
	s.closeAll()
	accepts.Wait()
	if drain > 0 && s.SessionCount() > 0 {
		deadline := time.NewTimer(drain)
		tick := time.NewTicker(50 * time.Millisecond)
		for s.SessionCount() > 0 {
			select {
			case <-deadline.C:
			case <-tick.C:
				continue
			}
			break
		}
		deadline.Stop()
		tick.Stop()
	}
	cancelSessions()
	s.conns.Wait()
	s.log.Info("stopped")
	return nil
}

// RequestStop asks Serve to stop, as `xpra stop` does.
func (s *Server) RequestStop(reason string) {
	select {
	case s.stopReq <- reason:
	default:
	}
}

func (s *Server) closeAll() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closeListenersLocked()
		if ln := s.controls[0]; ln != nil {
			ln.Close()
			delete(s.controls, 0)
		}
	})
}

// SessionCount is the number of live relayed sessions.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, name string) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", "listener", name, "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			s.log.Error("accept", "listener", name, "err", err)
			return
		}
		backoff = 0
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.handleConn(ctx, c, name)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

func (s *Server) noteAuthFailure(meta connMeta) {
	s.metrics.authFailed(meta)
	s.bans.failure(hostOf(meta.remote))
}

var errTooManySessions = errors.New("too many sessions")

// reserve takes a session slot for a client address before its backend
// is dialled; release gives it back when the session ends or fails.
func (s *Server) reserve(remote string) (release func(), err error) {
	lim := s.limits()
	ip := hostOf(remote)
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim.MaxSessions > 0 && s.slots >= lim.MaxSessions {
		return nil, fmt.Errorf("%w: the proxy's limit of %d is reached", errTooManySessions, lim.MaxSessions)
	}
	if lim.MaxSessionsPerIP > 0 && s.slotsByIP[ip] >= lim.MaxSessionsPerIP {
		return nil, fmt.Errorf("%w: the limit of %d per address is reached", errTooManySessions, lim.MaxSessionsPerIP)
	}
	s.slots++
	s.slotsByIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.slots--
			if s.slotsByIP[ip]--; s.slotsByIP[ip] <= 0 {
				delete(s.slotsByIP, ip)
			}
		})
	}, nil
}

// register adds a live session and its control socket.
func (s *Server) register(sess *session) error {
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	if s.cfg.SocketDir == "" {
		return nil
	}
	ln, err := listenControl(s.cfg.SocketDir, fmt.Sprintf(":proxy-%d", sess.id))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.controls[sess.id] = ln
	s.mu.Unlock()
	s.conns.Add(1)
	go func() {
		defer s.conns.Done()
		s.controlLoop(context.Background(), ln, sess)
	}()
	return nil
}

func (s *Server) unregister(sess *session) {
	if sess.release != nil {
		sess.release()
	}
	s.mu.Lock()
	delete(s.sessions, sess.id)
	ln := s.controls[sess.id]
	delete(s.controls, sess.id)
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// liveSessions returns the sessions sorted by id.
func (s *Server) liveSessions() []*session {
	s.mu.Lock()
	out := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func hostname() string { return sockdir.Hostname() }
