package edge

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/wsconn"
)

// Login phases, as the phase timer and the logs name them.
const (
	phaseSniff     = "sniff"
	phaseTLS       = "tls handshake"
	phaseHello     = "hello"
	phaseChallenge = "challenge"
	phaseRoute     = "route"
	phaseBackend   = "backend handshake"
	phaseRefusal   = "refusal"
	phaseLinger    = "answer"
)

// phaseGrace is how long after a phase's bound its timer fires. The read
// deadline set at the bound fires first and tells the client why ("login
// timeout"); the timer is what cuts a peer that the deadlines do not
// (a write or a TLS handshake kept pending, a backend being dialled).
const phaseGrace = 250 * time.Millisecond

// routeBound bounds routing, and a session the proxy starts for the user
// (the starter has its own, shorter, timeout; this is the backstop).
const routeBound = 60 * time.Second

// refusalBound bounds a refusal after the failure delay: the disconnect
// (1 s) and the drain that lets the client read it (1 s).
const refusalBound = 2 * time.Second

// lingerBound bounds the wait for a client to close after the proxy
// answered its request (5 s, as xpra).
const lingerBound = 5 * time.Second

// phaseTimer enforces the bound of each login phase by closing: when a
// phase is not over by its bound (plus phaseGrace), the timer closes the
// raw sockets under the connection and the backend leg being dialled, and
// cancels the login's context, whatever the goroutine that owns them is
// blocked on. A phase ends when the next one is armed; stop ends the last.
// It is safe for concurrent use.
type phaseTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	gen     uint64
	phase   string
	at      time.Time     // the phase's bound
	bound   time.Duration // how long it was given
	conns   []net.Conn    // raw sockets, closed on expiry
	cancel  []func()
	cut     string // the phase that ran out, "" while none has
	stopped bool
	onCut   func(phase string)
}

// newPhaseTimer watches c (unwrapped to its raw socket); nothing is armed
// yet.
func newPhaseTimer(c net.Conn, cancel func(), onCut func(string)) *phaseTimer {
	p := &phaseTimer{conns: []net.Conn{rawConn(c)}, onCut: onCut}
	if cancel != nil {
		p.cancel = append(p.cancel, cancel)
	}
	return p
}

// arm starts phase, which must be over by deadline: the previous phase is
// over. It does nothing once the timer expired or was stopped.
func (p *phaseTimer) arm(phase string, deadline time.Time) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut != "" || p.stopped {
		return
	}
	if p.t != nil {
		p.t.Stop()
	}
	p.gen++
	gen := p.gen
	p.phase, p.at, p.bound = phase, deadline, time.Until(deadline)
	p.t = time.AfterFunc(time.Until(deadline)+phaseGrace, func() { p.fire(gen) })
}

// push arms phase until deadline and returns what puts the current phase
// back, with its own deadline (a challenge passed through to the client in
// the middle of the backend handshake).
func (p *phaseTimer) push(phase string, deadline time.Time) (restore func()) {
	if p == nil {
		return func() {}
	}
	p.mu.Lock()
	prev, prevAt := p.phase, p.at
	p.mu.Unlock()
	p.arm(phase, deadline)
	return func() { p.arm(prev, prevAt) }
}

// watch adds a connection to close on expiry (the backend leg once it is
// dialled); when the timer already expired, c is closed now.
func (p *phaseTimer) watch(c net.Conn) {
	if p == nil || c == nil {
		return
	}
	raw := rawConn(c)
	p.mu.Lock()
	if p.cut != "" {
		p.mu.Unlock()
		raw.Close()
		return
	}
	p.conns = append(p.conns, raw)
	p.mu.Unlock()
}

// onExpire adds a function called on expiry (a context's cancel).
func (p *phaseTimer) onExpire(f func()) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.cancel = append(p.cancel, f)
	p.mu.Unlock()
}

func (p *phaseTimer) fire(gen uint64) {
	p.mu.Lock()
	if gen != p.gen || p.stopped || p.cut != "" {
		p.mu.Unlock()
		return
	}
	p.cut = p.phase
	conns, cancels, phase := p.conns, p.cancel, p.phase
	p.mu.Unlock()
	for _, f := range cancels {
		f()
	}
	for _, c := range conns {
		c.Close()
	}
	if p.onCut != nil {
		p.onCut(phase)
	}
}

// stop ends the last phase. It is false when the timer expired first (the
// connection is closed).
func (p *phaseTimer) stop() bool {
	if p == nil {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.t != nil {
		p.t.Stop()
	}
	p.stopped = true
	return p.cut == ""
}

// expired reports whether a phase ran out (the connection is closed).
func (p *phaseTimer) expired() bool {
	ph, _ := p.expiredPhase()
	return ph != ""
}

// expiredPhase is the phase that ran out, "" if none did.
func (p *phaseTimer) expiredPhase() (phase string, bound time.Duration) {
	if p == nil {
		return "", 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut, p.bound
}

// rawConn unwraps the proxy's layers (WebSocket, the web server's and
// sniffing's wrappers, TLS) down to the socket: closing it never waits for
// a writer (tls.Conn.Close would, to send its alert).
func rawConn(c net.Conn) net.Conn {
	for {
		switch w := c.(type) {
		case *wsconn.Conn:
			c = w.NetConn()
		case *metaConn:
			c = w.Conn
		case *bufConn:
			c = w.Conn
		case *tls.Conn:
			c = w.NetConn()
		case *batchedTLS:
			c = w.NetConn()
		case *xconn:
			c = w.Conn
		default:
			return c
		}
	}
}
