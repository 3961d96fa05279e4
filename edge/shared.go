package edge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The state a fleet of nodes shares (failed logins and bans, live
// sessions) sits behind two interfaces. Their default implementations
// keep it in this process, as a single node always did; package fleet
// implements them on PostgreSQL, and cmd wires one or the other. edge
// never imports a database driver.

// BanStore counts failed logins and holds bans, by address key (an IPv4
// address, an IPv6 /64, a unix listener's uid key: see banKey).
type BanStore interface {
	// Banned reports whether key is banned now. It is asked for every
	// accepted connection, before a byte is read: it answers from memory
	// and never blocks on I/O.
	Banned(key string) bool
	// Failure records one failed login by key under p and reports
	// whether this failure banned it (a new ban, not one already in
	// force). It may do I/O; ctx bounds it.
	Failure(ctx context.Context, key string, p BanPolicy) (banned bool, err error)
	// Count is how many keys are banned now (a metric).
	Count() int
}

// SessionRecord describes a session being admitted: what the registry
// records of it.
type SessionRecord struct {
	ID      int    // this node's id (":proxy-ID")
	UUID    string // unique in the fleet
	User    string
	Remote  string // client address (PROXY protocol aware)
	Target  string
	Started time.Time
}

// SessionStats are a live session's byte counts, for a registry's
// periodic update.
type SessionStats struct {
	UUID                   string
	FromClient, FromServer int64
}

// Node is what a registry sees of this server: its live sessions' counts,
// and a way to end one of them.
type Node interface {
	SessionStats() []SessionStats
	// StopSession ends the live session with this uuid as `xpra-edge stop`
	// does (reason "socket request"); false when there is none.
	StopSession(uuid, reason string) bool
}

// SessionRegistry admits sessions and records them from their start to
// their end.
type SessionRegistry interface {
	// Admit is asked after a login and before the backend is dialled.
	// An error wrapping ErrTooManySessions refuses the session ("session
	// limit reached"); any other error refuses it as an authentication
	// error (the shared store is unreachable), counting no failure.
	Admit(ctx context.Context, rec SessionRecord, lim Limits) (Admission, error)
	// Run does the registry's background work (heartbeats, byte counts,
	// stop requests from other nodes) until ctx ends. When Serve stops,
	// ctx ends after every session has ended (their Ends called) with a
	// RegistryStop cause: Run must have returned, its last writes
	// included, by its Deadline (see StopDeadline); Serve waits for it no
	// longer than its own bound.
	Run(ctx context.Context, node Node)
	// Health is nil while the registry (and its store) works; otherwise
	// new logins are refused with "authentication error" and the reason.
	Health() error
}

// Admission is one admitted session's record.
type Admission interface {
	// Relaying: the session's handshake is over, it is relayed.
	Relaying()
	// End records the end (once; later calls do nothing).
	End(reason string, fromClient, fromServer int64)
}

// RegistryStop is the cause (context.Cause) of the end of the context
// Serve gives a registry's Run when the server stops.
type RegistryStop struct {
	// Deadline is when Run must have returned: within Serve's bound of
	// drain + 1 s after the stop.
	Deadline time.Time
}

func (RegistryStop) Error() string { return "the server is stopping" }

// StopDeadline is when a registry's Run, whose ctx has ended, must have
// returned: the RegistryStop's Deadline, or now + fallback when ctx ended
// some other way.
func StopDeadline(ctx context.Context, fallback time.Duration) time.Time {
	var rs RegistryStop
	if errors.As(context.Cause(ctx), &rs) && !rs.Deadline.IsZero() {
		return rs.Deadline
	}
	return time.Now().Add(fallback)
}

// ErrTooManySessions is wrapped by Admit's refusals for a limit.
var ErrTooManySessions = errTooManySessions

// ErrStoreUnavailable is wrapped by a registry's or ban store's errors
// when the shared store cannot be reached.
var ErrStoreUnavailable = errors.New("the shared store is unreachable")

// memBans is the default BanStore: this process's banList.
type memBans struct{ *banList }

// NewMemoryBans is the in-process BanStore (the default).
func NewMemoryBans() BanStore { return memBans{newBanList()} }

func (m memBans) Banned(key string) bool { return m.banned(key) }
func (m memBans) Count() int             { return m.count() }
func (m memBans) Failure(_ context.Context, key string, p BanPolicy) (bool, error) {
	m.mu.Lock()
	m.policy = p
	m.mu.Unlock()
	_, isNew := m.failureNew(key)
	return isNew, nil
}

// memRegistry is the default SessionRegistry: it keeps no record beyond
// the server's own and enforces Limits.MaxSessionsPerUser on this node.
type memRegistry struct {
	mu     sync.Mutex
	byUser map[string]int
}

// NewMemoryRegistry is the in-process SessionRegistry (the default).
func NewMemoryRegistry() SessionRegistry { return &memRegistry{byUser: map[string]int{}} }

func (r *memRegistry) Admit(_ context.Context, rec SessionRecord, lim Limits) (Admission, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lim.MaxSessionsPerUser > 0 && r.byUser[rec.User] >= lim.MaxSessionsPerUser {
		return nil, fmt.Errorf("%w: the limit of %d per user is reached", errTooManySessions, lim.MaxSessionsPerUser)
	}
	r.byUser[rec.User]++
	return &memAdmission{r: r, user: rec.User}, nil
}

func (r *memRegistry) Run(ctx context.Context, _ Node) { <-ctx.Done() }
func (r *memRegistry) Health() error                   { return nil }

type memAdmission struct {
	r    *memRegistry
	user string
	once sync.Once
}

func (a *memAdmission) Relaying() {}
func (a *memAdmission) End(string, int64, int64) {
	a.once.Do(func() {
		a.r.mu.Lock()
		defer a.r.mu.Unlock()
		if a.r.byUser[a.user]--; a.r.byUser[a.user] <= 0 {
			delete(a.r.byUser, a.user)
		}
	})
}

// SessionStats returns every live session's byte counts.
func (s *Server) SessionStats() []SessionStats {
	live := s.liveSessions()
	out := make([]SessionStats, 0, len(live))
	for _, sess := range live {
		out = append(out, SessionStats{UUID: sess.uuid, FromClient: sess.c.bytesIn.Load(), FromServer: sess.b.bytesIn.Load()})
	}
	return out
}

// StopSession ends the live session with this uuid, telling both sides
// reason, and waits (at most 2 s) until it has ended.
func (s *Server) StopSession(uuid, reason string) bool {
	for _, sess := range s.liveSessions() {
		if sess.uuid == uuid {
			s.log.Info("session stopped on request", "session", sess.id, "uuid", uuid, "reason", reason)
			sess.stop(reason)
			select {
			case <-sess.done:
			case <-time.After(2 * time.Second):
			}
			return true
		}
	}
	return false
}
