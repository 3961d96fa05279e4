package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

// TestFleetSIGTERMIsBounded (against the binary): a fleet node with idle,
// stalled and never-reading sessions exits within drain + 1 s of SIGTERM
// with its sessions' ends recorded ("proxy shutdown") and itself STOPPED;
// and still within drain + 1 s when the database takes every write and
// answers none (the session and node rows locked by another client),
// leaving those rows for the next start or the other nodes (dead_after).
func TestFleetSIGTERMIsBounded(t *testing.T) {
	pg := pgtest.Start(t)
	const idle = 20
	run := func(t *testing.T, node string, stuck bool) {
		store := fmt.Sprintf("\n[store]\npostgres = %q\nnode = %q\nheartbeat = \"250ms\"\ndead_after = \"2s\"\n", pg.DSN(), node)
		lp := startLifecycleProxy(t, `sniff_timeout = "60s"`+store, "--drain=2s")
		if !lp.waitLog("fleet store reachable", 10*time.Second) {
			t.Fatalf("the node did not join:\n%s", lp.log.String())
		}
		_ = lp.chunkStaller(t)
		_ = lp.neverReader(t)
		for i := 0; i < idle; i++ {
			s, err := benchLogin(t, lp.addr, "alice", "alice-pw", lp.pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		live := func() int {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM edge_sessions WHERE node = $1 AND ended_at IS NULL`, node).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		deadline := time.Now().Add(10 * time.Second)
		for live() != idle+2 {
			if time.Now().After(deadline) {
				t.Fatalf("%d live sessions recorded, want %d", live(), idle+2)
			}
			time.Sleep(20 * time.Millisecond)
		}
		var tx pgx.Tx
		if stuck {
			// every write of the node's rows waits for this transaction
			if tx, err = conn.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `SELECT 1 FROM edge_sessions, edge_nodes FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		_ = lp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-lp.done:
			lp.done <- err
			d := time.Since(start)
			t.Logf("exited %v after SIGTERM (drain 2s, %d sessions, database stuck: %v): %v", d.Round(time.Millisecond), idle+2, stuck, err)
			if err != nil {
				t.Fatalf("exit: %v", err)
			}
			if d > 3*time.Second {
				t.Fatalf("exited %v after SIGTERM with a 2 s drain:\n%s", d, lp.log.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no exit 10 s after SIGTERM")
		}
		if stuck {
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if n := live(); n != idle+2 {
				t.Fatalf("%d sessions live after a stuck stop, want %d (nothing written)", n, idle+2)
			}
			return
		}
		if n := live(); n != 0 {
			t.Fatalf("%d sessions still recorded live after the stop:\n%s", n, lp.log.String())
		}
		var ended int
		var stopped bool
		if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE end_reason = 'proxy shutdown'),
			(SELECT stopped_at IS NOT NULL FROM edge_nodes WHERE name = $1) FROM edge_sessions WHERE node = $1`, node).Scan(&ended, &stopped); err != nil {
			t.Fatal(err)
		}
		if ended != idle+2 || !stopped {
			out, _ := edgeCmd(t, "list", "--fleet", "--all", "--postgres="+pg.DSN())
			t.Fatalf("%d of %d ends recorded as proxy shutdown, node stopped %v:\n%s", ended, idle+2, stopped, strings.TrimSpace(out))
		}
	}
	t.Run("recorded", func(t *testing.T) { run(t, "bounded", false) })
	t.Run("database stuck", func(t *testing.T) { run(t, "stuck", true) })
}
