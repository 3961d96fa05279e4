package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/xpra-edge/xpra-edge/edge"
)

// The fleet's live state: failed logins and bans, the nodes and their
// sessions. Member implements edge.BanStore and edge.SessionRegistry on
// the store's database.
func init() {
	register(Migration{Version: 3, Name: "live state", SQL: schemaLive},
		Migration{Version: 4, Name: "node runs", SQL: schemaNodeRuns})
}

// schemaNodeRuns records which run of a node holds its name: a run id
// made at each start, and the process (host, boot id, pid) for the
// message that refuses a second node of the same name.
const schemaNodeRuns = `
ALTER TABLE edge_nodes
	ADD COLUMN run_id  text NOT NULL DEFAULT '',
	ADD COLUMN host    text NOT NULL DEFAULT '',
	ADD COLUMN boot_id text NOT NULL DEFAULT '',
	ADD COLUMN pid     integer NOT NULL DEFAULT 0;
`

const schemaLive = `
CREATE TABLE edge_nodes (
	name         text PRIMARY KEY,
	address      text NOT NULL DEFAULT '',
	started_at   timestamptz NOT NULL DEFAULT now(),
	heartbeat_at timestamptz NOT NULL DEFAULT now(),
	stopped_at   timestamptz
);
CREATE TABLE edge_sessions (
	uuid              text PRIMARY KEY,
	node              text NOT NULL,
	local_id          integer NOT NULL,
	username          text NOT NULL,
	client_addr       text NOT NULL DEFAULT '',
	target            text NOT NULL DEFAULT '',
	started_at        timestamptz NOT NULL DEFAULT now(),
	relaying          boolean NOT NULL DEFAULT false,
	bytes_from_client bigint NOT NULL DEFAULT 0,
	bytes_from_server bigint NOT NULL DEFAULT 0,
	updated_at        timestamptz NOT NULL DEFAULT now(),
	stop_requested_at timestamptz,
	ended_at          timestamptz,
	end_reason        text
);
CREATE INDEX edge_sessions_live_user ON edge_sessions (username) WHERE ended_at IS NULL;
CREATE INDEX edge_sessions_live_node ON edge_sessions (node, local_id) WHERE ended_at IS NULL;
CREATE INDEX edge_sessions_ended ON edge_sessions (ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE edge_login_failures (
	key  text NOT NULL,
	at   timestamptz NOT NULL DEFAULT now(),
	node text NOT NULL
);
CREATE INDEX edge_login_failures_key ON edge_login_failures (key, at);
CREATE TABLE edge_bans (
	key        text PRIMARY KEY,
	until      timestamptz NOT NULL,
	node       text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
`

// Notification channels.
const (
	chanStop = "xpra_edge_stop" // payload: node TAB uuid
	chanBan  = "xpra_edge_ban"  // payload: key TAB until (unix ms)
)

// Reasons the registry records.
const (
	ReasonNodeLost    = "node lost"    // its heartbeat stopped (another node marked it)
	ReasonNodeStopped = "node stopped" // it stopped with the session still recorded live
	ReasonRestarted   = "node restarted"
	ReasonStop        = "socket request" // xpra-edge stop, from any node
)

// Defaults for MemberOptions.
const (
	DefaultHeartbeat = 5 * time.Second
	DefaultDeadAfter = 30 * time.Second
	// DefaultRetention is how long ended sessions stay listed.
	DefaultRetention = 24 * time.Hour
)

const (
	opTimeout    = 3 * time.Second
	maxBanCache  = 100_000
	maxPending   = 100_000
	backoffFirst = 250 * time.Millisecond
	backoffMax   = 5 * time.Second
)

// MemberOptions configures a Member.
type MemberOptions struct {
	// Address is what `list --fleet` shows for this node (its public
	// host:port); informative.
	Address string
	// Heartbeat is how often the node records that it is alive, its
	// sessions' byte counts, and looks for dead nodes (default 5 s).
	Heartbeat time.Duration
	// DeadAfter: the sessions of a node whose heartbeat is older are
	// marked ended ("node lost") by any live node (default 30 s).
	DeadAfter time.Duration
	// Retention is how long ended sessions stay in the table (default
	// 24 h).
	Retention time.Duration
}

// Member is one node's part in the fleet's shared live state: an
// edge.BanStore and an edge.SessionRegistry.
type Member struct {
	st   *Store
	node string
	log  *slog.Logger
	o    MemberOptions
	run  runIdentity // this run's claim on the node name

	takenOver atomic.Bool // another run took the node name: this one no longer writes as it

	up        atomic.Bool  // the store answers (the last heartbeat, probe or notification connection worked)
	listenUp  atomic.Bool  // the notification connection is connected
	beatUp    atomic.Bool  // what up is made of: set by heartbeats, probes, the notification connection
	upSince   atomic.Int64 // unix ns of the last change to up
	lastProbe atomic.Int64 // unix ns of Health's last probe while down
	probing   atomic.Bool  // a probe runs
	stateMu   sync.Mutex
	lastUp    *bool // last logged state

	// now is this machine's clock, for the bans' local deadlines (a
	// test sets it off by an hour).
	now func() time.Time

	mu       sync.Mutex
	bans     map[string]time.Time  // by the local clock (now): until the database says, less its clock's offset
	pending  []pendingEnd          // ends not recorded yet (the store was down)
	inflight map[string]pendingEnd // ends being written now, by uuid
	stopping bool                  // Run is ending: ends go to pending, for its last batch
	nodeV    edge.Node

	// What notifications asked for, to be checked against the tables by
	// checkNotes (a notification proves nothing: any role that may
	// connect to the database may NOTIFY on any channel).
	noteMu     sync.Mutex
	noteBans   map[string]struct{} // ban keys to look up
	noteBanAll bool                // too many: reload every ban
	noteStops  bool                // look for this node's stop requests
	noteKick   chan struct{}       // capacity 1: checkNotes has work

	// bg is the parent of the admissions' background writes; Run's end
	// cancels it (their ends are in its last batch).
	bg       context.Context
	bgCancel context.CancelFunc
}

type pendingEnd struct {
	uuid       string
	reason     string
	fromClient int64
	fromServer int64
}

var (
	_ edge.BanStore        = (*Member)(nil)
	_ edge.SessionRegistry = (*Member)(nil)
)

// NewMember joins the fleet: it claims the node name for this run (see
// claimNode: a name held by another live run is refused with
// ErrNodeNameInUse), ends the sessions a previous run of this node left
// recorded live ("node restarted"), and loads the bans in force.
func NewMember(ctx context.Context, st *Store, o MemberOptions) (*Member, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = DefaultDeadAfter
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	m := &Member{st: st, node: st.Node(), log: st.Logger(), o: o, bans: map[string]time.Time{}, inflight: map[string]pendingEnd{}, run: thisRun(),
		noteBans: map[string]struct{}{}, noteKick: make(chan struct{}, 1), now: time.Now}
	m.bg, m.bgCancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(ctx, 2*opTimeout)
	defer cancel()
	if err := m.claimNode(ctx); err != nil {
		return nil, err
	}
	if err := m.loadBans(ctx); err != nil {
		return nil, err
	}
	m.beatUp.Store(true)
	m.upSince.Store(time.Now().UnixNano())
	return m, nil
}

// Probing while down: one probe at a time, at most one per probeEvery,
// each bounded by probeTimeout.
const (
	probeEvery   = 50 * time.Millisecond
	probeTimeout = time.Second
)

// Health is nil while the store answers: its last heartbeat (or the
// notification connection) worked. While it is down, Health itself probes
// the database (one probe at a time, at most every 50 ms, each for at most
// 1 s; a login that finds a probe running is refused), so that the first
// login after PostgreSQL is back works without waiting for a heartbeat.
func (m *Member) Health() error {
	if m.takenOver.Load() {
		return fmt.Errorf("fleet: %w: %w", ErrUnavailable, errTakenOver)
	}
	if m.beatUp.Load() || m.probe() {
		return nil
	}
	return fmt.Errorf("fleet: %w (%s)", ErrUnavailable, m.st.RedactedDSN())
}

func (m *Member) probe() bool {
	now := time.Now().UnixNano()
	last := m.lastProbe.Load()
	if now-last < int64(probeEvery) || !m.probing.CompareAndSwap(false, true) {
		return false
	}
	defer m.probing.Store(false)
	m.lastProbe.Store(now)
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if err := m.st.Pool().Ping(ctx); err != nil {
		return false
	}
	m.setState(&m.beatUp, true, nil)
	return true
}

// setState records one side's state (heartbeat or listener) and logs the
// node's state when it changes.
func (m *Member) setState(side *atomic.Bool, ok bool, err error) {
	side.Store(ok)
	up := m.beatUp.Load()
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	if m.lastUp != nil && *m.lastUp == up {
		return
	}
	m.lastUp = &up
	m.upSince.Store(time.Now().UnixNano())
	m.up.Store(up)
	if up {
		m.log.Info("fleet store reachable", "database", m.st.RedactedDSN(), "node", m.node)
	} else {
		m.log.Warn("fleet store unreachable: live sessions keep running, new logins are refused until it is back", "database", m.st.RedactedDSN(), "node", m.node, "err", m.st.Err(err))
	}
}

// noteErr marks the store down when err says it was not reached.
func (m *Member) noteErr(err error) error {
	err = m.st.Err(err)
	if IsUnavailable(err) {
		m.setState(&m.beatUp, false, err)
	}
	return err
}

// Banned answers from the node's copy of the fleet's bans (kept by
// notifications and each heartbeat).
func (m *Member) Banned(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.bans[key]
	if !ok {
		return false
	}
	if m.now().Before(until) {
		return true
	}
	delete(m.bans, key)
	return false
}

// Count is how many keys are banned now.
func (m *Member) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	n := 0
	for k, u := range m.bans {
		if now.Before(u) {
			n++
		} else {
			delete(m.bans, k)
		}
	}
	return n
}

// cacheBan records a ban that the database says has left ms
// milliseconds to run. The cache holds local deadlines: the database's
// until is on its own clock, which may be off from this machine's.
func (m *Member) cacheBan(key string, left int64) {
	until := m.now().Add(time.Duration(left) * time.Millisecond)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cacheBanLocked(key, until)
}

// cacheBanLocked keeps the later of two untils of key; a full cache takes
// no new keys.
func (m *Member) cacheBanLocked(key string, until time.Time) {
	if len(m.bans) >= maxBanCache {
		if _, ok := m.bans[key]; !ok {
			return
		}
	}
	if until.After(m.bans[key]) {
		m.bans[key] = until
	}
}

func (m *Member) loadBans(ctx context.Context) error {
	rows, err := m.st.Pool().Query(ctx, `SELECT key, `+banLeft+` FROM edge_bans WHERE until > now() ORDER BY until DESC LIMIT $1`, maxBanCache)
	if err != nil {
		return m.noteErr(fmt.Errorf("fleet: load bans: %w", err))
	}
	fresh := map[string]time.Time{}
	now := m.now()
	for rows.Next() {
		var k string
		var left int64
		if err := rows.Scan(&k, &left); err != nil {
			rows.Close()
			return m.noteErr(err)
		}
		fresh[k] = now.Add(time.Duration(left) * time.Millisecond)
	}
	if err := rows.Err(); err != nil {
		return m.noteErr(err)
	}
	// Merged, never replaced: a ban told by a notification while the
	// query ran is not in its snapshot, and replacing the copy would lift
	// it on this node until the next load. A ban ends only by expiring
	// (Banned and Count drop it then), so nothing is lost by keeping.
	m.mu.Lock()
	for k, u := range fresh {
		m.cacheBanLocked(k, u)
	}
	m.mu.Unlock()
	return nil
}

// Failure counts one failed login of key in the fleet: the failures of
// every node within p.Window count, and the one that reaches
// p.MaxFailures bans key for p.BanTime on every node (told at once by a
// notification).
func (m *Member) Failure(ctx context.Context, key string, p edge.BanPolicy) (bool, error) {
	if p.MaxFailures <= 0 {
		return false, nil
	}
	var left int64 // ms the ban in force has left, by the database's clock
	banned, inForce := false, false
	err := pgx.BeginFunc(ctx, m.st.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('xpra-edge ban ' || $1, 0))`, key); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT `+banLeft+` FROM edge_bans WHERE key = $1 AND until > now()`, key).Scan(&left)
		if err == nil {
			inForce = true
			return nil // already banned
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM edge_login_failures WHERE key = $1 AND at <= now() - $2 * interval '1 millisecond'`, key, p.Window.Milliseconds()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO edge_login_failures (key, node) VALUES ($1, $2)`, key, m.node); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM edge_login_failures WHERE key = $1`, key).Scan(&n); err != nil {
			return err
		}
		if n < p.MaxFailures {
			return nil
		}
		var until time.Time
		if err := tx.QueryRow(ctx, `INSERT INTO edge_bans (key, until, node) VALUES ($1, now() + $2 * interval '1 millisecond', $3)
			ON CONFLICT (key) DO UPDATE SET until = excluded.until, node = excluded.node, created_at = now()
			RETURNING until, `+banLeft, key, p.BanTime.Milliseconds(), m.node).Scan(&until, &left); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM edge_login_failures WHERE key = $1`, key); err != nil {
			return err
		}
		banned, inForce = true, true
		// (the payload's until is for older nodes; this one looks it up)
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, chanBan, key+"\t"+strconv.FormatInt(until.UnixMilli(), 10))
		return err
	})
	if err != nil {
		return false, m.noteErr(fmt.Errorf("fleet: count a failed login: %w", err))
	}
	if inForce {
		m.cacheBan(key, left)
	}
	return banned, nil
}

// banLeft is the time a row of edge_bans has left, in milliseconds, by
// the database's clock: what the nodes cache, each on its own clock.
const banLeft = `(extract(epoch FROM until - now()) * 1000)::bigint`

// Admit records a new session; with lim.MaxSessionsPerUser it counts the
// user's live sessions on every node (serialized per user by an advisory
// lock).
func (m *Member) Admit(ctx context.Context, rec edge.SessionRecord, lim edge.Limits) (edge.Admission, error) {
	if err := m.Health(); err != nil {
		return nil, err
	}
	tooMany := false
	err := pgx.BeginFunc(ctx, m.st.Pool(), func(tx pgx.Tx) error {
		if lim.MaxSessionsPerUser > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('xpra-edge user ' || $1, 0))`, rec.User); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM edge_sessions WHERE username = $1 AND ended_at IS NULL`, rec.User).Scan(&n); err != nil {
				return err
			}
			if n >= lim.MaxSessionsPerUser {
				tooMany = true
				return nil
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO edge_sessions (uuid, node, local_id, username, client_addr, target)
			VALUES ($1, $2, $3, $4, $5, $6)`, rec.UUID, m.node, rec.ID, rec.User, rec.Remote, rec.Target)
		return err
	})
	if err != nil {
		return nil, m.noteErr(fmt.Errorf("fleet: record the session: %w", err))
	}
	if tooMany {
		return nil, fmt.Errorf("%w: the limit of %d per user (in the fleet) is reached", edge.ErrTooManySessions, lim.MaxSessionsPerUser)
	}
	return &admission{m: m, uuid: rec.UUID}, nil
}

type admission struct {
	m    *Member
	uuid string
	once sync.Once
}

func (a *admission) Relaying() {
	a.m.mu.Lock()
	stopping := a.m.stopping
	a.m.mu.Unlock()
	if stopping {
		return
	}
	a.m.async(func(ctx context.Context) error {
		_, err := a.m.st.Pool().Exec(ctx, `UPDATE edge_sessions SET relaying = true, updated_at = now() WHERE uuid = $1`, a.uuid)
		return err
	})
}

func (a *admission) End(reason string, fromClient, fromServer int64) {
	a.once.Do(func() {
		m := a.m
		pe := pendingEnd{uuid: a.uuid, reason: reason, fromClient: fromClient, fromServer: fromServer}
		m.mu.Lock()
		if m.stopping {
			if len(m.pending) < maxPending {
				m.pending = append(m.pending, pe)
			}
			m.mu.Unlock()
			return
		}
		m.inflight[pe.uuid] = pe
		m.mu.Unlock()
		m.async(func(ctx context.Context) error {
			err := m.recordEnds(ctx, []pendingEnd{pe})
			m.mu.Lock()
			delete(m.inflight, pe.uuid)
			// once Run is ending its last batch has this end
			if err != nil && !m.stopping && len(m.pending) < maxPending {
				m.pending = append(m.pending, pe)
			}
			m.mu.Unlock()
			return err
		})
	})
}

// async runs one write in the background, bounded by opTimeout and
// cancelled by the end of Run.
func (m *Member) async(f func(ctx context.Context) error) {
	go func() {
		ctx, cancel := context.WithTimeout(m.bg, opTimeout)
		defer cancel()
		if err := f(ctx); err != nil && m.bg.Err() == nil {
			m.log.Debug("fleet write failed", "err", m.noteErr(err))
		}
	}()
}

func (m *Member) recordEnds(ctx context.Context, ends []pendingEnd) error {
	if len(ends) == 0 {
		return nil
	}
	uuids := make([]string, len(ends))
	reasons := make([]string, len(ends))
	fc := make([]int64, len(ends))
	fs := make([]int64, len(ends))
	for i, e := range ends {
		uuids[i], reasons[i], fc[i], fs[i] = e.uuid, e.reason, e.fromClient, e.fromServer
	}
	_, err := m.st.Pool().Exec(ctx, endsSQL, uuids, reasons, fc, fs, m.node, ReasonNodeLost)
	return err
}

// endsSQL records ends: $1..$4 the sessions' uuids, reasons and byte
// counts, $5 the node, $6 ReasonNodeLost (a session marked lost while the
// node was cut off gets its real end).
const endsSQL = `UPDATE edge_sessions s SET ended_at = now(), end_reason = v.r,
		bytes_from_client = v.c, bytes_from_server = v.s, updated_at = now()
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(u, r, c, s)
		WHERE s.uuid = v.u AND s.node = $5 AND (s.ended_at IS NULL OR s.end_reason = $6)`

// Run keeps the node's part of the fleet until ctx ends: the heartbeat
// (with byte counts, pending ends, dead nodes' sessions, old rows) and the
// notification connection (stops, bans), each reconnecting with backoff.
// At its end (by edge.StopDeadline: within the server's shutdown bound)
// it writes, in one batch of statements sent at once, every session end
// not recorded yet (those being written are cancelled and written again
// here: an end already recorded is left as it is), "node stopped" for any
// session still recorded live, and the node's stopped_at. A batch that
// does not make the deadline leaves the rows as a killed node would: the
// next start of the node ends them ("node restarted"), the other nodes
// after dead_after ("node lost").
func (m *Member) Run(ctx context.Context, node edge.Node) {
	m.mu.Lock()
	m.nodeV = node
	m.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); m.listen(ctx) }()
	go func() { defer wg.Done(); m.heartbeatLoop(ctx) }()
	go func() { defer wg.Done(); m.checkNotes(ctx) }()
	<-ctx.Done()
	deadline := edge.StopDeadline(ctx, time.Second)
	// From here ends go to pending; those being written now are cancelled
	// and written again by the batch.
	m.mu.Lock()
	m.stopping = true
	ends := m.pending
	m.pending = nil
	for _, pe := range m.inflight {
		ends = append(ends, pe)
	}
	m.mu.Unlock()
	m.bgCancel()
	// The heartbeat and the notification connection end with ctx (their
	// statements are cancelled); wait for them (so that no heartbeat
	// lands after the stop), but keep most of the time for the batch.
	loops := make(chan struct{})
	go func() { wg.Wait(); close(loops) }()
	select {
	case <-loops:
	case <-time.After(time.Until(deadline) / 2):
	}
	// ends told since, or given back by a heartbeat that failed
	m.mu.Lock()
	ends = append(ends, m.pending...)
	m.pending = nil
	m.mu.Unlock()
	fctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	if err := m.stopBatch(fctx, ends); err != nil {
		m.log.Warn("fleet: the stop could not be recorded within the shutdown bound: the next start of this node ends its sessions, the other nodes after dead_after",
			"sessions", len(ends), "err", m.st.Err(err))
	} else {
		m.log.Debug("fleet: stop recorded", "ends", len(ends), "took", time.Since(start), "left", time.Until(deadline))
	}
}

// stopBatch records ends, ends the sessions still recorded live as "node
// stopped" and records the node stopped: three statements sent at once
// (one round trip, one implicit transaction). The last two only while
// this run holds the node name (another run that took it over has its
// own sessions under it).
func (m *Member) stopBatch(ctx context.Context, ends []pendingEnd) error {
	uuids := make([]string, len(ends))
	reasons := make([]string, len(ends))
	fc := make([]int64, len(ends))
	fs := make([]int64, len(ends))
	for i, e := range ends {
		uuids[i], reasons[i], fc[i], fs[i] = e.uuid, e.reason, e.fromClient, e.fromServer
	}
	b := &pgx.Batch{}
	// The server gives up the batch by itself at the deadline (a lock it
	// waits for): pgx's cancellation of a statement it gave up on is sent
	// from a goroutine the process may not wait for, and a batch left
	// waiting on the server would be applied whenever the lock is freed.
	if dl, ok := ctx.Deadline(); ok {
		b.Queue(`SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", max(1, time.Until(dl).Milliseconds())))
	}
	b.Queue(endsSQL, uuids, reasons, fc, fs, m.node, ReasonNodeLost)
	if !m.takenOver.Load() {
		b.Queue(`UPDATE edge_sessions SET ended_at = now(), end_reason = $2 WHERE node = $1 AND ended_at IS NULL
			AND EXISTS (SELECT 1 FROM edge_nodes WHERE name = $1 AND run_id = $3)`, m.node, ReasonNodeStopped, m.run.id)
		b.Queue(`UPDATE edge_nodes SET stopped_at = now() WHERE name = $1 AND run_id = $2`, m.node, m.run.id)
	}
	return m.st.Pool().SendBatch(ctx, b).Close()
}

func nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return backoffFirst
	}
	return min(2*b, backoffMax)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// listen keeps one dedicated connection LISTENing for stop requests and
// bans.
func (m *Member) listen(ctx context.Context) {
	var backoff time.Duration
	for ctx.Err() == nil {
		connected, err := m.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = 0 // a connection that worked: the next try is quick again
		}
		// A lost notification connection is the quickest sign of a lost
		// server; a probe or the heartbeat says when it answers again.
		m.listenUp.Store(false)
		m.setState(&m.beatUp, false, err)
		backoff = nextBackoff(backoff)
		if !sleepCtx(ctx, backoff) {
			return
		}
	}
}

// listenOnce connects, LISTENs and handles notifications until the
// connection fails; connected says it got as far as listening. Every
// statement is bounded by opTimeout; while no notification comes, the
// connection is pinged every heartbeat (at least 1 s apart), so that a connection the network
// lost without a word (no FIN, no RST) is replaced within a heartbeat and
// opTimeout rather than after the kernel's keepalive.
func (m *Member) listenOnce(ctx context.Context) (connected bool, _ error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	conn, err := pgx.ConnectConfig(cctx, m.st.Pool().Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return false, err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(c)
	}()
	// LISTEN, then the bans and stops told while this connection was away.
	lctx, cancel := context.WithTimeout(ctx, opTimeout)
	for _, ch := range []string{chanStop, chanBan} {
		if _, err = conn.Exec(lctx, "LISTEN "+ch); err != nil {
			break
		}
	}
	if err == nil {
		err = m.loadBans(lctx)
	}
	if err == nil {
		err = m.pollStops(lctx)
	}
	cancel()
	if err != nil {
		return false, err
	}
	m.listenUp.Store(true)
	m.setState(&m.beatUp, true, nil)
	for {
		wctx, cancel := context.WithTimeout(ctx, max(m.o.Heartbeat, time.Second))
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && wctx.Err() != nil {
			// Quiet for a heartbeat: is the connection still there?
			pctx, cancel := context.WithTimeout(ctx, opTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("fleet: the notification connection does not answer: %w", err)
			}
			continue
		}
		if err != nil {
			return true, err
		}
		// A notification is only a hint: what it names is looked up in
		// the tables (which only the fleet's role may write) before
		// anything is stopped or banned.
		switch n.Channel {
		case chanStop:
			if node, _, _ := strings.Cut(n.Payload, "\t"); node == m.node {
				m.note(func() { m.noteStops = true })
			}
		case chanBan:
			key, _, _ := strings.Cut(n.Payload, "\t")
			m.note(func() {
				switch {
				case m.noteBanAll:
				case len(key) == 0 || len(key) > maxBanKey || len(m.noteBans) >= maxNotedBans:
					m.noteBanAll = true
					clear(m.noteBans)
				default:
					m.noteBans[key] = struct{}{}
				}
			})
		}
	}
}

// Bounds of what notifications may queue for checkNotes: ban keys (an
// address or a uid: short) and how many; past either, every ban is
// reloaded instead.
const (
	maxBanKey    = 256
	maxNotedBans = 1024
)

// note records what a notification asked for and wakes checkNotes; it
// never blocks the notification connection.
func (m *Member) note(f func()) {
	m.noteMu.Lock()
	f()
	m.noteMu.Unlock()
	select {
	case m.noteKick <- struct{}{}:
	default:
	}
}

// checkNotes does what notifications asked for, as the tables say: it
// ends the local sessions whose stop is recorded (pollStops) and caches
// the bans in force of the keys named (or reloads them all). Requests
// that arrive while one check runs are gathered into the next, so a flood
// of notifications costs one query at a time.
func (m *Member) checkNotes(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.noteKick:
		}
		m.noteMu.Lock()
		stops, all := m.noteStops, m.noteBanAll
		var keys []string
		for k := range m.noteBans {
			keys = append(keys, k)
		}
		m.noteStops, m.noteBanAll = false, false
		clear(m.noteBans)
		m.noteMu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		var err error
		if stops {
			err = m.pollStops(cctx)
		}
		if err == nil && all {
			err = m.loadBans(cctx)
		} else if err == nil && len(keys) > 0 {
			err = m.checkBans(cctx, keys)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			// The heartbeat polls stops and reloads bans anyway.
			m.log.Debug("fleet: checking a notification failed", "err", m.st.Err(err))
		}
	}
}

// checkBans caches the bans in force of keys, as edge_bans has them.
func (m *Member) checkBans(ctx context.Context, keys []string) error {
	rows, err := m.st.Pool().Query(ctx, `SELECT key, `+banLeft+` FROM edge_bans WHERE key = ANY($1) AND until > now()`, keys)
	if err != nil {
		return m.noteErr(fmt.Errorf("fleet: check bans: %w", err))
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var left int64
		if err := rows.Scan(&k, &left); err != nil {
			return m.noteErr(err)
		}
		m.cacheBan(k, left)
	}
	return m.noteErr(rows.Err())
}

func (m *Member) stopLocal(uuid string) {
	m.mu.Lock()
	n := m.nodeV
	m.mu.Unlock()
	if n != nil && n.StopSession(uuid, ReasonStop) {
		m.log.Info("session stopped on a fleet request", "uuid", uuid)
	}
}

// pollStops ends the local sessions whose stop was requested while no
// notification could arrive.
func (m *Member) pollStops(ctx context.Context) error {
	rows, err := m.st.Pool().Query(ctx, `SELECT uuid FROM edge_sessions WHERE node = $1 AND ended_at IS NULL AND stop_requested_at IS NOT NULL`, m.node)
	if err != nil {
		return m.noteErr(err)
	}
	uuids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return m.noteErr(err)
	}
	for _, u := range uuids {
		go m.stopLocal(u)
	}
	return nil
}

func (m *Member) heartbeatLoop(ctx context.Context) {
	var backoff time.Duration
	n := 0
	for {
		wait := m.o.Heartbeat
		if err := m.beat(ctx, n); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.setState(&m.beatUp, false, err)
			backoff = nextBackoff(backoff)
			wait = min(backoff, m.o.Heartbeat)
		} else {
			backoff = 0
			m.setState(&m.beatUp, true, nil)
		}
		n++
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// beat is one heartbeat.
func (m *Member) beat(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	pool := m.st.Pool()
	if m.takenOver.Load() {
		return errTakenOver
	}
	tag, err := pool.Exec(ctx, `INSERT INTO edge_nodes (name, address, run_id, host, boot_id, pid) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL WHERE edge_nodes.run_id = $3`,
		m.node, m.o.Address, m.run.id, m.run.host, m.run.boot, m.run.pid)
	if err != nil {
		return m.st.Err(err)
	}
	if tag.RowsAffected() == 0 {
		// Only when this run was taken for dead (no heartbeat for
		// DeadAfter: a partition, a stopped process) and another run of
		// the same name started meanwhile.
		m.takenOver.Store(true)
		m.log.Error("fleet: another run of this node name took it over while this one could not heartbeat; this node no longer records its sessions and refuses new logins: restart it",
			"node", m.node)
		return errTakenOver
	}
	wasUp := m.up.Load()
	m.mu.Lock()
	pend := m.pending
	m.pending = nil
	node := m.nodeV
	m.mu.Unlock()
	if err := m.recordEnds(ctx, pend); err != nil {
		m.mu.Lock()
		m.pending = append(pend, m.pending...)
		m.mu.Unlock()
		return m.st.Err(err)
	}
	// Stops requested while no notification could reach this node (its
	// notification connection was away while the store answered).
	if err := m.pollStops(ctx); err != nil {
		return err
	}
	if node != nil {
		stats := node.SessionStats()
		if len(stats) > 0 {
			uuids := make([]string, len(stats))
			fc := make([]int64, len(stats))
			fs := make([]int64, len(stats))
			for i, s := range stats {
				uuids[i], fc[i], fs[i] = s.UUID, s.FromClient, s.FromServer
			}
			// A session marked lost while this node could not heartbeat
			// (the store was away) is live again.
			if _, err := pool.Exec(ctx, `UPDATE edge_sessions s SET bytes_from_client = v.c, bytes_from_server = v.s, updated_at = now(),
				ended_at = CASE WHEN s.end_reason = $5 THEN NULL ELSE s.ended_at END,
				end_reason = CASE WHEN s.end_reason = $5 THEN NULL ELSE s.end_reason END
				FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(u, c, s)
				WHERE s.uuid = v.u AND s.node = $4`, uuids, fc, fs, m.node, ReasonNodeLost); err != nil {
				return m.st.Err(err)
			}
		}
	}
	// Only a node that has been up for DeadAfter judges others: after an
	// outage of the store every node needs a heartbeat's time to be back.
	if wasUp && time.Since(time.Unix(0, m.upSince.Load())) >= m.o.DeadAfter {
		tag, err := pool.Exec(ctx, `UPDATE edge_sessions SET ended_at = now(), end_reason = $3
			WHERE ended_at IS NULL AND node <> $1 AND node IN
			(SELECT name FROM edge_nodes WHERE heartbeat_at < now() - $2 * interval '1 millisecond')`, m.node, m.o.DeadAfter.Milliseconds(), ReasonNodeLost)
		if err != nil {
			return m.st.Err(err)
		}
		if tag.RowsAffected() > 0 {
			m.log.Warn("sessions of nodes without a heartbeat marked ended", "sessions", tag.RowsAffected(), "dead_after", m.o.DeadAfter)
		}
	}
	if n%12 == 0 {
		if _, err := pool.Exec(ctx, `DELETE FROM edge_bans WHERE until < now()`); err != nil {
			return m.st.Err(err)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM edge_login_failures WHERE at < now() - interval '1 day'`); err != nil {
			return m.st.Err(err)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM edge_sessions WHERE ended_at < now() - $1 * interval '1 millisecond'`, m.o.Retention.Milliseconds()); err != nil {
			return m.st.Err(err)
		}
		if err := m.loadBans(ctx); err != nil {
			return err
		}
	}
	return nil
}
