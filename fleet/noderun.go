package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNodeNameInUse is wrapped by NewMember's error when another live run
// holds the node name: two nodes of one name would end, count and stop
// each other's sessions.
var ErrNodeNameInUse = errors.New("node name in use")

// errTakenOver: another run claimed this node's name while this one was
// taken for dead.
var errTakenOver = errors.New("the node name was taken over by another run of the same name")

// runIdentity is one run of a node: a random id made at start and the
// process it is.
type runIdentity struct {
	id   string
	host string
	boot string // /proc/sys/kernel/random/boot_id
	pid  int
}

func thisRun() runIdentity {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on Linux
	host, _ := os.Hostname()
	return runIdentity{id: hex.EncodeToString(b), host: host, boot: bootID(), pid: os.Getpid()}
}

// bootID is the kernel's boot id ("" where there is none).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// processGone says whether pid is certainly not running on this machine
// (kill(pid, 0) finds no such process).
var processGone = func(pid int) bool {
	if pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// claimNode records this run as the holder of the node name, in one
// transaction under the row's lock (two nodes starting together with one
// name: the second waits for the first, then is refused). The name is
// free when no row has it, when its run stopped cleanly (stopped_at), when
// its last heartbeat is older than DeadAfter, or when the run was on this
// machine (same host and boot id) and its process is gone (a crash or
// kill -9 followed by a restart: no need to wait out DeadAfter). Otherwise
// it is refused with ErrNodeNameInUse, saying which process holds it. A
// claimed name's previous run's live sessions are ended ("node
// restarted").
func (m *Member) claimNode(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, m.st.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO edge_nodes (name, address, run_id, host, boot_id, pid) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO NOTHING`, m.node, m.o.Address, m.run.id, m.run.host, m.run.boot, m.run.pid); err != nil {
			return err
		}
		var prev runIdentity
		var stopped bool
		var ageMs int64
		if err := tx.QueryRow(ctx, `SELECT run_id, host, boot_id, pid, stopped_at IS NOT NULL,
			(extract(epoch FROM now() - heartbeat_at) * 1000)::bigint FROM edge_nodes WHERE name = $1 FOR UPDATE`, m.node).
			Scan(&prev.id, &prev.host, &prev.boot, &prev.pid, &stopped, &ageMs); err != nil {
			return err
		}
		if prev.id != m.run.id {
			age := time.Duration(ageMs) * time.Millisecond
			sameMachine := prev.boot != "" && prev.boot == m.run.boot && prev.host == m.run.host
			switch {
			case stopped, prev.id == "", age >= m.o.DeadAfter:
			case sameMachine && prev.pid != m.run.pid && processGone(prev.pid):
				m.log.Info("fleet: the previous run of this node name is gone (its process no longer exists): taking the name over",
					"node", m.node, "pid", prev.pid, "last_heartbeat_ago", age.Round(time.Millisecond))
			default:
				return fmt.Errorf("fleet: %w: node name %q is held by another live run (pid %d on host %q, last heartbeat %s ago, dead_after %s): give this node its own [store] node, or stop the other one (a run whose heartbeat is older than dead_after may be replaced)",
					ErrNodeNameInUse, m.node, prev.pid, prev.host, age.Round(time.Millisecond), m.o.DeadAfter)
			}
			if _, err := tx.Exec(ctx, `UPDATE edge_nodes SET address = $2, run_id = $3, host = $4, boot_id = $5, pid = $6,
				started_at = now(), heartbeat_at = now(), stopped_at = NULL WHERE name = $1`,
				m.node, m.o.Address, m.run.id, m.run.host, m.run.boot, m.run.pid); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `UPDATE edge_sessions SET ended_at = now(), end_reason = $2
			WHERE node = $1 AND ended_at IS NULL`, m.node, ReasonRestarted)
		return err
	})
	if errors.Is(err, ErrNodeNameInUse) {
		return err
	}
	if err != nil {
		return m.st.Err(fmt.Errorf("fleet: record node: %w", err))
	}
	return nil
}
