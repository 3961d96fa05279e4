package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// bufConn replays what sniffing buffered, then reads the connection
// directly: the sniffing buffer is not kept under TLS or the web server,
// so a leg reads through one buffer (the xpra frame reader's) whatever is
// layered under it.
type bufConn struct {
	net.Conn
	pending []byte

	// Under a batchedTLS: the records of one large write, collected
	// (nil when not batching).
	bmu   sync.Mutex
	batch *[]byte
}

// maxBatch bounds the records collected before they are written.
const maxBatch = 256 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch+tlsRecordMax); return &b }}

// tlsRecordMax is a TLS record's largest size on the wire (16 KiB of
// data, header, padding and tag, with room to spare).
const tlsRecordMax = 16<<10 + 512

// WriteConn: writes go to the connection (collected only under a
// batchedTLS, which writes to it, never through it).
func (c *bufConn) WriteConn() net.Conn { return c.Conn }

// Write writes p, or collects it while a batch is open.
func (c *bufConn) Write(p []byte) (int, error) {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	if c.batch == nil {
		return c.Conn.Write(p)
	}
	if len(*c.batch) > 0 && len(*c.batch)+len(p) > maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	*c.batch = append(*c.batch, p...)
	return len(p), nil
}

func (c *bufConn) flushLocked() error {
	b := *c.batch
	*c.batch = b[:0]
	_, err := c.Conn.Write(b)
	return err
}

// begin collects what is written until end, which writes it.
func (c *bufConn) begin() {
	c.bmu.Lock()
	c.batch = batchPool.Get().(*[]byte)
	c.bmu.Unlock()
}

func (c *bufConn) end() error {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	var err error
	if len(*c.batch) > 0 {
		err = c.flushLocked()
	}
	*c.batch = (*c.batch)[:0]
	batchPool.Put(c.batch)
	c.batch = nil
	return err
}

// batchedTLS is the server side of a TLS connection whose large writes
// cost few syscalls: crypto/tls writes every record (16 KiB) with a
// syscall of its own; here the records of one write larger than a record
// are collected under it and written 256 KiB at a time (one copy, which
// costs far less than the syscalls it saves).
type batchedTLS struct {
	*tls.Conn
	raw *bufConn
}

func (c *batchedTLS) Write(p []byte) (int, error) {
	if len(p) <= 16<<10 {
		return c.Conn.Write(p)
	}
	c.raw.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.raw.end(); err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}

// replay hands the bytes br holds to a bufConn on c; br is not read again.
func replay(c net.Conn, br *bufio.Reader) *bufConn {
	b, _ := br.Peek(br.Buffered())
	return &bufConn{Conn: c, pending: bytes.Clone(b)}
}

func (c *bufConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// What the first bytes of a connection say it is.
type kind uint8

const (
	kindUnknown kind = iota
	kindXpra         // an xpra packet header: 'P' and a protocol flags byte
	kindTLS          // a TLS handshake record
	kindHTTP         // an HTTP request line (files, health, WebSocket upgrades)
	kindProxyV1      // a PROXY protocol v1 header ("PROXY ")
	kindProxyV2      // a PROXY protocol v2 header (its 12-byte signature)
)

func (k kind) String() string {
	return [...]string{"unknown", "xpra", "tls", "http", "proxy-v1", "proxy-v2"}[k]
}

// ErrNeedMore is classify's answer when the prefix could still become
// more than one kind: read more bytes and ask again.
var ErrNeedMore = errors.New("edge: need more bytes to tell the protocol")

// errUnknownProtocol: no prefix of a kind we serve.
var errUnknownProtocol = errors.New("edge: unknown protocol")

// maxSniff is the most classify ever needs: the PROXY v2 signature, the
// longest HTTP method with its space ("OPTIONS ", "CONNECT ").
const maxSniff = len(proxyV2Sig)

// httpMethods are the request-line starts that mean HTTP.
var httpMethods = []string{"GET ", "HEAD ", "POST ", "PUT ", "OPTIONS ", "DELETE ", "PATCH ", "CONNECT ", "TRACE "}

// xpraFlagsMask holds every protocol flag bit an xpra header may carry
// (rencode, cipher, yaml, flush, rencodeplus); a byte with any other bit
// set is not an xpra flags byte ("PUT ", "PATCH ", "POST ", "PROXY " all
// have 0x40 set in their second byte).
const xpraFlagsMask = byte(xprawire.FlagRencode | xprawire.FlagCipher | xprawire.FlagYAML | xprawire.FlagFlush | xprawire.FlagRencodePlus)

// classify tells what a connection is from its first bytes. It is pure:
// the same prefix always gets the same answer, and once it answers with a
// kind, every longer prefix gets the same kind. ErrNeedMore means more
// bytes are needed (never past maxSniff); errUnknownProtocol means no
// kind we serve starts like this.
func classify(prefix []byte) (kind, error) {
	if len(prefix) == 0 {
		return kindUnknown, ErrNeedMore
	}
	switch prefix[0] {
	case 0x16:
		return kindTLS, nil
	case xprawire.Magic:
		if len(prefix) < 2 {
			return kindUnknown, ErrNeedMore
		}
		if prefix[1]&^xpraFlagsMask == 0 {
			return kindXpra, nil
		}
	}
	need := false
	for _, t := range tokens {
		ok, more := matchPrefix(prefix, t.tok)
		if ok {
			return t.kind, nil
		}
		need = need || more
	}
	if need {
		return kindUnknown, ErrNeedMore
	}
	return kindUnknown, errUnknownProtocol
}

// token is a fixed start classify knows besides TLS and xpra.
type token struct {
	tok  string
	kind kind
}

var tokens = func() []token {
	ts := []token{{"PROXY ", kindProxyV1}, {proxyV2Sig, kindProxyV2}}
	for _, m := range httpMethods {
		ts = append(ts, token{m, kindHTTP})
	}
	return ts
}()

// matchPrefix reports whether prefix starts with tok (ok), or is a proper
// prefix of it (more).
func matchPrefix(prefix []byte, tok string) (ok, more bool) {
	if len(prefix) >= len(tok) {
		return string(prefix[:len(tok)]) == tok, false
	}
	return false, string(prefix) == tok[:len(prefix)]
}

// sniff reads (under the connection's deadline) until classify answers:
// only the bytes it needs, never more than maxSniff, all left buffered.
// A stream that ends first is judged by what it sent.
func sniff(br *bufio.Reader) (kind, error) {
	n := 1
	for {
		b, err := br.Peek(n)
		k, cerr := classify(b)
		if cerr != ErrNeedMore {
			return k, cerr
		}
		if len(b) >= maxSniff {
			return kindUnknown, errUnknownProtocol // cannot happen: every token is shorter
		}
		if err != nil {
			if len(b) == 0 || isTimeout(err) {
				return kindUnknown, err
			}
			return kindUnknown, errUnknownProtocol // ended inside a prefix
		}
		// Take what already arrived, else wait for one more byte.
		n = min(max(len(b)+1, br.Buffered()), maxSniff)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acmeTLSALPN is the ALPN protocol of TLS-ALPN-01 challenges; the TLS
// config answers them during the handshake, after which we hang up.
const acmeTLSALPN = "acme-tls/1"

// handleConn sniffs the first bytes of an accepted connection and hands
// it on: a PROXY header (from trusted balancers) is consumed, TLS is
// terminated and sniffed again, then xpra goes to the pipeline and HTTP to
// the web server (files, health, WebSocket upgrades).
//
// st is the configuration snapshot taken when the connection arrived: the
// whole login runs against it.
func (s *Server) handleConn(ctx context.Context, c net.Conn, listenerName string, st *State) {
	l := st.listener(listenerName)
	if l == nil {
		c.Close()
		return
	}
	lim := st.Limits
	slot := s.takeUnauth(lim)
	if slot == nil {
		s.log.Warn("connection refused", "remote", c.RemoteAddr().String(), "reason", "too many unauthenticated connections")
		c.Close()
		return
	}
	defer slot.release()
	doneAuth := slot.release
	// Counted by address at once, unless a trusted PROXY header may name
	// the real client (counted below, once it is read).
	trusted := l.trustsProxy(c.RemoteAddr())
	if l.Network != "unix" && !trusted && !slot.claimAddr(c.RemoteAddr().String()) {
		s.log.Warn("connection refused", "remote", c.RemoteAddr().String(), "reason", "too many unauthenticated connections from this address")
		c.Close()
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	meta := connMeta{st: st, remote: c.RemoteAddr().String(), listener: l, authDone: doneAuth, slot: slot}
	if l.Network == "unix" {
		// Local clients are told apart by their uid (the kernel's), so one
		// local user's failures ban and their connections count only that
		// user. No ':' in the key: it is not a host:port.
		meta.remote = unixPeerKey(c, l.Address)
	}
	if s.banned(meta.remote) {
		s.log.Info("connection refused", "remote", meta.remote, "reason", "banned")
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("disconnect: " + reasonAuthFailed + ": too many failed logins from this address, try again later\n"))
		c.Close()
		return
	}
	deadline := time.Now().Add(lim.SniffTimeout)
	_ = c.SetDeadline(deadline)
	// The deadline tells a slow peer why; the phase timer closes it at the
	// bound whatever it keeps pending (a write, a TLS handshake).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pt := newPhaseTimer(c, cancel, s.metrics.phaseCut)
	defer pt.stop()
	pt.arm(phaseSniff, deadline)
	br := bufio.NewReaderSize(c, readBufferSize)
	var conn net.Conn = c
	// sniffed reports a sniffing failure; false means the connection is
	// done with.
	sniffed := func(k kind, err error) (kind, bool) {
		switch {
		case err == nil:
			return k, true
		case isTimeout(err) || pt.expired():
			s.log.Info("connection closed", "remote", meta.remote, "reason", "too slow to tell its protocol")
			conn.Close()
		case errors.Is(err, errUnknownProtocol):
			s.refuse(conn, meta, "invalid protocol for this port")
		default:
			s.log.Debug("connection closed before sending anything", "remote", meta.remote, "err", err)
			conn.Close()
		}
		return k, false
	}
	k, ok := sniffed(sniff(br))
	if !ok {
		return
	}
	if k == kindProxyV1 || k == kindProxyV2 {
		if !l.trustsProxy(c.RemoteAddr()) {
			s.refuse(c, meta, "PROXY protocol header from an untrusted address")
			return
		}
		real, err := readProxyHeader(br)
		if err != nil {
			s.refuse(c, meta, "invalid PROXY protocol header")
			return
		}
		if real != "" {
			meta.remote = real
			if s.banned(meta.remote) {
				s.refuse(c, meta, "too many failed logins from this address, try again later")
				return
			}
		}
		if k, ok = sniffed(sniff(br)); !ok {
			return
		}
	}
	if trusted && !slot.claimAddr(meta.remote) {
		s.log.Warn("connection refused", "remote", meta.remote, "reason", "too many unauthenticated connections from this address")
		c.Close()
		return
	}
	if k == kindTLS {
		if !l.acceptsTLS() || s.cfg.TLS == nil {
			s.refuse(c, meta, "TLS is not enabled on this port")
			return
		}
		raw := replay(c, br)
		tc := tls.Server(raw, s.cfg.TLS)
		pt.arm(phaseTLS, deadline)
		if err := tc.HandshakeContext(ctx); err != nil {
			if pt.expired() {
				s.log.Info("connection closed", "remote", meta.remote, "reason", "tls handshake too slow", "bound", lim.SniffTimeout)
			} else {
				s.log.Info("tls handshake failed", "remote", meta.remote, "err", err)
			}
			c.Close()
			return
		}
		pt.arm(phaseSniff, deadline)
		st := tc.ConnectionState()
		if st.NegotiatedProtocol == acmeTLSALPN {
			tc.Close() // a TLS-ALPN-01 validation, answered in the handshake
			return
		}
		meta.sni = strings.ToLower(st.ServerName)
		meta.tls = true
		conn = &batchedTLS{Conn: tc, raw: raw}
		br = bufio.NewReaderSize(tc, readBufferSize)
		if k, ok = sniffed(sniff(br)); !ok {
			return
		}
	}
	_ = c.SetDeadline(time.Time{})
	switch k {
	case kindXpra:
		if !l.accepts(pick(meta.tls, "xpra", "ssl")) {
			s.refuse(conn, meta, pick(meta.tls, "this port requires TLS", "this port does not take xpra over TLS"))
			return
		}
		meta.transport = auth.Transport{Kind: "tcp", Remote: meta.remote}
		switch {
		case meta.tls:
			meta.transport.Kind, meta.transport.Encrypted = "ssl", true
		case l.Network == "unix":
			meta.transport.Kind, meta.transport.Encrypted = "unix", true
		}
		meta.phases = pt
		s.serveXpra(ctx, conn, br, meta)
	case kindHTTP:
		if !meta.tls && !l.accepts("ws") && !l.accepts("http") {
			s.refuse(conn, meta, "this port requires TLS")
			return
		}
		// The web server bounds the request with its own deadlines (the
		// first header by the sniff deadline); an upgraded WebSocket gets
		// a phase timer of its own.
		pt.stop()
		s.serveHTTP(replay(conn, br), meta, deadline)
	default:
		s.refuse(conn, meta, "invalid protocol for this port")
	}
}

// refuse answers a connection it cannot serve with xpra's plain-text
// disconnect and closes it.
func (s *Server) refuse(c net.Conn, meta connMeta, why string) {
	s.log.Info("connection refused", "remote", meta.remote, "reason", why)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("disconnect: " + reasonProtocol + ": " + why + "\n"))
	c.Close()
}

// proxyV2Sig starts a PROXY protocol v2 header.
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// readProxyHeader consumes a PROXY header and returns the client address
// it names ("" for a LOCAL/UNKNOWN header, which keeps the peer's own).
func readProxyHeader(br *bufio.Reader) (string, error) {
	h, err := proxyproto.Read(br)
	if err != nil {
		return "", err
	}
	if h.Command.IsLocal() || h.SourceAddr == nil {
		return "", nil
	}
	return h.SourceAddr.String(), nil
}

// pick returns plain or secure by whether the connection is over TLS.
func pick(tls bool, plain, secure string) string {
	if tls {
		return secure
	}
	return plain
}

// unixPeerKey names a unix-socket client for logs, limits and bans:
// "uid-UID@PATH", or "uid-unknown@PATH" without SO_PEERCRED.
func unixPeerKey(c net.Conn, path string) string {
	uid := "unknown"
	if uc, ok := c.(*net.UnixConn); ok {
		if rc, err := uc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
					uid = strconv.Itoa(int(cred.Uid))
				}
			})
		}
	}
	return "uid-" + uid + "@" + path
}
