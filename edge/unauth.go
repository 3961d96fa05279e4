package edge

import (
	"sync"
	"sync/atomic"
)

// unauthTable counts connections that have not logged in yet per client
// address key, for Limits.MaxUnauthenticatedPerIP (the proxy-wide count
// is Server.unauth).
type unauthTable struct {
	mu    sync.Mutex
	byKey map[string]int
}

// unauthSlot is one connection's hold on the unauthenticated limits: the
// proxy-wide one from the start, its address's once the address is known
// (after a trusted PROXY header, if any). release gives both back; it may
// be called more than once, from any goroutine.
type unauthSlot struct {
	s    *Server
	key  string // address key counted; "" while none is
	done atomic.Bool
}

// takeUnauth takes a proxy-wide unauthenticated slot; nil when the limit
// is reached.
func (s *Server) takeUnauth() *unauthSlot {
	lim := s.limits()
	if n := s.unauth.Add(1); lim.MaxUnauthenticated > 0 && int(n) > lim.MaxUnauthenticated {
		s.unauth.Add(-1)
		return nil
	}
	return &unauthSlot{s: s}
}

// claimAddr counts the slot against its client address (remote, host:port
// or host); false when the address already holds its limit (the slot is
// then released). Unix listeners have no address to count.
func (u *unauthSlot) claimAddr(remote string) bool {
	key := addrKey(remote)
	if key == "" || u.key == key || u.done.Load() {
		return true
	}
	t := &u.s.unauthIP
	max := u.s.limits().MaxUnauthenticatedPerIP
	t.mu.Lock()
	if u.key != "" {
		t.dropLocked(u.key)
		u.key = ""
	}
	if max > 0 && t.byKey[key] >= max {
		t.mu.Unlock()
		u.release()
		return false
	}
	if t.byKey == nil {
		t.byKey = map[string]int{}
	}
	t.byKey[key]++
	u.key = key
	t.mu.Unlock()
	return true
}

func (t *unauthTable) dropLocked(key string) {
	if t.byKey[key]--; t.byKey[key] <= 0 {
		delete(t.byKey, key)
	}
}

// transfer hands the slot to a new owner: the returned slot holds the
// same counts and this one's release does nothing; nil if it was already
// released.
func (u *unauthSlot) transfer() *unauthSlot {
	if u == nil || !u.done.CompareAndSwap(false, true) {
		return nil
	}
	u.s.unauthIP.mu.Lock()
	defer u.s.unauthIP.mu.Unlock()
	n := &unauthSlot{s: u.s, key: u.key}
	u.key = ""
	return n
}

// release gives the slot back (once).
func (u *unauthSlot) release() {
	if u == nil || !u.done.CompareAndSwap(false, true) {
		return
	}
	u.s.unauth.Add(-1)
	t := &u.s.unauthIP
	t.mu.Lock()
	if u.key != "" {
		t.dropLocked(u.key)
		u.key = ""
	}
	t.mu.Unlock()
}

// addrKey is the key an address is counted and banned by: its host; ""
// for addresses that name no host (unix listeners).
func addrKey(remote string) string {
	h := hostOf(remote)
	if h == "" || len(h) >= 5 && h[:5] == "unix:" {
		return ""
	}
	return h
}
