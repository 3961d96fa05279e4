package edge

import (
	"net"
	"sync"
	"sync/atomic"
)

// unauthTable counts connections that have not logged in yet per client
// address key, for Limits.MaxUnauthenticatedPerIP (the proxy-wide count
// is Server.unauth), and knows the idle HTTP keep-alive connections, which
// hold slots too but give them up to a connection that needs one.
type unauthTable struct {
	mu    sync.Mutex
	byKey map[string]int
	idle  map[*metaConn]struct{}
}

// unauthSlot is one connection's hold on the unauthenticated limits: the
// proxy-wide one from the start, its address's once the address is known
// (after a trusted PROXY header, if any). release gives both back; it may
// be called more than once, from any goroutine.
type unauthSlot struct {
	s        *Server
	maxPerIP int    // the login's Limits.MaxUnauthenticatedPerIP
	key      string // address key counted; "" while none is (guarded by unauthTable.mu)
	done     atomic.Bool
}

// takeUnauth takes a proxy-wide unauthenticated slot, from an idle HTTP
// keep-alive connection (closed) if every slot is taken; nil when none is
// free. lim is the connection's snapshot's.
func (s *Server) takeUnauth(lim Limits) *unauthSlot {
	if n := s.unauth.Add(1); lim.MaxUnauthenticated > 0 && int(n) > lim.MaxUnauthenticated {
		t := &s.unauthIP
		t.mu.Lock()
		v, vkey := t.evictLocked("", false)
		if v != nil && vkey != "" {
			t.dropLocked(vkey)
		}
		t.mu.Unlock()
		if v == nil {
			s.unauth.Add(-1)
			return nil
		}
		s.unauth.Add(-1) // the idle connection's count is now ours
		v.Conn.Close()
	}
	return &unauthSlot{s: s, maxPerIP: lim.MaxUnauthenticatedPerIP}
}

// claimAddr counts the slot against its client address (remote, host:port
// or host); false when the address already holds its limit and none of its
// connections is an idle HTTP keep-alive one to take it from (the slot is
// then released). Unix listeners have no address to count.
func (u *unauthSlot) claimAddr(remote string) bool {
	key := addrKey(remote)
	if key == "" || u.done.Load() {
		return true
	}
	t := &u.s.unauthIP
	max := u.maxPerIP
	t.mu.Lock()
	if u.key == key {
		t.mu.Unlock()
		return true
	}
	if u.key != "" {
		t.dropLocked(u.key)
		u.key = ""
	}
	var victim net.Conn
	if max > 0 && t.byKey[key] >= max {
		v, _ := t.evictLocked(key, true)
		if v == nil {
			t.mu.Unlock()
			u.release()
			return false
		}
		// The idle connection's count for key is now ours; its
		// proxy-wide one is given back (we hold our own).
		u.s.unauth.Add(-1)
		u.key = key
		victim = v.Conn
	} else {
		if t.byKey == nil {
			t.byKey = map[string]int{}
		}
		t.byKey[key]++
		u.key = key
	}
	t.mu.Unlock()
	if victim != nil {
		victim.Close()
	}
	return true
}

// evictLocked picks an idle HTTP keep-alive connection (of address key,
// when matchKey) whose slot is still held, marks that slot given up and
// forgets the connection; the caller takes over its counts and closes it.
func (t *unauthTable) evictLocked(key string, matchKey bool) (*metaConn, string) {
	for mc := range t.idle {
		sl := mc.meta.slot
		if sl == nil || matchKey && sl.key != key || !sl.done.CompareAndSwap(false, true) {
			continue
		}
		delete(t.idle, mc)
		k := sl.key
		sl.key = ""
		return mc, k
	}
	return nil, ""
}

// setIdle records whether an HTTP connection is idle between requests.
func (t *unauthTable) setIdle(mc *metaConn, idle bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !idle {
		delete(t.idle, mc)
		return
	}
	if t.idle == nil {
		t.idle = map[*metaConn]struct{}{}
	}
	t.idle[mc] = struct{}{}
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
	n := &unauthSlot{s: u.s, maxPerIP: u.maxPerIP, key: u.key}
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

// addrKey is the key an address is counted by, as bans key it (an IPv6
// address by its /64); "" for addresses that name no host (unix
// listeners).
func addrKey(remote string) string {
	h := hostOf(remote)
	if h == "" || len(h) >= 5 && h[:5] == "unix:" {
		return ""
	}
	return banKey(h)
}
