package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/xpra-edge/xpra-edge/auth"
)

// bufConn replays what sniffing buffered, then reads the connection; the
// sniffed bytes are never read twice from the socket.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// sniffLen is how many bytes sniffing needs to tell the protocol: the
// longest HTTP method with its space ("OPTIONS ", "CONNECT "), and the size
// of an xpra packet header. Every xpra and HTTP client sends at least this
// much at once.
const sniffLen = 8

// acmeTLSALPN is the ALPN protocol of TLS-ALPN-01 challenges; the TLS
// config answers them during the handshake, after which we hang up.
const acmeTLSALPN = "acme-tls/1"

// handleConn sniffs the first bytes of an accepted connection and hands
// it on: TLS is terminated and sniffed again, 'P' is xpra, anything else
// is HTTP (files, health, WebSocket upgrades).
func (s *Server) handleConn(ctx context.Context, c net.Conn, listenerName string) {
	l := s.listener(listenerName)
	if l == nil {
		c.Close()
		return
	}
	lim := s.limits()
	slot := s.takeUnauth()
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
	meta := connMeta{remote: c.RemoteAddr().String(), listener: l, authDone: doneAuth, slot: slot}
	if l.Network == "unix" {
		// Local clients are told apart by their uid (the kernel's), so one
		// local user's failures ban and their connections count only that
		// user. No ':' in the key: it is not a host:port.
		meta.remote = unixPeerKey(c, l.Address)
	}
	if s.bans.banned(hostOf(meta.remote)) {
		s.log.Info("connection refused", "remote", meta.remote, "reason", "banned")
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("disconnect: " + reasonAuthFailed + ": too many failed logins from this address, try again later\n"))
		c.Close()
		return
	}
	deadline := time.Now().Add(lim.SniffTimeout)
	_ = c.SetDeadline(deadline)
	br := bufio.NewReaderSize(c, readBufferSize)
	first, err := br.Peek(1)
	if err != nil {
		s.log.Debug("connection closed before sending anything", "remote", meta.remote, "err", err)
		c.Close()
		return
	}
	if hasProxyHeader(br) {
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
			if s.bans.banned(hostOf(meta.remote)) {
				s.refuse(c, meta, "too many failed logins from this address, try again later")
				return
			}
		}
		if first, err = br.Peek(1); err != nil {
			c.Close()
			return
		}
	}
	if trusted && !slot.claimAddr(meta.remote) {
		s.log.Warn("connection refused", "remote", meta.remote, "reason", "too many unauthenticated connections from this address")
		c.Close()
		return
	}
	var conn net.Conn = c
	if first[0] == 0x16 { // a TLS handshake record
		if !l.acceptsTLS() || s.cfg.TLS == nil {
			s.refuse(c, meta, "TLS is not enabled on this port")
			return
		}
		tc := tls.Server(&bufConn{Conn: c, r: br}, s.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			s.log.Info("tls handshake failed", "remote", meta.remote, "err", err)
			c.Close()
			return
		}
		st := tc.ConnectionState()
		if st.NegotiatedProtocol == acmeTLSALPN {
			tc.Close() // a TLS-ALPN-01 validation, answered in the handshake
			return
		}
		meta.sni = strings.ToLower(st.ServerName)
		meta.tls = true
		conn = tc
		br = bufio.NewReaderSize(tc, readBufferSize)
		if _, err = br.Peek(1); err != nil {
			s.log.Debug("tls connection closed before sending anything", "remote", meta.remote, "err", err)
			tc.Close()
			return
		}
	}
	// What tells xpra from HTTP is in the first sniffLen bytes; read them
	// under the sniff deadline too, or a client that sends one byte and
	// waits would hold this goroutine and an unauthenticated slot forever.
	if _, err := br.Peek(sniffLen); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.log.Info("connection closed", "remote", meta.remote, "reason", "too slow to tell its protocol")
			conn.Close()
			return
		}
		// fewer bytes and the end of the stream: judged by what it sent
	}
	// Peek may have moved the buffered bytes (after a PROXY header was
	// consumed): take the first byte again.
	if first, err = br.Peek(1); err != nil {
		conn.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch {
	case first[0] == 'P' && !looksLikePOST(br):
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
		s.serveXpra(ctx, conn, br, meta)
	case looksLikeHTTP(br):
		if !meta.tls && !l.accepts("ws") && !l.accepts("http") {
			s.refuse(conn, meta, "this port requires TLS")
			return
		}
		s.serveHTTP(&bufConn{Conn: conn, r: br}, meta, deadline)
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

func looksLikePOST(br *bufio.Reader) bool {
	b, _ := br.Peek(5)
	return string(b) == "POST "
}

// looksLikeHTTP accepts a request line's method.
func looksLikeHTTP(br *bufio.Reader) bool {
	b, _ := br.Peek(8)
	for _, m := range []string{"GET ", "HEAD ", "POST ", "PUT ", "OPTIONS ", "DELETE ", "PATCH ", "CONNECT ", "TRACE "} {
		if strings.HasPrefix(string(b), m) || len(b) < len(m) && strings.HasPrefix(m, string(b)) && len(b) > 0 {
			return true
		}
	}
	return false
}

// proxyV2Sig starts a PROXY protocol v2 header.
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

func hasProxyHeader(br *bufio.Reader) bool {
	b, _ := br.Peek(len(proxyV2Sig))
	return strings.HasPrefix(string(b), "PROXY ") || string(b) == proxyV2Sig
}

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
