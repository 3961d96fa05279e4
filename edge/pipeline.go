package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/sessions"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// Disconnect reasons, as xpra's clients know them.
const (
	reasonAuthFailed     = "authentication failed"
	reasonAuthError      = "authentication error"
	reasonProtocol       = "protocol error"
	reasonLoginTimeout   = "login timeout"
	reasonServerShutdown = "server shutdown"
	reasonServerError    = "server error"
	reasonInvalidRequest = "invalid request"
	reasonPermission     = "permission error"
	reasonSessionMissing = "session not found error"
	reasonDone           = "done"
)

// connMeta is what the edge learned about a connection before the xpra
// stream began.
type connMeta struct {
	// st is the configuration snapshot taken when the connection arrived;
	// everything its login decides comes from it.
	st        *State
	transport auth.Transport
	sni       string // TLS server name
	path      string // WebSocket path (with query)
	display   string // display named in the WebSocket URL query
	remote    string // client address (PROXY protocol aware)
	tls       bool   // arrived over TLS
	listener  *Listener
	// authDone releases the connection's unauthenticated slot.
	authDone func()
	// slot is that slot; an HTTP connection keeps it until it closes or
	// its WebSocket logs in.
	slot *unauthSlot
	// phases closes the connection when a login phase overruns its bound
	// (nil: serveXpra makes one).
	phases *phaseTimer
	// ticketAuth, set by a portal for a WebSocket whose upgrade carried
	// its login and a pending ticket, replaces the listener's module.
	ticketAuth auth.Authenticator
}

// clientError is a failure the client is told about with a disconnect.
type clientError struct {
	reason string
	detail []string
	err    error // what is logged
}

func (e *clientError) Error() string {
	msg := e.reason
	if len(e.detail) > 0 {
		msg += ": " + strings.Join(e.detail, ", ")
	}
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *clientError) Unwrap() error { return e.err }

func tell(reason string, err error, detail ...string) *clientError {
	return &clientError{reason: reason, detail: detail, err: err}
}

// serveXpra runs one xpra client connection to its end.
func (s *Server) serveXpra(ctx context.Context, c net.Conn, br *bufio.Reader, meta connMeta) {
	start := time.Now()
	log := s.log.With("remote", meta.remote, "transport", meta.transport.Kind)
	x := newXconn(c, br)
	// Before the session starts, no record may be larger than the hello
	// limit, compressed or decompressed (the packet reader caps what it
	// inflates at the frame limit), and raw chunks are refused before they
	// are inflated: a client that is not logged in has no use for them,
	// and each would be held, inflated, until its main packet came.
	x.frames.SetMaxSize(uint32(meta.st.Limits.MaxHelloSize))
	x.pr.NoChunks = true
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pt := meta.phases
	if pt == nil {
		pt = newPhaseTimer(c, nil, s.metrics.phaseCut)
	}
	defer pt.stop()
	pt.onExpire(cancel)
	h := &handshake{s: s, st: meta.st, lim: meta.st.Limits, x: x, meta: meta, log: log, start: start, phases: pt}
	sess, err := h.run(ctx)
	if sess != nil && !pt.stop() {
		// Logged in, but past a phase's bound: the timer closed the legs.
		s.unregister(sess)
		sess.b.Close()
		sess, err = nil, errors.New("closed")
	}
	if err != nil {
		if ph, bound := pt.expiredPhase(); ph != "" {
			err = tell(reasonLoginTimeout, fmt.Errorf("%s phase not over within %v: connection closed (%w)", ph, bound.Round(time.Millisecond), err))
		}
		pt.arm(phaseRefusal, time.Now().Add(h.lim.AuthFailDelay+refusalBound))
		h.fail(err)
		h.drain(time.Second)
		c.Close()
		return
	}
	if sess == nil { // a request answered by the proxy itself
		c.Close()
		return
	}
	if meta.authDone != nil {
		meta.authDone()
	}
	s.metrics.handshake.Observe(time.Since(start).Seconds())
	sess.lim = h.lim // the session keeps its login's limits
	s.runSession(ctx, sess)
}

type handshake struct {
	s *Server
	// st is the connection's configuration snapshot (taken on arrival),
	// lim its limits: the login reads no other state.
	st    *State
	lim   Limits
	x     *xconn
	meta  connMeta
	log   *slog.Logger
	start time.Time

	// phases closes the connection when a phase overruns its bound.
	phases *phaseTimer

	client      *peer
	helloFlags  xprawire.Flags
	identity    auth.Identity
	firstHeader bool
	// stripRequests: the request is decided; request keys in any later
	// hello are dropped before it is forwarded.
	stripRequests bool
	// bound is the target a portal ticket's login fixed (nil: route).
	bound *router.Target
}

// fail tells the client why, logs once, and counts.
func (h *handshake) fail(err error) {
	var ce *clientError
	if !errors.As(err, &ce) {
		ce = tell(reasonProtocol, err)
	}
	level := slog.LevelInfo
	if ce.reason == reasonServerError {
		level = slog.LevelWarn
	}
	h.log.Log(context.Background(), level, "connection refused",
		"reason", ce.reason, "detail", strings.Join(ce.detail, ", "), "err", errString(ce.err),
		"duration", time.Since(h.start).Round(time.Millisecond))
	if ce.reason == reasonAuthFailed {
		// xpra waits a second before it says so; so do we.
		time.Sleep(h.lim.AuthFailDelay)
	}
	h.disconnect(ce.reason, ce.detail...)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// disconnect sends a disconnect in the client's encoder, or as plain text
// when its hello was never understood.
func (h *handshake) disconnect(reason string, detail ...string) {
	if h.client == nil {
		_ = h.x.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = h.x.Write([]byte("disconnect: " + strings.Join(append([]string{reason}, detail...), ": ") + "\n"))
		return
	}
	p := xprawire.Packet{"disconnect", reason}
	for _, d := range detail {
		p = append(p, d)
	}
	_ = h.x.sendDeadline(p, time.Second)
}

// readHello reads the next packet, which must be a hello.
func (h *handshake) readHello(deadline time.Time) (xprawire.Caps, error) {
	for {
		_ = h.x.SetReadDeadline(deadline)
		p, hdr, err := h.x.pr.ReadPacket()
		// Drop the payload buffer before waiting again: a client that
		// sent a hello-sized ping and went quiet holds no more than its
		// read buffer until its login timeout.
		h.x.frames.Release()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return xprawire.Caps{}, tell(reasonLoginTimeout, err)
			}
			return xprawire.Caps{}, tell(reasonProtocol, fmt.Errorf("read hello: %w", err))
		}
		if !h.firstHeader {
			h.firstHeader = true
			h.helloFlags = hdr.Flags
		}
		switch p.Type() {
		case "hello":
		case "ping", "ping_echo", "set_deflate":
			continue // harmless before the session starts
		case "disconnect":
			return xprawire.Caps{}, &clientError{reason: "", err: fmt.Errorf("client disconnected during login: %s", packetStrings(p[1:]))}
		default:
			return xprawire.Caps{}, tell(reasonProtocol, fmt.Errorf("expected hello, got %q", p.Type()), "invalid packet")
		}
		if len(p) < 2 {
			return xprawire.Caps{}, tell(reasonProtocol, errors.New("hello without capabilities"))
		}
		d, ok := p[1].(xprawire.Dict)
		if !ok {
			return xprawire.Caps{}, tell(reasonProtocol, errors.New("hello capabilities are not a dict"))
		}
		return xprawire.Caps{Dict: d}, nil
	}
}

func (h *handshake) run(ctx context.Context) (*session, error) {
	lim := h.lim
	h.phases.arm(phaseHello, h.start.Add(lim.LoginTimeout))
	caps, err := h.readHello(h.start.Add(lim.LoginTimeout))
	if err != nil {
		return nil, err
	}
	client, err := newPeer(caps)
	if err != nil {
		return nil, tell(reasonProtocol, err, err.Error())
	}
	h.client = client
	h.x.setPeer(client)
	username, _ := caps.Str("username")
	h.identity.Username = username
	h.log = h.log.With("user", username)

	// `xpra version` is answered on the first hello, without a password,
	// as xpra does; every other request is read from the final hello (the
	// one that answered the challenge), which is the one xpra acts on.
	if requestOf(caps) == "version" {
		// `xpra version` always works, without authentication.
		_ = h.x.sendDeadline(xprawire.Packet{"hello", h.s.versionCaps(client)}, lim.WriteTimeout)
		h.log.Debug("version request answered")
		h.linger()
		return nil, nil
	}

	// Without its shared store a fleet node takes no new login: it
	// could neither count a failure nor record the session. The refusal
	// is an "authentication error", which bans nobody.
	if err := h.s.registry.Health(); err != nil {
		return nil, tell(reasonAuthError, err, "the proxy's shared store is unreachable, try again later")
	}
	if err := h.authenticate(ctx, caps); err != nil {
		return nil, err
	}
	req := requestOf(h.client.caps)
	// Logged in: the connection no longer counts as unauthenticated (in
	// total and for its address) before the client hears of its session,
	// so a client that logs in again at once finds its slot free.
	if h.meta.authDone != nil {
		h.meta.authDone()
	}
	caps = h.client.caps

	switch req {
	case "":
	case "info", "id", "connect_test":
		scope := scopeNetwork
		_ = h.x.sendDeadline(xprawire.Packet{"hello", h.s.answerRequest(req, h.client, scope, nil)}, lim.WriteTimeout)
		h.log.Info("request answered", "request", req, "module", h.identity.Module)
		h.linger()
		return nil, nil
	case "stop":
		return nil, tell(reasonPermission, errors.New("stop requested over the network"), "stopping the proxy is only allowed on its local control socket")
	default:
		return nil, tell(reasonInvalidRequest, fmt.Errorf("unsupported request %q", req))
	}
	h.phases.arm(phaseRoute, time.Now().Add(routeBound))
	var target router.Target
	if h.bound != nil {
		target = *h.bound // a portal ticket chose the session
	} else if target, err = h.route(ctx, caps); err != nil {
		return nil, err
	}
	if !caps.Truthy("connect", true) {
		// The client only wants to know where its session is (xpra
		// start --attach=no, connect tests): the session is chosen, or
		// started, but not connected to.
		hello := h.s.answerRequest("connect_test", h.client, scopeNetwork, nil)
		hello.Set("display", displayForClient(target))
		if target.Scheme == "unix" {
			hello.Set("socket-path", target.Address)
		}
		if sns, ok := startRequest(caps); ok {
			if mode, ok := sns["mode"]; ok {
				hello.Set("mode", mode)
			}
		}
		_ = h.x.sendDeadline(xprawire.Packet{"hello", hello}, lim.WriteTimeout)
		h.log.Info("session located without connecting", "display", target.Display)
		h.linger()
		return nil, nil
	}
	// The requests are the proxy's business: none reaches the backend,
	// in this hello or in one that answers a backend's challenge.
	h.client.caps = withoutRequests(h.client.caps)
	h.stripRequests = true
	// The dial (its own timeout) and the backend's hello: the timer closes
	// the client and the backend leg being dialled past both.
	dial := h.st.Dialer.Timeout
	if dial <= 0 {
		dial = defaultDialTimeout
	}
	h.phases.arm(phaseBackend, time.Now().Add(dial+lim.BackendHandshakeTimeout))
	return h.connectBackend(ctx, target)
}

// drain reads and discards what the client still sends, for at most d,
// so that closing does not reset the connection (a reset makes the
// client's kernel drop our disconnect before the client reads it).
func (h *handshake) drain(d time.Duration) {
	_ = h.x.SetReadDeadline(time.Now().Add(d))
	var buf [512]byte
	for {
		if _, err := h.x.Read(buf[:]); err != nil {
			return
		}
	}
}

// linger keeps the connection open briefly so the client reads our answer
// and closes first, as xpra does.
func (h *handshake) linger() {
	h.phases.arm(phaseLinger, time.Now().Add(lingerBound))
	_ = h.x.SetReadDeadline(time.Now().Add(lingerBound))
	var buf [512]byte
	for {
		if _, err := h.x.Read(buf[:]); err != nil {
			return
		}
	}
}

// requestNames are the requests a hello can make as "<name>_request"
// keys (xpra 3.1 to 6.x: server_core, server_base and the proxy).
var requestNames = []string{"version", "info", "id", "connect_test", "stop", "detach", "exit", "screenshot", "event", "print", "command"}

// requestOf returns the request a hello makes ("" for a normal session):
// a non-empty "request", else the first "<name>_request" that is true as
// xpra reads it (Python truthiness: "no" and "x" are true, "", 0, empty
// lists false).
func requestOf(c xprawire.Caps) string {
	if r, ok := c.Str("request"); ok && r != "" {
		return r
	}
	for _, r := range requestNames {
		if c.Truthy(r+"_request", false) {
			return r
		}
	}
	return ""
}

// isRequestKey reports whether a hello key asks the server for something
// other than a session: "request", and any "..._request" or "...-request"
// ("stop_request", "full-version-request", "connect_test_request", and
// the misspelt "stop_request_request" that xpra 3.1's server_base reads).
func isRequestKey(k string) bool {
	return k == "request" || strings.HasSuffix(k, "_request") || strings.HasSuffix(k, "-request")
}

// withoutRequests returns c without its request keys.
func withoutRequests(c xprawire.Caps) xprawire.Caps {
	d := make(xprawire.Dict, 0, len(c.Dict))
	for _, kv := range c.Dict {
		if !isRequestKey(keyString(kv.Key)) {
			d = append(d, kv)
		}
	}
	return xprawire.Caps{Dict: d}
}

func (h *handshake) authenticate(ctx context.Context, caps xprawire.Caps) error {
	l := h.meta.listener
	if l == nil || l.Auth == nil {
		return tell(reasonSessionMissing, errors.New("no authentication module on this listener"), "no sessions found")
	}
	module := l.Auth
	if h.meta.ticketAuth != nil {
		module = h.meta.ticketAuth
	}
	lim := h.lim
	login := module.Begin(h.identity.Username, h.meta.transport)
	ch, err := login.Challenge(caps.StrList("digest"), caps.StrList("salt-digest"))
	if err != nil {
		var re *auth.RefusedError
		if errors.As(err, &re) {
			return tell(reasonAuthError, err, re.Reason)
		}
		return tell(reasonAuthError, err)
	}
	if ch == nil {
		if caps.Bool("challenge", false) {
			// The client holds a password but none is needed: a fake
			// challenge, as xpra 6 sends, so it does not give up.
			deadline := time.Now().Add(lim.ChallengeTimeout)
			h.phases.arm(phaseChallenge, deadline)
			if err := h.sendChallenge(auth.FakeChallenge(caps.StrList("digest"), caps.StrList("salt-digest"))); err != nil {
				return err
			}
			caps, err = h.readHello(deadline)
			if err != nil {
				return err
			}
			if err := h.updateClient(caps); err != nil {
				return err
			}
		}
		id, err := login.Verify(ctx, nil, nil)
		if err != nil {
			return h.authFailed(err)
		}
		h.identity = id
		h.s.metrics.loginOK(id.Module)
		return nil
	}
	deadline := time.Now().Add(lim.ChallengeTimeout)
	h.phases.arm(phaseChallenge, deadline)
	if err := h.sendChallenge(ch); err != nil {
		return err
	}
	caps, err = h.readHello(deadline)
	if err != nil {
		return err
	}
	if err := h.updateClient(caps); err != nil {
		return err
	}
	response, okResponse := credentialBytes(caps, "challenge_response")
	clientSalt, okSalt := credentialBytes(caps, "challenge_client_salt")
	if !okResponse || !okSalt {
		h.s.noteAuthFailure(h.meta)
		return tell(reasonAuthFailed, errors.New("challenge response or client salt is neither bytes nor a latin-1 str"))
	}
	if len(response) == 0 {
		return tell(reasonAuthFailed, errors.New("no challenge response"))
	}
	id, err := login.Verify(ctx, response, clientSalt)
	if err != nil {
		return h.authFailed(err)
	}
	h.identity = id
	if bl, ok := login.(BoundLogin); ok {
		t, ok := bl.Target()
		if !ok {
			return tell(reasonSessionMissing, errors.New("the portal ticket names no session"), "no sessions found")
		}
		h.bound = &t
	}
	h.s.metrics.loginOK(id.Module)
	h.log.Debug("authenticated", "module", id.Module)
	return nil
}

// authFailed classifies a Verify error: wrong credentials count toward
// bans and are told "authentication failed"; a module's own trouble (a
// database it cannot open) is an "authentication error" and bans nobody.
func (h *handshake) authFailed(err error) error {
	var re *auth.RefusedError
	switch {
	case errors.As(err, &re):
		return tell(reasonAuthError, err, re.Reason)
	case errors.Is(err, auth.ErrFailed):
		h.s.noteAuthFailure(h.meta)
		return tell(reasonAuthFailed, err)
	default:
		return tell(reasonAuthError, err, "the authentication module failed, try again later")
	}
}

func (h *handshake) sendChallenge(ch *auth.Challenge) error {
	authCaps := any("")
	if h.client.encoding == xprawire.RencodePlus {
		authCaps = xprawire.Dict{}
	}
	p := xprawire.Packet{"challenge", ch.Salt, authCaps, ch.Digest, ch.SaltDigest, ch.Prompt}
	if err := h.x.sendDeadline(p, h.lim.WriteTimeout); err != nil {
		return &clientError{err: fmt.Errorf("send challenge: %w", err)}
	}
	return nil
}

// updateClient takes the client's newer (full) hello.
func (h *handshake) updateClient(caps xprawire.Caps) error {
	if h.stripRequests {
		caps = withoutRequests(caps)
	}
	p, err := newPeer(caps)
	if err != nil {
		return tell(reasonProtocol, err, err.Error())
	}
	h.client = p
	h.x.setPeer(p)
	return nil
}

// credentialBytes reads a credential the client computed over bytes
// (challenge_response, challenge_client_salt). A bytes value is taken as it
// is. A str value is taken as xpra takes it: one byte per code point
// (latin-1). xpra-html5 v21 makes its client salt from random char codes
// 0–255, sends it as a str (UTF-8 on the wire) and computes its HMAC over the
// char codes, so the UTF-8 bytes of the str would never match. A str with a
// code point above 255 cannot have been computed that way: ok is false.
func credentialBytes(c xprawire.Caps, key string) (b []byte, ok bool) {
	v, present := c.Get(key)
	if !present {
		return nil, true
	}
	switch x := v.(type) {
	case []byte:
		return x, true
	case string:
		return latin1(x)
	}
	return nil, false
}

// latin1 maps each code point of s (all ≤ 255) to one byte.
func latin1(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}

// clientDisplay is the display the client asked for: the hello's display
// (a string; a dict from HTML5 client 18+ counts only through its "" key),
// else the one in the WebSocket URL, else a display= in the page URL that
// an HTML5 client sends as its argv (xpra-html5 v21 keeps its page's
// display= to itself and sends only the screen geometry as "display").
func (h *handshake) clientDisplay(caps xprawire.Caps) string {
	if d := h.declaredDisplay(caps); d != "" {
		return d
	}
	if h.meta.display != "" {
		return h.meta.display
	}
	return argvDisplay(caps)
}

// argvDisplay is the display= query parameter of the first argv entry when
// that entry is an http or https URL (a browser client's page address).
func argvDisplay(caps xprawire.Caps) string {
	argv := caps.StrList("argv")
	if len(argv) == 0 || len(argv[0]) > 4096 {
		return ""
	}
	u, err := url.Parse(argv[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	return u.Query().Get("display")
}

// declaredDisplay is the display named in the hello itself.
func (h *handshake) declaredDisplay(caps xprawire.Caps) string {
	if v, ok := caps.Dict.Get("display"); ok {
		switch d := v.(type) {
		case string:
			return d
		case []byte:
			return string(d)
		case xprawire.Dict:
			if s, ok := (xprawire.Caps{Dict: d}).Str(""); ok {
				return s
			}
		}
	}
	// xpra 6.x clients send "display" as their screen description and
	// name the session they want in "session": {"display": ":N"}.
	if v, ok := caps.Dict.Get("session"); ok {
		if d, ok := v.(xprawire.Dict); ok {
			if s, ok := (xprawire.Caps{Dict: d}).Str("display"); ok {
				return s
			}
		}
	}
	return ""
}

func (h *handshake) route(ctx context.Context, caps xprawire.Caps) (router.Target, error) {
	id := h.identity
	req := router.Request{
		SNI:      h.meta.sni,
		Path:     h.meta.path,
		User:     id.Username,
		Display:  h.clientDisplay(caps),
		Declared: id.Displays,
		Local:    id.LocalSessions && len(id.Displays) == 0,
		Options:  id.SessionOptions,
	}
	needUID := req.Local
	for _, d := range id.Displays {
		if strings.HasPrefix(strings.TrimSpace(d), ":") {
			needUID = true
		}
	}
	if needUID {
		uid, err := h.s.resolveUID(id)
		if err != nil {
			return router.Target{}, tell(reasonAuthError, err, "cannot access sessions")
		}
		req.UID = uid
	}
	starter := h.st.Starter
	sns, asked := startRequest(caps)
	if req.Local && starter != nil && asked {
		return h.startSession(ctx, starter, sns, req)
	}
	t, err := h.st.Router.Route(req)
	if err != nil {
		var rf *router.Refusal
		if errors.As(err, &rf) {
			if req.Local && starter != nil && rf.Detail == "no displays found" {
				return h.startSession(ctx, starter, nil, req)
			}
			return router.Target{}, tell(rf.Reason, err, rf.Detail)
		}
		return router.Target{}, tell(reasonServerError, err)
	}
	return t, nil
}

// displayForClient is what a client is told of its target's display: a
// display name (":7" of "tcp://user@host:1/7"), never a backend's user,
// host or port ("" when the entry names no display).
func displayForClient(t router.Target) string {
	if t.Scheme == "unix" || strings.HasPrefix(t.Display, ":") {
		return t.Display
	}
	u, err := url.Parse(t.Display)
	if err != nil {
		return ""
	}
	if d := router.NormalizeDisplay(u.Path); strings.HasPrefix(d, ":") {
		return d
	}
	return ""
}

// startRequest reads the client's start-new-session dict.
func startRequest(caps xprawire.Caps) (map[string]any, bool) {
	v, ok := caps.Dict.Get("start-new-session")
	if !ok {
		return nil, false
	}
	d, ok := v.(xprawire.Dict)
	if !ok {
		return nil, false
	}
	m := make(map[string]any, len(d))
	for _, kv := range d {
		if k := keyString(kv.Key); k != "" {
			m[k] = kv.Value
		}
	}
	return m, true
}

// startSession starts a new session as the user and targets it.
func (h *handshake) startSession(ctx context.Context, starter SessionStarter, sns map[string]any, req router.Request) (router.Target, error) {
	name := h.identity.UID
	if name == "" {
		name = h.identity.Username
	}
	started := time.Now()
	sess, err := starter.StartSession(ctx, name, sns)
	if err != nil {
		detail := "failed to start a new session"
		if errors.Is(err, sessions.ErrTooMany) {
			detail += ": too many sessions for this user"
		}
		return router.Target{}, tell(reasonServerError, fmt.Errorf("start a session for %s: %w", name, err), detail)
	}
	h.log.Info("started a new session", "display", sess.Display, "took", time.Since(started).Round(time.Millisecond))
	return router.Target{Scheme: "unix", Address: sess.Socket, Display: sess.Display, Options: req.Options}, nil
}

// resolveUID finds the system uid whose local sessions an identity may
// use: the module's uid, else the user's own. Root is never a target when
// the proxy runs as root, and a name that does not resolve is an error.
func (s *Server) resolveUID(id auth.Identity) (int, error) {
	name := id.UID
	if name == "" {
		name = id.Username
	}
	if name == "" {
		return 0, errors.New("no user name to find sessions for")
	}
	uid, err := lookupUID(name)
	if err != nil {
		return 0, err
	}
	if uid == 0 && s.isRoot {
		return 0, errors.New("sessions of root are not proxied")
	}
	if auth.Unreachable(uid, s.isRoot) {
		return 0, fmt.Errorf("uid %d is a system account (below UID_MIN %d): its sessions are not proxied", uid, auth.UIDMin())
	}
	return uid, nil
}

func lookupUID(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("unknown system user %q: %w", name, err)
	}
	return strconv.Atoi(u.Uid)
}

// maxReasonLen bounds what packetStrings returns: a peer's disconnect
// reasons become a session's end reason, which is logged, sent on and
// kept by the shared store.
const maxReasonLen = 1024

// packetStrings joins a peer's disconnect reasons with ": ", at most
// maxReasonLen bytes of valid UTF-8; a container is described, not
// printed.
func packetStrings(items []any) string {
	var b strings.Builder
	for i, it := range items {
		if b.Len() >= maxReasonLen {
			break
		}
		if i > 0 {
			b.WriteString(": ")
		}
		var s string
		switch v := it.(type) {
		case string:
			s = v
		case []byte:
			s = string(v[:min(len(v), maxReasonLen)])
		case []any:
			s = fmt.Sprintf("[list of %d]", len(v))
		case xprawire.Dict:
			s = fmt.Sprintf("{dict of %d}", len(v))
		default:
			s = fmt.Sprint(v)
		}
		b.WriteString(s[:min(len(s), maxReasonLen-b.Len())])
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}
