package fleet

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// freezeProxy forwards loopback TCP connections to a server; freeze makes
// the connections open at that moment go silent both ways without closing
// them (as a network that drops their packets: no FIN, no RST), while new
// connections work.
type freezeProxy struct {
	ln     net.Listener
	target string
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []*atomic.Bool // each connection's frozen flag
	open   []net.Conn
}

func startFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		close(p.done)
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.open {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezeProxy) addr() string { return p.ln.Addr().String() }

func (p *freezeProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		frozen := new(atomic.Bool)
		p.mu.Lock()
		p.conns = append(p.conns, frozen)
		p.open = append(p.open, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, frozen)
		go p.pipe(c, s, frozen)
	}
}

// pipe copies src to dst until either fails; once frozen it reads and
// drops everything.
func (p *freezeProxy) pipe(dst, src net.Conn, frozen *atomic.Bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !frozen.Load() {
				_ = dst.Close()
			}
			return
		}
	}
}

// freeze silences every connection open now.
func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.conns {
		f.Store(true)
	}
}
