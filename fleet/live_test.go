package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

// fakeNode is an edge.Node whose sessions are admissions held by the test.
type fakeNode struct {
	mu       sync.Mutex
	sessions map[string]edge.Admission
	bytes    int64
	stopped  chan string
}

func newFakeNode() *fakeNode {
	return &fakeNode{sessions: map[string]edge.Admission{}, stopped: make(chan string, 8)}
}

func (f *fakeNode) add(uuid string, a edge.Admission) {
	f.mu.Lock()
	f.sessions[uuid] = a
	f.mu.Unlock()
}

func (f *fakeNode) SessionStats() []edge.SessionStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []edge.SessionStats
	for u := range f.sessions {
		out = append(out, edge.SessionStats{UUID: u, FromClient: f.bytes, FromServer: 2 * f.bytes})
	}
	return out
}

func (f *fakeNode) StopSession(uuid, reason string) bool {
	f.mu.Lock()
	a, ok := f.sessions[uuid]
	delete(f.sessions, uuid)
	f.mu.Unlock()
	if !ok {
		return false
	}
	a.End(reason, 1, 2)
	f.stopped <- uuid
	return true
}

type memberT struct {
	*Member
	node   *fakeNode
	cancel context.CancelFunc
	done   chan struct{}
}

// joinT opens a store for node on dsn and runs a member until the test ends.
func joinT(t *testing.T, dsn, node string, o MemberOptions, run bool) *memberT {
	t.Helper()
	return joinSkewedT(t, dsn, node, o, run, 0)
}

// joinSkewedT is joinT for a node whose clock is off by skew.
func joinSkewedT(t *testing.T, dsn, node string, o MemberOptions, run bool, skew time.Duration) *memberT {
	t.Helper()
	st := openT(t, Options{DSN: dsn, Node: node})
	m, err := NewMember(ctxT(t), st, o)
	if err != nil {
		t.Fatal(err)
	}
	if skew != 0 {
		m.now = func() time.Time { return time.Now().Add(skew) }
		if err := m.loadBans(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	mt := &memberT{Member: m, node: newFakeNode(), done: make(chan struct{})}
	if !run {
		close(mt.done)
		return mt
	}
	ctx, cancel := context.WithCancel(context.Background())
	mt.cancel = cancel
	go func() { defer close(mt.done); m.Run(ctx, mt.node) }()
	t.Cleanup(func() { cancel(); <-mt.done })
	waitFor(t, "member healthy", 10*time.Second, func() bool { return m.Health() == nil })
	return mt
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func fastOpts() MemberOptions {
	return MemberOptions{Heartbeat: 200 * time.Millisecond, DeadAfter: time.Second}
}

// Failures spread over two nodes count toward one ban, which both enforce
// (the other node learns it by notification, well before a reload).
func TestFleetBansShared(t *testing.T) {
	c := pgtest.Start(t)
	// Heartbeats of 1 s: the reload of the bans every 12 heartbeats is 12 s
	// away, so a ban seen within 5 s came by notification.
	o := MemberOptions{Heartbeat: time.Second, DeadAfter: 5 * time.Second}
	a := joinT(t, c.DSN(), "a", o, true)
	b := joinT(t, c.DSN(), "b", o, true)
	p := edge.BanPolicy{MaxFailures: 3, Window: time.Minute, BanTime: time.Minute}
	ctx := ctxT(t)
	for i, m := range []*memberT{a, b} {
		banned, err := m.Failure(ctx, "192.0.2.7", p)
		if err != nil || banned {
			t.Fatalf("failure %d: %v %v", i, banned, err)
		}
	}
	if a.Banned("192.0.2.7") || b.Banned("192.0.2.7") {
		t.Fatal("banned before the third failure")
	}
	banned, err := a.Failure(ctx, "192.0.2.7", p)
	if err != nil || !banned {
		t.Fatalf("third failure: %v %v", banned, err)
	}
	if !a.Banned("192.0.2.7") {
		t.Fatal("the banning node does not enforce its ban")
	}
	took := waitFor(t, "ban seen by the other node", 5*time.Second, func() bool { return b.Banned("192.0.2.7") })
	t.Logf("ban reached the other node in %v", took)
	if b.Banned("192.0.2.8") || b.Count() != 1 {
		t.Fatalf("other addresses banned: count %d", b.Count())
	}
	// A further failure of a banned key is no new ban.
	if banned, err := b.Failure(ctx, "192.0.2.7", p); err != nil || banned {
		t.Fatalf("failure while banned: %v %v", banned, err)
	}
	// A ban told by notification while a reload of the bans was under way
	// (it is not in the reload's snapshot) stays in force.
	b.cacheBan("203.0.113.5", time.Minute.Milliseconds())
	if err := b.loadBans(ctx); err != nil {
		t.Fatal(err)
	}
	if !b.Banned("203.0.113.5") || !b.Banned("192.0.2.7") {
		t.Fatal("reloading the bans lifted a ban told by notification")
	}
	// A node that joins later loads the bans in force.
	late := joinT(t, c.DSN(), "late", o, false)
	if !late.Banned("192.0.2.7") {
		t.Fatal("a joining node does not load the bans")
	}
	// Failures outside the window do not count. (The window is long
	// enough that two failures one after the other fall within it on a
	// loaded machine.)
	short := edge.BanPolicy{MaxFailures: 2, Window: time.Second, BanTime: time.Minute}
	if banned, _ := a.Failure(ctx, "198.51.100.1", short); banned {
		t.Fatal("banned after one failure")
	}
	time.Sleep(1100 * time.Millisecond) // let the first failure leave the window
	if banned, _ := b.Failure(ctx, "198.51.100.1", short); banned {
		t.Fatal("a failure outside the window counted")
	}
	if banned, _ := a.Failure(ctx, "198.51.100.1", short); !banned {
		t.Fatal("two failures within the window did not ban")
	}
}

// The per-user cap counts the user's sessions on every node.
func TestFleetSessionsPerUser(t *testing.T) {
	c := pgtest.Start(t)
	a := joinT(t, c.DSN(), "a", fastOpts(), true)
	b := joinT(t, c.DSN(), "b", fastOpts(), true)
	ctx := ctxT(t)
	lim := edge.Limits{MaxSessionsPerUser: 2}
	rec := func(id int, uuid string) edge.SessionRecord {
		return edge.SessionRecord{ID: id, UUID: uuid, User: "alice", Remote: "192.0.2.1:5000", Target: "tcp://127.0.0.1:1"}
	}
	s1, err := a.Admit(ctx, rec(1, "00000000000000000000000000000001"), lim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Admit(ctx, rec(1, "00000000000000000000000000000002"), lim); err != nil {
		t.Fatal(err)
	}
	_, err = a.Admit(ctx, rec(2, "00000000000000000000000000000003"), lim)
	if !errors.Is(err, edge.ErrTooManySessions) {
		t.Fatalf("third session of the user in the fleet: %v", err)
	}
	if _, err := b.Admit(ctx, edge.SessionRecord{ID: 2, UUID: "00000000000000000000000000000004", User: "bob"}, lim); err != nil {
		t.Fatalf("another user: %v", err)
	}
	s1.End("done", 10, 20)
	waitFor(t, "room after an end", 5*time.Second, func() bool {
		_, err := b.Admit(ctx, rec(3, "00000000000000000000000000000005"), lim)
		return err == nil
	})
}

// A stop requested through the store (as `xpra-edge stop` does from any
// machine) reaches the node holding the session by notification and is
// recorded ended, well within 2 s; the listing shows every node's
// sessions with their byte counts.
func TestFleetStopAndList(t *testing.T) {
	c := pgtest.Start(t)
	a := joinT(t, c.DSN(), "a", fastOpts(), true)
	b := joinT(t, c.DSN(), "b", fastOpts(), true)
	ctx := ctxT(t)
	const ua, ub = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	for _, x := range []struct {
		m    *memberT
		uuid string
	}{{a, ua}, {b, ub}} {
		adm, err := x.m.Admit(ctx, edge.SessionRecord{ID: 7, UUID: x.uuid, User: "u", Remote: "192.0.2.9:1", Target: "tcp://t"}, edge.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		adm.Relaying()
		x.m.node.bytes = 1000
		x.m.node.add(x.uuid, adm)
	}
	var sessions []SessionRow
	waitFor(t, "both sessions listed with bytes", 5*time.Second, func() bool {
		_, ss, err := ListLive(ctx, a.st, false)
		if err != nil {
			t.Fatal(err)
		}
		sessions = ss
		return len(ss) == 2 && ss[0].FromServer == 2000 && ss[1].FromServer == 2000 && ss[0].Relaying && ss[1].Relaying
	})
	if sessions[0].Node != "a" || sessions[1].Node != "b" || sessions[1].Name() != ":proxy-7@b" {
		t.Fatalf("listing: %+v", sessions)
	}
	nodes, _, _ := ListLive(ctx, a.st, false)
	if len(nodes) != 2 || FormatSessions(nodes, sessions, time.Second) == "" {
		t.Fatalf("nodes %+v", nodes)
	}
	// Stop b's session through a's store, by uuid.
	start := time.Now()
	row, err := RequestStop(ctx, a.st, ub, 2*time.Second)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if row.Ended == nil || row.Reason != ReasonStop || row.Node != "b" {
		t.Fatalf("stopped row %+v", row)
	}
	t.Logf("stop from node a to node b recorded ended in %v", took)
	// (the fake node tells the test right after the session's End, which
	// RequestStop may see recorded first)
	select {
	case u := <-b.node.stopped:
		if u != ub {
			t.Fatalf("b stopped %s", u)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("b did not stop its session")
	}
	// By name, a's own.
	if _, err := RequestStop(ctx, b.st, ":proxy-7@a", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := RequestStop(ctx, b.st, ":proxy-7@a", time.Second); !errors.Is(err, ErrNoSuchSession) {
		t.Fatalf("stop of an ended session: %v", err)
	}
	if _, err := RequestStop(ctx, b.st, "nonsense", time.Second); err == nil {
		t.Fatal("a malformed target was accepted")
	}
}

// The sessions of a node that stopped heartbeating (killed) are marked
// ended after DeadAfter by a live node; a node that stops cleanly ends its
// own.
func TestFleetDeadNodeSessionsEnd(t *testing.T) {
	c := pgtest.Start(t)
	a := joinT(t, c.DSN(), "a", fastOpts(), true)
	dead := joinT(t, c.DSN(), "dead", fastOpts(), false) // joined, never heartbeats: as if killed
	ctx := ctxT(t)
	if _, err := dead.Admit(ctx, edge.SessionRecord{ID: 1, UUID: "dddddddddddddddddddddddddddddddd", User: "u"}, edge.Limits{}); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "dead node's session ended", 10*time.Second, func() bool {
		_, ss, err := ListLive(ctx, a.st, true)
		if err != nil {
			t.Fatal(err)
		}
		return len(ss) == 1 && ss[0].Ended != nil && ss[0].Reason == ReasonNodeLost
	})
	// Not before DeadAfter from the dead node's last heartbeat, both by
	// the database's clock (the test's own clock would also count how
	// long the admission took on a loaded machine).
	var ms int64
	if err := a.st.Pool().QueryRow(ctx, `SELECT (extract(epoch FROM s.ended_at - n.heartbeat_at) * 1000)::bigint
		FROM edge_sessions s JOIN edge_nodes n ON n.name = s.node WHERE s.node = 'dead'`).Scan(&ms); err != nil {
		t.Fatal(err)
	}
	afterBeat := time.Duration(ms) * time.Millisecond
	t.Logf("marked ended %v after it was recorded, %v after the node's last heartbeat (dead_after 1s, heartbeat 200ms)", took, afterBeat)
	if afterBeat < time.Second {
		t.Fatalf("ended %v after the last heartbeat, before dead_after", afterBeat)
	}
	// A clean stop ends the node's remaining sessions.
	b := joinT(t, c.DSN(), "b", fastOpts(), true)
	if _, err := b.Admit(ctx, edge.SessionRecord{ID: 1, UUID: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", User: "u"}, edge.Limits{}); err != nil {
		t.Fatal(err)
	}
	b.cancel()
	<-b.done
	_, ss, err := ListLive(ctx, a.st, false)
	if err != nil || len(ss) != 0 {
		t.Fatalf("after b stopped: %+v %v", ss, err)
	}
}

// With PostgreSQL stopped, a member reports itself unhealthy, refuses
// admissions with ErrUnavailable and keeps its bans; ends recorded
// meanwhile are written once the database is back, and it is healthy
// again.
func TestFleetStoreDownAndBack(t *testing.T) {
	c := pgtest.Start(t)
	a := joinT(t, c.DSN(), "a", fastOpts(), true)
	ctx := ctxT(t)
	p := edge.BanPolicy{MaxFailures: 1, Window: time.Minute, BanTime: time.Minute}
	if banned, err := a.Failure(ctx, "203.0.113.5", p); err != nil || !banned {
		t.Fatal(banned, err)
	}
	adm, err := a.Admit(ctx, edge.SessionRecord{ID: 1, UUID: "ffffffffffffffffffffffffffffffff", User: "u"}, edge.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	took := waitFor(t, "unhealthy", 5*time.Second, func() bool { return a.Health() != nil })
	t.Logf("outage noticed in %v", took)
	if !errors.Is(a.Health(), ErrUnavailable) {
		t.Fatalf("health: %v", a.Health())
	}
	if _, err := a.Admit(ctx, edge.SessionRecord{ID: 2, UUID: "f0000000000000000000000000000000", User: "u"}, edge.Limits{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("admit while down: %v", err)
	}
	if _, err := a.Failure(ctx, "203.0.113.6", p); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("failure while down: %v", err)
	}
	if !a.Banned("203.0.113.5") {
		t.Fatal("bans forgotten while the store is down")
	}
	adm.End("client connection lost", 5, 6)
	c.Start()
	took = waitFor(t, "healthy again", 15*time.Second, func() bool { return a.Health() == nil })
	t.Logf("recovered %v after PostgreSQL was back", took)
	waitFor(t, "the end recorded meanwhile written", 5*time.Second, func() bool {
		_, ss, err := ListLive(ctx, a.st, true)
		return err == nil && len(ss) == 1 && ss[0].Ended != nil && ss[0].Reason == "client connection lost"
	})
}

// An outage of PostgreSQL longer than DeadAfter does not make the nodes
// mark each other's live sessions lost when it is back (a node judges
// others only after DeadAfter of its own good heartbeats), and a session
// wrongly marked lost is live again at its node's next heartbeat.
func TestFleetOutageIsNoDeath(t *testing.T) {
	c := pgtest.Start(t)
	// b heartbeats slower: back after the outage later than a.
	const dead = 2 * time.Second
	a := joinT(t, c.DSN(), "a", MemberOptions{Heartbeat: 200 * time.Millisecond, DeadAfter: dead}, true)
	b := joinT(t, c.DSN(), "b", MemberOptions{Heartbeat: 900 * time.Millisecond, DeadAfter: dead}, true)
	ctx := ctxT(t)
	for _, x := range []struct {
		m    *memberT
		uuid string
	}{{a, "a0000000000000000000000000000000"}, {b, "b0000000000000000000000000000000"}} {
		adm, err := x.m.Admit(ctx, edge.SessionRecord{ID: 1, UUID: x.uuid, User: "u"}, edge.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		x.m.node.add(x.uuid, adm)
	}
	c.Stop()
	waitFor(t, "both unhealthy", 5*time.Second, func() bool { return a.Health() != nil && b.Health() != nil })
	time.Sleep(2 * dead) // longer than DeadAfter
	c.Start()
	// Watched from the restart until past the judging delay: not even
	// for a moment.
	for end := time.Now().Add(2 * dead); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		_, ss, err := ListLive(ctx, a.st, true)
		if err != nil {
			continue // a connection of the pool from before the restart
		}
		for _, s := range ss {
			if s.Ended != nil {
				t.Fatalf("%s marked %q after the outage", s.Name(), s.Reason)
			}
		}
	}
	waitFor(t, "both healthy", 15*time.Second, func() bool { return a.Health() == nil && b.Health() == nil })
	if _, err := a.st.Pool().Exec(ctx, `UPDATE edge_sessions SET ended_at = now(), end_reason = $1 WHERE node = 'b'`, ReasonNodeLost); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's session live again", 5*time.Second, func() bool {
		_, ss, err := ListLive(ctx, a.st, false)
		return err == nil && len(ss) == 2
	})
}

// A stop requested while the holding node hears no notification (here:
// not running yet) is carried out when it does: at its notification
// connection's start, and at each heartbeat.
func TestFleetStopRequestedWhileDeaf(t *testing.T) {
	c := pgtest.Start(t)
	a := joinT(t, c.DSN(), "a", fastOpts(), true)
	st := openT(t, Options{DSN: c.DSN(), Node: "b"})
	m, err := NewMember(ctxT(t), st, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	const u = "cccccccccccccccccccccccccccccccc"
	adm, err := m.Admit(ctx, edge.SessionRecord{ID: 4, UUID: u, User: "u"}, edge.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	node := newFakeNode()
	node.add(u, adm)
	if _, err := RequestStop(ctx, a.st, ":proxy-4@b", 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ended") {
		t.Fatalf("stop of a deaf node's session: %v", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(rctx, node) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case got := <-node.stopped:
		if got != u {
			t.Fatalf("stopped %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stop requested before was not carried out")
	}
	waitFor(t, "end recorded", 5*time.Second, func() bool {
		_, ss, err := ListLive(ctx, a.st, false)
		return err == nil && len(ss) == 0
	})
}

// A node that starts again under its name ends the sessions its previous
// run left recorded live ("node restarted").
func TestFleetRestartEndsPreviousRun(t *testing.T) {
	c := pgtest.Start(t)
	first := joinT(t, c.DSN(), "a", fastOpts(), false)
	ctx := ctxT(t)
	if _, err := first.Admit(ctx, edge.SessionRecord{ID: 1, UUID: "10000000000000000000000000000000", User: "u"}, edge.Limits{}); err != nil {
		t.Fatal(err)
	}
	// the first run crashed: its process is gone (same machine)
	if _, err := first.st.Pool().Exec(ctx, `UPDATE edge_nodes SET pid = $1 WHERE name = 'a'`, deadPid(t)); err != nil {
		t.Fatal(err)
	}
	again := joinT(t, c.DSN(), "a", fastOpts(), false)
	_, ss, err := ListLive(ctx, again.st, true)
	if err != nil || len(ss) != 1 || ss[0].Ended == nil || ss[0].Reason != ReasonRestarted {
		t.Fatalf("after the restart: %+v %v", ss, err)
	}
}

// TestFleetNotificationsAreChecked: any role that may connect to the
// database may NOTIFY on any channel, so a notification is only a hint.
// A role without a single privilege on the fleet's tables sends a stop for
// a live session of node a, bans for addresses nobody banned, and
// malformed payloads: a stops nothing, bans nobody and keeps listening (a
// real ban sent after them reaches it).
func TestFleetNotificationsAreChecked(t *testing.T) {
	c := pgtest.Start(t)
	a := joinT(t, c.DSN(), "a", fastOpts(), true)
	b := joinT(t, c.DSN(), "b", fastOpts(), true)
	ctx := ctxT(t)
	const u = "a0000000000000000000000000000001"
	adm, err := a.Admit(ctx, edge.SessionRecord{ID: 1, UUID: u, User: "u"}, edge.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	a.node.add(u, adm)
	if _, err := a.st.Pool().Exec(ctx, `CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw'`); err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(c.DSN(), "edge:"+c.Password+"@", "intruder:intruder-pw@", 1)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `UPDATE edge_sessions SET stop_requested_at = now()`); err == nil {
		t.Fatal("the intruder role may write the sessions: the test proves nothing")
	}
	far := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	for _, n := range [][2]string{
		{chanStop, "a\t" + u},
		{chanBan, "192.0.2.50\t" + far},
		{chanBan, "192.0.2.51"},
		{chanStop, ""}, {chanStop, "a"}, {chanStop, "\t\t\t"}, {chanBan, ""}, {chanBan, "\t"},
		{chanBan, strings.Repeat("x", 7000) + "\t" + far}, {chanBan, "192.0.2.52\tnot-a-number"},
	} {
		if _, err := conn.Exec(ctx, `SELECT pg_notify($1, $2)`, n[0], n[1]); err != nil {
			t.Fatal(err)
		}
	}
	// Notifications arrive in order: once a enforces this real ban, it
	// has had the forged ones.
	if banned, err := b.Failure(ctx, "198.51.100.77", edge.BanPolicy{MaxFailures: 1, Window: time.Minute, BanTime: time.Minute}); err != nil || !banned {
		t.Fatal(banned, err)
	}
	took := waitFor(t, "the real ban seen by a", 5*time.Second, func() bool { return a.Banned("198.51.100.77") })
	t.Logf("the real ban reached a %v after the forged notifications", took)
	for _, k := range []string{"192.0.2.50", "192.0.2.51", "192.0.2.52"} {
		if a.Banned(k) {
			t.Errorf("a forged notification banned %s", k)
		}
	}
	if n := a.Count(); n != 1 {
		t.Errorf("a enforces %d bans, want 1", n)
	}
	select {
	case got := <-a.node.stopped:
		t.Fatalf("a forged notification stopped %s", got)
	case <-time.After(300 * time.Millisecond):
	}
	if err := a.Health(); err != nil {
		t.Fatalf("a after the forged notifications: %v", err)
	}
	// A real stop request still works, by notification.
	if _, err := RequestStop(ctx, b.st, ":proxy-1@a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestFleetBansIgnoreClockSkew: the database's clock says how long a ban
// has left; a node whose own clock is off enforces it for that long on
// its clock. Node a's clock runs an hour ahead, node b's an hour behind: a
// one-minute ban holds on a (which would otherwise take it for long over)
// and a two-second ban ends on b after about two seconds (not an hour
// later).
func TestFleetBansIgnoreClockSkew(t *testing.T) {
	c := pgtest.Start(t)
	a := joinSkewedT(t, c.DSN(), "a", fastOpts(), true, time.Hour)
	b := joinSkewedT(t, c.DSN(), "b", fastOpts(), true, -time.Hour)
	ctx := ctxT(t)
	minute := edge.BanPolicy{MaxFailures: 1, Window: time.Minute, BanTime: time.Minute}
	if banned, err := a.Failure(ctx, "192.0.2.60", minute); err != nil || !banned {
		t.Fatal(banned, err)
	}
	if !a.Banned("192.0.2.60") {
		t.Fatal("a node whose clock is ahead does not enforce its own ban")
	}
	waitFor(t, "b has the ban", 5*time.Second, func() bool { return b.Banned("192.0.2.60") })
	// A ban from the other node, and one loaded from the table.
	if banned, err := b.Failure(ctx, "192.0.2.61", minute); err != nil || !banned {
		t.Fatal(banned, err)
	}
	waitFor(t, "a has b's ban", 5*time.Second, func() bool { return a.Banned("192.0.2.61") })
	if err := a.loadBans(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.Banned("192.0.2.60") || !a.Banned("192.0.2.61") || a.Count() != 2 {
		t.Fatalf("a after reloading the bans: count %d", a.Count())
	}
	// A short ban ends on the node whose clock is behind.
	short := edge.BanPolicy{MaxFailures: 1, Window: time.Minute, BanTime: 2 * time.Second}
	start := time.Now()
	if banned, err := a.Failure(ctx, "192.0.2.62", short); err != nil || !banned {
		t.Fatal(banned, err)
	}
	waitFor(t, "b has the short ban", 5*time.Second, func() bool { return b.Banned("192.0.2.62") })
	waitFor(t, "the short ban over on b", 10*time.Second, func() bool { return !b.Banned("192.0.2.62") })
	took := time.Since(start)
	t.Logf("a 2 s ban ended on the node an hour behind after %v", took)
	if took < 1500*time.Millisecond {
		t.Fatalf("the ban ended on b after %v", took)
	}
}

// TestFleetListenerReplacesASilentConnection: the network drops the
// notification connection without a word (no FIN, no RST: a NAT or
// firewall that forgot it, a failover behind a virtual address). The
// node notices within a heartbeat and a ping's timeout, connects again,
// and hears the bans other nodes make at once again (before, it waited on
// the dead connection for as long as the kernel's keepalive takes, tens
// of minutes, and had other nodes' bans only from its reload every 12
// heartbeats).
func TestFleetListenerReplacesASilentConnection(t *testing.T) {
	c := pgtest.Start(t)
	px := startFreezeProxy(t, fmt.Sprintf("127.0.0.1:%d", c.Port))
	dsn := strings.Replace(c.DSN(), fmt.Sprintf("127.0.0.1:%d", c.Port), px.addr(), 1)
	// a reload of the bans every 12 heartbeats: 24 s
	a := joinT(t, dsn, "a", MemberOptions{Heartbeat: 2 * time.Second, DeadAfter: 10 * time.Second}, true)
	b := joinT(t, c.DSN(), "b", fastOpts(), true)
	ctx := ctxT(t)
	p := edge.BanPolicy{MaxFailures: 1, Window: time.Minute, BanTime: time.Minute}
	ban := func(key string) {
		t.Helper()
		if banned, err := b.Failure(ctx, key, p); err != nil || !banned {
			t.Fatal(banned, err)
		}
	}
	ban("192.0.2.80")
	waitFor(t, "a ban heard before the freeze", 2*time.Second, func() bool { return a.Banned("192.0.2.80") })
	px.freeze()
	frozen := time.Now()
	// A new ban every half second: once a listens again, one is heard
	// within 400 ms of being made.
	for i := 0; ; i++ {
		if time.Since(frozen) > 15*time.Second {
			t.Fatal("no ban heard 15 s after the notification connection went silent")
		}
		key := fmt.Sprintf("198.51.100.%d", 100+i)
		ban(key)
		made := time.Now()
		heard := false
		for time.Since(made) < 400*time.Millisecond {
			if a.Banned(key) {
				heard = true
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if heard {
			t.Logf("a hears bans again %v after its notification connection went silent (heartbeat 2s, ping timeout %v)", time.Since(frozen), opTimeout)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFleetSessionsPerUserRace: two logins of one user at once on two
// nodes, with one place left: exactly one is admitted, every time (the
// count and the insert are serialized per user in the database). In the
// first round the test makes the race certain: it blocks inserts into
// edge_sessions until both admissions wait in the database (without the
// per-user lock both would have counted no session by then).
func TestFleetSessionsPerUserRace(t *testing.T) {
	c := pgtest.Start(t)
	a := joinT(t, c.DSN(), "a", fastOpts(), false)
	b := joinT(t, c.DSN(), "b", fastOpts(), false)
	ctx := ctxT(t)
	lim := edge.Limits{MaxSessionsPerUser: 1}
	blocker, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(context.Background())
	for round := 0; round < 20; round++ {
		user := fmt.Sprintf("racer%d", round)
		var tx pgx.Tx
		if round == 0 {
			if tx, err = blocker.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `LOCK TABLE edge_sessions IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 2)
		for i, m := range []*memberT{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = m.Admit(ctx, edge.SessionRecord{ID: round + 1, UUID: fmt.Sprintf("%02d%030d", round, i), User: user}, lim)
			}()
		}
		close(start)
		if tx != nil {
			waitFor(t, "both admissions waiting in the database", 10*time.Second, func() bool {
				var n int
				if err := a.st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name IN ('xpra-edge a', 'xpra-edge b')`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n == 2
			})
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		admitted := 0
		for _, err := range errs {
			switch {
			case err == nil:
				admitted++
			case !errors.Is(err, edge.ErrTooManySessions):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if admitted != 1 {
			t.Fatalf("round %d: %d of 2 simultaneous logins admitted with one place", round, admitted)
		}
	}
}
