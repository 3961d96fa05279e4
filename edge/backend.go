package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// maxEarlyPackets bounds what a backend may send before its hello.
const maxEarlyPackets = 64

// BackendDialer opens the transport to a backend; ws and wss are layered
// by the WebSocket dialer when one is configured.
type BackendDialer struct {
	// TLS is the client configuration for ssl and wss backends (roots,
	// client certificates). nil means the system roots.
	TLS *tls.Config
	// WebSocket wraps an established conn in a client WebSocket.
	WebSocket func(ctx context.Context, c net.Conn, host, path string) (net.Conn, error)
	Timeout   time.Duration
}

// defaultDialTimeout bounds a backend dial when BackendDialer.Timeout is 0.
const defaultDialTimeout = 10 * time.Second

// Dial connects to t. encrypted reports whether a password may be sent
// to it xor-ed (TLS or a local socket).
func (d *BackendDialer) Dial(ctx context.Context, t router.Target) (c net.Conn, encrypted bool, err error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nd net.Dialer
	switch t.Scheme {
	case "unix":
		c, err = nd.DialContext(ctx, "unix", t.Address)
		return c, true, err
	case "tcp", "ws":
		c, err = nd.DialContext(ctx, "tcp", t.Address)
	case "ssl", "wss":
		cfg := d.tlsConfig(t.Address)
		td := tls.Dialer{NetDialer: &nd, Config: cfg}
		c, err = td.DialContext(ctx, "tcp", t.Address)
		encrypted = true
	default:
		return nil, false, fmt.Errorf("unsupported backend scheme %q", t.Scheme)
	}
	if err != nil {
		return nil, false, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if t.Scheme == "ws" || t.Scheme == "wss" {
		if d.WebSocket == nil {
			c.Close()
			return nil, false, errors.New("websocket backends are not enabled")
		}
		host, _, _ := net.SplitHostPort(t.Address)
		wc, werr := d.WebSocket(ctx, c, host, t.Path)
		if werr != nil {
			c.Close()
			return nil, false, fmt.Errorf("websocket handshake: %w", werr)
		}
		c = wc
	}
	return c, encrypted, nil
}

func (d *BackendDialer) tlsConfig(addr string) *tls.Config {
	var cfg *tls.Config
	if d.TLS != nil {
		cfg = d.TLS.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err == nil {
			cfg.ServerName = strings.Trim(host, "[]")
		}
	}
	return cfg
}

// connectBackend dials the target, runs the backend's side of the
// handshake (answering or passing on its challenge), forwards its hello to
// the client and returns the session ready to relay.
func (h *handshake) connectBackend(ctx context.Context, t router.Target) (*session, error) {
	s := h.s
	lim := h.lim
	release, err := s.reserve(lim, h.meta.remote)
	if err != nil {
		return nil, tell(reasonServerError, err, "session limit reached, try again later")
	}
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	id, uuid := s.nextID(), newUUID()
	actx, cancel := context.WithTimeout(ctx, admitTimeout)
	adm, err := s.registry.Admit(actx, SessionRecord{ID: id, UUID: uuid, User: h.identity.Username,
		Remote: h.meta.remote, Target: t.String(), Started: time.Now()}, lim)
	cancel()
	if err != nil {
		if errors.Is(err, errTooManySessions) {
			return nil, tell(reasonServerError, err, "session limit reached, try again later")
		}
		return nil, tell(reasonAuthError, err, "the proxy's shared store is unreachable, try again later")
	}
	defer func() {
		if !ok {
			adm.End("handshake failed", 0, 0)
		}
	}()
	opts, err := parseSessionOptions(t.Options)
	if err != nil {
		return nil, tell(reasonServerError, err, "invalid session options")
	}
	opts.username = t.Username
	if opts.username == "" {
		opts.username = h.identity.Username
	}
	enc, err := xprawire.EncodingForFlags(h.helloFlags)
	if err != nil || !contains(h.client.encoders, enc.String()) {
		enc = h.client.encoding
	}
	var (
		bc        net.Conn
		b         *xconn
		encrypted bool
		sess      *session
		info      map[string]any
		deadline  time.Time
		first     xprawire.Packet
		firstErr  error
	)
	defer func() {
		if !ok && bc != nil {
			bc.Close()
		}
	}()
	// bridging: the backend refused the client's encoder, so it is of the
	// other generation; the proxy writes it the other encoder and offers
	// it every encoder and compressor it decodes itself.
	clientEnc := enc
	bridging := false
	if e, ok := s.backendEnc.get(t.String(), clientEnc); ok {
		enc, bridging = e, !contains(h.client.encoders, e.String())
	}
	var mkHello func(keepChallenge bool) (xprawire.Dict, error)
	for attempt := 0; ; attempt++ {
		dialStart := time.Now()
		bc, encrypted, err = h.st.Dialer.Dial(ctx, t)
		s.metrics.observeDial(time.Since(dialStart), err)
		if err != nil {
			return nil, tell(reasonSessionMissing, fmt.Errorf("dial %s: %w", t, err), "failed to connect to display")
		}
		h.phases.watch(bc)
		b = newXconn(bc, nil)
		b.frames.SetMaxSize(uint32(lim.MaxPacketSize))
		b.pw.Encoding = enc
		if sess == nil {
			sess = s.newSession(h, t, b, id, uuid)
			sess.release = release
			sess.adm = adm
			info = sess.helloInfo(h.client)
		}
		sess.b = b
		backendEnc, isBridging, isEncrypted := enc, bridging, encrypted
		mkHello = func(keepChallenge bool) (xprawire.Dict, error) {
			d := clientHelloForBackend(h.client, keepChallenge, isEncrypted, info, opts)
			if isBridging {
				bridgeHelloCaps(&d, h.client, backendEnc)
				var err error
				if d, err = translateCaps(d, h.client.encoding, backendEnc); err != nil {
					return nil, tell(reasonInvalidRequest, fmt.Errorf("client hello for the backend: %w", err), "the client's capabilities cannot be translated for the backend")
				}
			}
			return d, nil
		}
		deadline = time.Now().Add(lim.BackendHandshakeTimeout)
		_ = bc.SetWriteDeadline(deadline)
		hello, err := mkHello(false)
		if err != nil {
			return nil, err
		}
		if err := b.send(xprawire.Packet{"hello", hello}); err != nil {
			return nil, tell(reasonSessionMissing, fmt.Errorf("send hello to backend: %w", err), "failed to connect to display")
		}
		first, firstErr = b.readPacket(deadline)
		alt := alternateEncoding(enc)
		if firstErr == nil || attempt > 0 || !refusedEncoding(firstErr) {
			break
		}
		bc.Close()
		// A client that also speaks the other encoder needs no bridge.
		bridging = !contains(h.client.encoders, alt.String())
		sess.log.Info("backend refused the client's packet encoder; trying the other generation's", "encoder", enc.String(), "backend_encoder", alt.String(), "bridging", bridging, "err", firstErr)
		enc = alt
	}
	if firstErr == nil {
		s.backendEnc.set(t.String(), clientEnc, enc)
	}
	answered := false
	var early []xprawire.Packet
	for {
		p, err := first, firstErr
		if p == nil && err == nil {
			p, err = b.readPacket(deadline)
		}
		first, firstErr = nil, nil
		if err != nil {
			var te *xprawire.DisconnectTextError
			if errors.As(err, &te) {
				return nil, tell(reasonServerError, fmt.Errorf("backend refused: %w", err), "backend refused the connection: "+te.Text)
			}
			return nil, tell(reasonSessionMissing, fmt.Errorf("backend handshake: %w", err), "failed to connect to display")
		}
		if bridging && p.Type() != "hello" {
			typ := p.Type()
			if p, err = translatePacket(p, enc, h.client.encoding); err != nil {
				return nil, tell(reasonServerError, fmt.Errorf("backend %s packet: %w", typ, err))
			}
		}
		switch p.Type() {
		case "hello":
			d, isDict := xprawire.Dict(nil), false
			if len(p) > 1 {
				d, isDict = p[1].(xprawire.Dict)
			}
			if !isDict {
				return nil, tell(reasonServerError, errors.New("backend hello without capabilities"))
			}
			server, err := newPeer(xprawire.Caps{Dict: d})
			if err != nil {
				return nil, tell(reasonServerError, fmt.Errorf("backend: %w", err))
			}
			_ = bc.SetDeadline(time.Time{})
			sess.server = server
			sess.client = h.client
			b.setPeer(server)
			sess.bridged = needBridge(h.client, server)
			// Registered before the client learns of it, so that a
			// session the client sees is always listed and stoppable.
			if err := s.register(sess); err != nil {
				sess.log.Warn("control socket", "err", err)
			}
			fwd := serverHelloForClient(server, h.client, info)
			if sess.bridged {
				setCodecCaps(&fwd, h.client.encoders, h.client.compressors)
				if fwd, err = translateCaps(fwd, server.encoding, h.client.encoding); err != nil {
					s.unregister(sess)
					return nil, tell(reasonServerError, fmt.Errorf("backend hello: %w", err))
				}
			}
			if err := h.x.sendDeadline(xprawire.Packet{"hello", fwd}, lim.WriteTimeout); err != nil {
				s.unregister(sess)
				return nil, &clientError{err: fmt.Errorf("forward hello: %w", err)}
			}
			for _, ep := range early {
				if err := h.x.sendDeadline(ep, lim.WriteTimeout); err != nil {
					s.unregister(sess)
					return nil, &clientError{err: fmt.Errorf("forward early packets: %w", err)}
				}
			}
			// The handshake is over: its deadlines end here, and the client
			// now sends what the backend decodes, so its packet limit rises
			// from the hello limit to the session's.
			_ = h.x.SetDeadline(time.Time{})
			h.x.frames.SetMaxSize(uint32(lim.MaxPacketSize))
			ok = true
			return sess, nil
		case "challenge":
			if answered {
				return nil, tell(reasonAuthError, errors.New("backend sent a second challenge"), "authentication with the backend failed")
			}
			answered = true
			if err := h.backendChallenge(p, t, b, encrypted, mkHello); err != nil {
				return nil, err
			}
		case "disconnect":
			reason := packetStrings(p[1:])
			return nil, tell(reasonServerError, fmt.Errorf("backend disconnected: %s", reason), "backend: "+reason)
		default:
			// xpra 3.1.3 servers may announce a window (window-metadata,
			// new-window) before their hello reaches us: keep those for
			// the client, within bounds, and forward them after the hello.
			if len(early) >= maxEarlyPackets {
				return nil, tell(reasonServerError, fmt.Errorf("backend sent over %d packets before its hello", maxEarlyPackets))
			}
			early = append(early, p)
		}
	}
}

// backendChallenge answers the backend's challenge with the stored
// password, or passes it to the client and forwards the client's answer.
func (h *handshake) backendChallenge(p xprawire.Packet, t router.Target, b *xconn, encrypted bool, mkHello func(keepChallenge bool) (xprawire.Dict, error)) error {
	ch, err := xpraclient.ParseChallenge(p)
	if err != nil {
		return tell(reasonServerError, err)
	}
	if t.HasPassword {
		resp, salt, err := auth.Respond([]byte(t.Password), ch, encrypted)
		if err != nil {
			return tell(reasonAuthError, fmt.Errorf("answer backend challenge: %w", err), "authentication with the backend failed")
		}
		hello, err := mkHello(false)
		if err != nil {
			return err
		}
		hello.Set("challenge_response", resp)
		hello.Set("challenge_client_salt", salt)
		return h.sendBackend(b, hello)
	}
	// Pass the challenge through: the client answers it with the password
	// of its backend session. Not when the answer would carry the password
	// itself (xor, des) across an unencrypted backend network.
	if !encrypted && reversibleDigest(ch.Digest) {
		return tell(reasonAuthError, fmt.Errorf("backend %s asks for the password as %q over an unencrypted connection", t, ch.Digest),
			"the backend asks for the password in a reversible form over an unencrypted connection")
	}
	chDeadline := time.Now().Add(h.lim.ChallengeTimeout)
	restore := h.phases.push(phaseChallenge, chDeadline)
	if err := h.x.sendDeadline(p, h.lim.WriteTimeout); err != nil {
		return &clientError{err: fmt.Errorf("forward challenge: %w", err)}
	}
	caps, err := h.readHello(chDeadline)
	if err != nil {
		return err
	}
	restore()
	if err := h.updateClient(caps); err != nil {
		return err
	}
	hello, err := mkHello(true)
	if err != nil {
		return err
	}
	return h.sendBackend(b, hello)
}

// reversibleDigest reports whether a challenge digest lets whoever reads
// the answer recover the password (xpra's xor, and des with the salt).
func reversibleDigest(d string) bool {
	d = strings.ToLower(strings.TrimSpace(d))
	return d == "xor" || d == "des"
}

func (h *handshake) sendBackend(b *xconn, hello xprawire.Dict) error {
	if err := b.send(xprawire.Packet{"hello", hello}); err != nil {
		return tell(reasonSessionMissing, fmt.Errorf("send hello to backend: %w", err), "failed to connect to display")
	}
	return nil
}

func anyBytes(v any) []byte {
	switch b := v.(type) {
	case []byte:
		return b
	case string:
		return []byte(b)
	}
	return nil
}

// parseSessionOptions reads the whitelisted options that reach the
// backend. compression is the documented alias of compression_level; both
// are integers 0..9 (xpra 3.1.3's proxy crashes on them; we parse them).
func parseSessionOptions(o map[string]string) (sessionOptions, error) {
	var so sessionOptions
	for _, k := range []string{"compression", "compression_level"} {
		v, ok := o[k]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 9 {
			return so, fmt.Errorf("session option %s=%q: want an integer from 0 to 9", k, v)
		}
		so.hasCompressionLevel, so.compressionLevel = true, int64(n)
	}
	return so, nil
}
