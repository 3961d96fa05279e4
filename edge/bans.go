package edge

import (
	"container/list"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// BanPolicy bans an address after MaxFailures failed logins within
// Window, for BanTime. MaxFailures 0 disables banning.
type BanPolicy struct {
	MaxFailures int
	Window      time.Duration
	BanTime     time.Duration
}

// DefaultBanPolicy: 10 failures in 5 minutes ban an address for 15 minutes.
var DefaultBanPolicy = BanPolicy{MaxFailures: 10, Window: 5 * time.Minute, BanTime: 15 * time.Minute}

type banEntry struct {
	key      string
	failures []time.Time // within the window, oldest first (at most MaxFailures)
	until    time.Time   // banned until; zero: not banned
	elem     *list.Element
}

// banList tracks failed logins per address key (an IPv4 address, an IPv6
// /64: one host owns a whole /64). It holds at most max entries, whatever
// arrives: when full, the address that failed longest ago is forgotten
// first, and a banned one only when no other is left; expired entries are
// dropped from the old ends as new ones come. Every operation is O(1)
// (amortized), so a flood of new addresses costs no scan.
type banList struct {
	mu      sync.Mutex
	policy  BanPolicy
	entries map[string]*banEntry
	pending *list.List // not banned, least recently failed first
	bannedL *list.List // banned, earliest ban first (bans last equally long)
	max     int
	now     func() time.Time
}

// maxTracked is the ban table's hard cap.
const maxTracked = 100_000

func newBanList() *banList {
	return &banList{policy: DefaultBanPolicy, entries: map[string]*banEntry{}, pending: list.New(), bannedL: list.New(), max: maxTracked, now: time.Now}
}

// banKey maps a client host to the key it is banned and counted by: IPv6
// addresses by their /64, IPv4 (and IPv4-mapped IPv6) by the address;
// anything else as it is.
func banKey(host string) string {
	h := strings.Trim(host, "[]")
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i] // a zone names the interface, not the host
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return host
	}
	return p.String()
}

func (b *banList) setPolicy(p BanPolicy) {
	b.mu.Lock()
	b.policy = p
	b.mu.Unlock()
}

func (b *banList) banned(addr string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[banKey(addr)]
	if e == nil || e.until.IsZero() {
		return false
	}
	if b.now().Before(e.until) {
		return true
	}
	b.removeLocked(e)
	return false
}

// failure records one failed login; it reports whether the address is now banned.
func (b *banList) failure(addr string) bool {
	banned, _ := b.failureNew(addr)
	return banned
}

// failureNew records one failed login; it reports whether the address is
// now banned, and whether this failure banned it.
func (b *banList) failureNew(addr string) (banned, isNew bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.policy
	if p.MaxFailures <= 0 {
		return false, false
	}
	now := b.now()
	b.expireLocked(now)
	key := banKey(addr)
	e := b.entries[key]
	if e != nil && !e.until.IsZero() {
		if now.Before(e.until) {
			return true, false // already banned (its connection was let in before)
		}
		b.removeLocked(e)
		e = nil
	}
	if e == nil {
		for len(b.entries) >= b.max && b.evictLocked() {
		}
		e = &banEntry{key: key}
		b.entries[key] = e
		e.elem = b.pending.PushBack(e)
	} else {
		b.pending.MoveToBack(e.elem)
	}
	cut := now.Add(-p.Window)
	kept := e.failures[:0]
	for _, t := range e.failures {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	e.failures = append(kept, now)
	if len(e.failures) > p.MaxFailures {
		e.failures = e.failures[len(e.failures)-p.MaxFailures:]
	}
	if len(e.failures) >= p.MaxFailures {
		e.until = now.Add(p.BanTime)
		e.failures = nil
		b.pending.Remove(e.elem)
		e.elem = b.bannedL.PushBack(e)
		return true, true
	}
	return false, false
}

// evictLocked forgets one entry to make room: the least recently failed
// unbanned address, else the earliest ban.
func (b *banList) evictLocked() bool {
	for _, l := range []*list.List{b.pending, b.bannedL} {
		if f := l.Front(); f != nil {
			b.removeLocked(f.Value.(*banEntry))
			return true
		}
	}
	return false
}

// expireLocked drops entries whose failures left the window or whose ban
// ended, from the old end of each list: each is removed once.
func (b *banList) expireLocked(now time.Time) {
	for f := b.pending.Front(); f != nil; f = b.pending.Front() {
		e := f.Value.(*banEntry)
		if len(e.failures) > 0 && now.Sub(e.failures[len(e.failures)-1]) <= b.policy.Window {
			break
		}
		b.removeLocked(e)
	}
	for f := b.bannedL.Front(); f != nil; f = b.bannedL.Front() {
		e := f.Value.(*banEntry)
		if now.Before(e.until) {
			break
		}
		b.removeLocked(e)
	}
}

func (b *banList) removeLocked(e *banEntry) {
	if e.until.IsZero() {
		b.pending.Remove(e.elem)
	} else {
		b.bannedL.Remove(e.elem)
	}
	delete(b.entries, e.key)
}

// count returns how many addresses are banned now.
func (b *banList) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(b.now())
	return b.bannedL.Len()
}
