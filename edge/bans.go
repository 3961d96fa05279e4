package edge

import (
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
	failures []time.Time
	until    time.Time
}

// banList tracks failed logins per address. Bounded: at most maxTracked
// addresses are remembered; the oldest are dropped first.
type banList struct {
	mu      sync.Mutex
	policy  BanPolicy
	entries map[string]*banEntry
	onBan   func(addr string)
	now     func() time.Time
}

const maxTracked = 100_000

func newBanList() *banList {
	return &banList{policy: DefaultBanPolicy, entries: map[string]*banEntry{}, now: time.Now}
}

func (b *banList) setPolicy(p BanPolicy) {
	b.mu.Lock()
	b.policy = p
	b.mu.Unlock()
}

func (b *banList) banned(addr string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[addr]
	if e == nil || e.until.IsZero() {
		return false
	}
	if b.now().Before(e.until) {
		return true
	}
	delete(b.entries, addr)
	return false
}

// failure records one failed login; it reports whether the address is now banned.
func (b *banList) failure(addr string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.policy
	if p.MaxFailures <= 0 {
		return false
	}
	now := b.now()
	e := b.entries[addr]
	if e == nil {
		if len(b.entries) >= maxTracked {
			b.pruneLocked(now)
		}
		e = &banEntry{}
		b.entries[addr] = e
	}
	cut := now.Add(-p.Window)
	kept := e.failures[:0]
	for _, t := range e.failures {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	e.failures = append(kept, now)
	if len(e.failures) >= p.MaxFailures && e.until.IsZero() {
		e.until = now.Add(p.BanTime)
		e.failures = nil
		if b.onBan != nil {
			go b.onBan(addr)
		}
		return true
	}
	return false
}

func (b *banList) pruneLocked(now time.Time) {
	for k, e := range b.entries {
		if !e.until.IsZero() && now.After(e.until) || e.until.IsZero() && (len(e.failures) == 0 || now.Sub(e.failures[len(e.failures)-1]) > b.policy.Window) {
			delete(b.entries, k)
		}
	}
}

// count returns how many addresses are banned now.
func (b *banList) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	now := b.now()
	for _, e := range b.entries {
		if !e.until.IsZero() && now.Before(e.until) {
			n++
		}
	}
	return n
}
