package fleet

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// NodeRow is one node of the fleet as the registry knows it.
type NodeRow struct {
	Name      string
	Address   string
	Started   time.Time
	Heartbeat time.Time
	Stopped   *time.Time
	// Age is how long ago its heartbeat was (by the database's clock).
	Age time.Duration
}

// SessionRow is one recorded session.
type SessionRow struct {
	Node       string
	ID         int
	UUID       string
	User       string
	Client     string
	Target     string
	Started    time.Time
	Relaying   bool
	FromClient int64
	FromServer int64
	Updated    time.Time
	Ended      *time.Time
	Reason     string
}

// Name is the session's fleet-wide name, ":proxy-ID@node".
func (r SessionRow) Name() string { return fmt.Sprintf(":proxy-%d@%s", r.ID, r.Node) }

// ListLive returns the fleet's nodes and its live sessions (with ended
// ones too when ended is set), by node then id.
func ListLive(ctx context.Context, st *Store, ended bool) ([]NodeRow, []SessionRow, error) {
	rows, err := st.Pool().Query(ctx, `SELECT name, address, started_at, heartbeat_at, stopped_at,
		(extract(epoch FROM now() - heartbeat_at) * 1000)::bigint FROM edge_nodes ORDER BY name`)
	if err != nil {
		return nil, nil, st.Err(err)
	}
	nodes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (NodeRow, error) {
		var n NodeRow
		var ms int64
		err := r.Scan(&n.Name, &n.Address, &n.Started, &n.Heartbeat, &n.Stopped, &ms)
		n.Age = time.Duration(ms) * time.Millisecond
		return n, err
	})
	if err != nil {
		return nil, nil, st.Err(err)
	}
	q := `SELECT node, local_id, uuid, username, client_addr, target, started_at, relaying,
		bytes_from_client, bytes_from_server, updated_at, ended_at, coalesce(end_reason, '') FROM edge_sessions`
	if !ended {
		q += ` WHERE ended_at IS NULL`
	}
	q += ` ORDER BY node, local_id`
	rows, err = st.Pool().Query(ctx, q)
	if err != nil {
		return nil, nil, st.Err(err)
	}
	sessions, err := pgx.CollectRows(rows, scanSession)
	if err != nil {
		return nil, nil, st.Err(err)
	}
	return nodes, sessions, nil
}

func scanSession(r pgx.CollectableRow) (SessionRow, error) {
	var s SessionRow
	err := r.Scan(&s.Node, &s.ID, &s.UUID, &s.User, &s.Client, &s.Target, &s.Started, &s.Relaying,
		&s.FromClient, &s.FromServer, &s.Updated, &s.Ended, &s.Reason)
	return s, err
}

var (
	uuidRE  = regexp.MustCompile(`^[0-9a-f]{32}$`)
	proxyRE = regexp.MustCompile(`^:?proxy-([0-9]{1,9})@(.+)$`)
)

// IsFleetTarget reports whether target names a session of the fleet: a
// session uuid or ":proxy-ID@node".
func IsFleetTarget(target string) bool {
	return uuidRE.MatchString(target) || proxyRE.MatchString(target)
}

// ErrNoSuchSession: no live session has that uuid or name.
var ErrNoSuchSession = errors.New("no live session in the fleet has that name")

// RequestStop asks the node holding the live session target (a uuid or
// ":proxy-ID@node") to end it, and waits up to wait for the session to be
// recorded ended. It returns the session as last read.
func RequestStop(ctx context.Context, st *Store, target string, wait time.Duration) (SessionRow, error) {
	var where string
	var args []any
	if uuidRE.MatchString(target) {
		where, args = `uuid = $1`, []any{target}
	} else if m := proxyRE.FindStringSubmatch(target); m != nil {
		id, _ := strconv.Atoi(m[1])
		where, args = `node = $1 AND local_id = $2`, []any{m[2], id}
	} else {
		return SessionRow{}, fmt.Errorf("target %q: use a session uuid or :proxy-ID@node", target)
	}
	var uuid, node string
	err := st.Pool().QueryRow(ctx, `UPDATE edge_sessions SET stop_requested_at = now()
		WHERE ended_at IS NULL AND `+where+` RETURNING uuid, node`, args...).Scan(&uuid, &node)
	if errors.Is(err, pgx.ErrNoRows) {
		return SessionRow{}, fmt.Errorf("%s: %w", target, ErrNoSuchSession)
	}
	if err != nil {
		return SessionRow{}, st.Err(err)
	}
	if _, err := st.Pool().Exec(ctx, `SELECT pg_notify($1, $2)`, chanStop, node+"\t"+uuid); err != nil {
		return SessionRow{}, st.Err(err)
	}
	deadline := time.Now().Add(wait)
	for {
		rows, err := st.Pool().Query(ctx, `SELECT node, local_id, uuid, username, client_addr, target, started_at, relaying,
			bytes_from_client, bytes_from_server, updated_at, ended_at, coalesce(end_reason, '') FROM edge_sessions WHERE uuid = $1`, uuid)
		if err != nil {
			return SessionRow{}, st.Err(err)
		}
		row, err := pgx.CollectExactlyOneRow(rows, scanSession)
		if err != nil {
			return SessionRow{}, st.Err(err)
		}
		if row.Ended != nil {
			return row, nil
		}
		if !time.Now().Before(deadline) {
			return row, fmt.Errorf("%s on node %s: asked to stop, not ended after %v (is the node alive?)", row.Name(), node, wait)
		}
		select {
		case <-ctx.Done():
			return row, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FormatSessions writes the listing of `xpra-edge list --fleet`.
func FormatSessions(nodes []NodeRow, sessions []SessionRow, deadAfter time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Nodes:\n")
	for _, n := range nodes {
		state := "LIVE"
		switch {
		case n.Stopped != nil:
			state = "STOPPED"
		case n.Age > deadAfter:
			state = "LOST"
		}
		fmt.Fprintf(&b, "\t%s %s %s heartbeat %s ago\n", state, n.Name, n.Address, n.Age.Round(100*time.Millisecond))
	}
	if len(sessions) == 0 {
		fmt.Fprintf(&b, "No sessions in the fleet\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Sessions:\n")
	for _, s := range sessions {
		state := "LIVE"
		if !s.Relaying {
			state = "STARTING"
		}
		if s.Ended != nil {
			state = "ENDED(" + s.Reason + ")"
		}
		fmt.Fprintf(&b, "\t%s %s uuid=%s user=%s client=%s target=%s started=%s from_client=%d from_server=%d\n",
			state, s.Name(), s.UUID, s.User, s.Client, s.Target, s.Started.UTC().Format(time.RFC3339), s.FromClient, s.FromServer)
	}
	return b.String()
}
