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
	WriteTimeout            time.Duration // every write to a leg (a peer accepting nothing that long ends its session)
	IdleTimeout             time.Duration // 0: none (xpra pings keep live sessions busy)
	MaxHelloSize            int           // bytes, before authentication
	MaxPacketSize           int           // bytes, after the hello
	AuthFailDelay           time.Duration // before "authentication failed"
	MaxSessions             int           // live relayed sessions; 0: unlimited
	MaxSessionsPerIP        int           // live sessions per client address; 0: unlimited
	// MaxSessionsPerUser bounds a user's live sessions; 0: unlimited. With
	// a shared registry (a fleet) it counts the user's sessions on every
	// node.
	MaxSessionsPerUser int
	MaxUnauthenticated int // connections not yet logged in (sniffing, login)
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
	WriteTimeout:            30 * time.Second,
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
	d.MaxSessions, d.MaxSessionsPerIP, d.MaxSessionsPerUser = l.MaxSessions, l.MaxSessionsPerIP, l.MaxSessionsPerUser
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
	// BanStore counts failed logins and holds bans (State.Bans is the
	// policy); nil: this process's own (NewMemoryBans). A fleet passes one
	// that every node shares.
	BanStore BanStore
	// Registry admits and records sessions; nil: this process's own
	// (NewMemoryRegistry). A fleet passes one that every node shares.
	Registry SessionRegistry
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
	listeners []boundListener
	// live is every connection from accept to close, in every phase.
	live     map[*tracked]struct{}
	byConn   map[net.Conn]*tracked
	serving  bool // Serve runs the accept loops (a listener added by Reload gets one)
	draining bool // no new network connections
	final    bool // no new connections at all
	// loops counts the accept and control-socket loops still running.
	loops atomic.Int64

	unauth    atomic.Int64
	unauthIP  unauthTable // unauthenticated connections per address
	stopReq   chan string
	isRoot    bool
	bans      BanStore
	registry  SessionRegistry
	closeOnce sync.Once
	web       *webServer
	// backendEnc remembers the backends that refused a client's encoder
	// and took the other generation's (edge/bridge.go).
	backendEnc encoderMemo
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
		live:      map[*tracked]struct{}{},
		byConn:    map[net.Conn]*tracked{},
		stopReq:   make(chan string, 1),
		isRoot:    os.Geteuid() == 0,
		bans:      cfg.BanStore,
		registry:  cfg.Registry,
	}
	if s.bans == nil {
		s.bans = NewMemoryBans()
	}
	if s.registry == nil {
		s.registry = NewMemoryRegistry()
	}
	s.metrics = newMetrics(s.bans.Count, func() bool { return s.registry.Health() == nil })
	s.metrics.watchUnauth(s.unauth.Load)
	st := cfg.State
	st.Limits = st.Limits.withDefaults()
	s.state.Store(&st)
	return s, nil
}

// Reload swaps the reloadable state; live sessions are not touched.
// Listeners are matched by name: a listener added to the configuration is
// bound (a listener that cannot be bound refuses the whole reload, with
// the reason), and removing a listener or changing its address is refused
// (that needs a restart).
func (s *Server) Reload(st State) error {
	if st.Router == nil {
		return errors.New("edge: reload without a router")
	}
	if st.Dialer == nil {
		st.Dialer = &BackendDialer{}
	}
	for _, l := range st.Listeners {
		if l.Name == "" {
			l.Name = l.Address
		}
	}
	old := s.state.Load()
	oldByName := map[string]*Listener{}
	for _, l := range old.Listeners {
		oldByName[l.Name] = l
	}
	newByName := map[string]*Listener{}
	for _, l := range st.Listeners {
		if _, dup := newByName[l.Name]; dup {
			return fmt.Errorf("edge: reload: two listeners named %q", l.Name)
		}
		newByName[l.Name] = l
	}
	for _, l := range old.Listeners {
		if _, ok := newByName[l.Name]; !ok {
			return fmt.Errorf("edge: reload cannot remove listener %q; restart to change listeners", l.Name)
		}
	}
	var added []*Listener
	for _, l := range st.Listeners {
		o, ok := oldByName[l.Name]
		if !ok {
			added = append(added, l)
			continue
		}
		if networkOf(o) != networkOf(l) || o.Address != l.Address {
			return fmt.Errorf("edge: reload cannot move listener %q from %s to %s; restart to change a listener's address", l.Name, o.Address, l.Address)
		}
	}
	var bound []boundListener
	closeBound := func() {
		for _, bl := range bound {
			bl.ln.Close()
		}
	}
	for _, l := range added {
		ln, err := bindListener(l)
		if err != nil {
			closeBound()
			return fmt.Errorf("edge: reload cannot add listener %q: %w", l.Name, err)
		}
		bound = append(bound, boundListener{name: l.Name, ln: ln})
	}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		closeBound()
		return errors.New("edge: reload while stopping")
	}
	s.listeners = append(s.listeners, bound...)
	serving := s.serving
	st.Limits = st.Limits.withDefaults()
	s.state.Store(&st) // before the new listeners accept: they look themselves up in it
	s.mu.Unlock()
	for _, bl := range bound {
		s.log.Info("listener added", "listener", bl.name, "addr", bl.ln.Addr().String())
		if serving {
			s.loops.Add(1)
			go func(bl boundListener) {
				defer s.loops.Add(-1)
				s.acceptLoop(bl.ln, bl.name)
			}(bl)
		}
	}
	return nil
}

func networkOf(l *Listener) string {
	if l.Network == "" {
		return "tcp"
	}
	return l.Network
}

// snapshot is the reloadable state as it is now. It is read once per
// connection, when the connection arrives (acceptLoop, a control socket's
// accept), and carried with it (connMeta.st, handshake.st): sniffing, TLS,
// the hello, the challenge, routing and the backend handshake of one login
// all decide from that one snapshot, so a reload never changes the rules
// halfway through a login. TestStateIsReadOnlyOnArrival checks that nothing
// else reads the live state.
func (s *Server) snapshot() *State { return s.state.Load() }

func (s *Server) nextID() int { return int(s.idSeq.Add(1)) }

// listener returns a listener's configuration in st.
func (st *State) listener(name string) *Listener {
	for _, l := range st.Listeners {
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
	for _, l := range s.snapshot().Listeners {
		ln, err := bindListener(l)
		if err != nil {
			s.closeListenersLocked()
			return err
		}
		s.listeners = append(s.listeners, boundListener{name: l.Name, ln: ln})
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

// boundListener is a bound socket and the name of the listener it serves.
type boundListener struct {
	name string
	ln   net.Listener
}

// bindListener binds l (or takes its pre-opened socket).
func bindListener(l *Listener) (net.Listener, error) {
	if l.Listener != nil {
		return l.Listener, nil
	}
	ln, err := net.Listen(networkOf(l), l.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Name, err)
	}
	return ln, nil
}

func (s *Server) closeListenersLocked() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
	s.listeners = nil
}

// Serve accepts until ctx ends or a stop is requested through the control
// socket, then shuts down (see shutdown), stops the session registry
// (RegistryStop) and returns within drain + 1 s.
func (s *Server) Serve(ctx context.Context, drain time.Duration) error {
	if err := s.Bind(); err != nil {
		return err
	}
	s.mu.Lock()
	lns := append([]boundListener(nil), s.listeners...)
	ctl := s.controls[0]
	s.serving = true
	s.mu.Unlock()

	webCtx, cancelWeb := context.WithCancel(context.Background())
	defer cancelWeb()
	s.startWeb(webCtx)
	regCtx, stopRegistry := context.WithCancelCause(context.Background())
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		s.registry.Run(regCtx, s)
	}()
	for _, bl := range lns {
		s.loops.Add(1)
		go func(bl boundListener) {
			defer s.loops.Add(-1)
			s.acceptLoop(bl.ln, bl.name)
		}(bl)
	}
	if ctl != nil {
		s.loops.Add(1)
		go func() {
			defer s.loops.Add(-1)
			s.controlLoop(context.Background(), ctl, nil)
		}()
	}
	s.log.Info("xpra-edge serving", "version", Version, "display", s.cfg.Display, "listeners", len(lns))

	reason := "shutdown"
	select {
	case <-ctx.Done():
	case reason = <-s.stopReq:
	}
	s.log.Info("stopping", "reason", reason, "sessions", s.SessionCount(), "drain", drain)
	bound := time.Now().Add(drain + time.Second)
	s.shutdown(drain)
	// The registry records what is left (a fleet node: its sessions' ends
	// and its stop) in the rest of the second, and Serve waits for it no
	// longer: the bound holds whatever its store does.
	regDeadline := bound.Add(-registrySlack)
	if least := time.Now().Add(registryMin); regDeadline.Before(least) {
		regDeadline = least
	}
	stopRegistry(RegistryStop{Deadline: regDeadline})
	select {
	case <-regDone:
	case <-time.After(time.Until(bound)):
		s.log.Warn("the session registry was still stopping at the shutdown bound")
	}
	s.log.Info("stopped")
	return nil
}

// The registry's share of the shutdown's second: it must be done
// registrySlack before Serve's bound (for Serve and the process to end),
// and gets at least registryMin when the shutdown itself ran late.
const (
	registrySlack = 150 * time.Millisecond
	registryMin   = 25 * time.Millisecond
)

// Phases of a tracked connection.
type connPhase uint8

const (
	phaseLogin   connPhase = iota // sniffing, TLS, hello, challenge, routing, backend handshake
	phaseSession                  // relayed
	phaseControl                  // a local control-socket request
)

// tracked is one live connection in the server's registry. Its context is
// the connection's: cancelled when the server ends it.
type tracked struct {
	c      net.Conn
	cancel context.CancelFunc
	phase  connPhase // under Server.mu
	ended  bool      // under Server.mu: closed by shutdown
}

type trackedKey struct{}

// track registers a live connection from its accept (or upgrade) until
// done is called. ok is false when the server no longer takes it.
func (s *Server) track(c net.Conn, phase connPhase) (ctx context.Context, done func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final || (s.draining && phase != phaseControl) {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &tracked{c: c, cancel: cancel, phase: phase}
	s.live[tr] = struct{}{}
	s.byConn[c] = tr
	return context.WithValue(ctx, trackedKey{}, tr), func() {
		s.mu.Lock()
		delete(s.live, tr)
		if s.byConn[c] == tr {
			delete(s.byConn, c)
		}
		s.mu.Unlock()
		cancel()
	}, true
}

// enterSessionLocked marks the tracked connection under c (a TLS or
// sniffing wrapper of it, or itself) as relayed: shutdown lets it run for
// the drain instead of ending it at once. It is false when shutdown has
// already ended that connection.
func (s *Server) enterSessionLocked(c net.Conn) bool {
	for c != nil {
		if tr := s.byConn[c]; tr != nil {
			if tr.ended {
				return false
			}
			tr.phase = phaseSession
			return true
		}
		switch w := c.(type) {
		case *tls.Conn:
			c = w.NetConn()
		case *batchedTLS:
			c = w.NetConn()
		case *bufConn:
			c = w.Conn
		default:
			c = nil
		}
	}
	return true // not tracked (tests driving a session directly)
}

// endTracked cancels the tracked connections that match, closing those
// that are not sessions (a session ends itself when its context ends,
// telling its peers). It returns how many matched.
func (s *Server) endTracked(match func(*tracked) bool, closeSessions bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for tr := range s.live {
		if !match(tr) {
			continue
		}
		n++
		tr.cancel()
		if tr.phase != phaseSession || closeSessions {
			// Under the lock, so that a login cannot become a session
			// (register) after this decision and before the close.
			tr.ended = true
			tr.c.Close()
		}
	}
	return n
}

// waitIdle waits until no connection or loop is left, or until deadline.
func (s *Server) waitIdle(deadline time.Time) bool {
	for {
		s.mu.Lock()
		n := len(s.live)
		s.mu.Unlock()
		if n == 0 && s.loops.Load() == 0 {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shutdown stops accepting, ends connections still logging in at once,
// lets sessions run for drain, tells them "server shutdown", closes
// everything it tracks and waits: it returns within drain + 1 s whatever
// the peers do.
func (s *Server) shutdown(drain time.Duration) {
	s.closeAll()
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	if n := s.endTracked(func(tr *tracked) bool { return tr.phase == phaseLogin }, false); n > 0 {
		s.log.Info("ended connections still logging in", "count", n)
	}
	webDone := make(chan struct{})
	go func() { defer close(webDone); s.stopWeb() }()

	if drain > 0 {
		deadline := time.Now().Add(drain)
		for s.SessionCount() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The end: sessions are told (each within tellTimeout) and closed,
	// everything else is closed now.
	// 800 ms of the second, the rest being slack for a loaded machine: a
	// session takes up to tellTimeout to tell its peers, then lingers up to
	// disconnectLinger for its client to close; past 600 ms every
	// connection still here is closed.
	end := time.Now().Add(800 * time.Millisecond)
	s.mu.Lock()
	s.final = true
	s.mu.Unlock()
	s.endTracked(func(*tracked) bool { return true }, false)
	if !s.waitIdle(end.Add(-200 * time.Millisecond)) {
		s.endTracked(func(*tracked) bool { return true }, true)
		if !s.waitIdle(end.Add(-50 * time.Millisecond)) {
			s.mu.Lock()
			n := len(s.live)
			s.mu.Unlock()
			s.log.Warn("connections still ending at exit", "count", n)
		}
	}
	select {
	case <-webDone:
	case <-time.After(time.Until(end)):
	}
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

func (s *Server) acceptLoop(ln net.Listener, name string) {
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
		// The connection's one view of the configuration, for all of its login.
		st := s.snapshot()
		ctx, done, ok := s.track(c, phaseLogin)
		if !ok {
			c.Close()
			continue
		}
		go func() {
			defer done()
			s.handleConn(ctx, c, name, st)
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

// banned reports whether a client address is banned.
func (s *Server) banned(remote string) bool { return s.bans.Banned(banKey(hostOf(remote))) }

// Health is nil while the server's shared state works (always, without a
// fleet); otherwise new logins are refused.
func (s *Server) Health() error { return s.registry.Health() }

// banStoreTimeout bounds the recording of one failed login.
const banStoreTimeout = 3 * time.Second

func (s *Server) noteAuthFailure(meta connMeta) {
	s.metrics.authFailed(meta)
	s.countFailure(meta.remote, meta.st.Bans)
}

// countFailure counts one failed login (xpra or portal) of a client
// address toward its ban under policy p, in the shared ban store.
func (s *Server) countFailure(remote string, p BanPolicy) {
	key := banKey(hostOf(remote))
	ctx, cancel := context.WithTimeout(context.Background(), banStoreTimeout)
	defer cancel()
	banned, err := s.bans.Failure(ctx, key, p)
	if err != nil {
		s.log.Warn("failed login not counted", "addr", key, "err", err)
		return
	}
	if banned {
		s.metrics.bans.Inc()
		s.log.Warn("address banned after repeated failed logins", "addr", key, "for", p.BanTime)
	}
}

var errTooManySessions = errors.New("too many sessions")

// reserve takes a session slot for a client address before its backend
// is dialled, under the login's limits; release gives it back when the
// session ends or fails.
func (s *Server) reserve(lim Limits, remote string) (release func(), err error) {
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
	if !s.enterSessionLocked(sess.c.Conn) {
		s.mu.Unlock()
		return errors.New("edge: the server is shutting down")
	}
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	if sess.adm != nil {
		sess.adm.Relaying()
	}
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
	s.loops.Add(1)
	go func() {
		defer s.loops.Add(-1)
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
