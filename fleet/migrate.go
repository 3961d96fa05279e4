package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migration is one step of the schema. Versions start at 1 and have no
// gaps; a version, once released, never changes its SQL (add a new one).
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// registered holds every migration of the binary, in any order; each
// file that owns tables adds its own with register from an init func.
var registered []Migration

// register adds migrations; Open checks the whole list (Migrations).
func register(ms ...Migration) { registered = append(registered, ms...) }

// SchemaTable records the applied migrations.
const SchemaTable = "edge_schema_version"

// migrationLockKey is the pg_advisory_lock key that serializes
// migrations of all nodes ("xpraedge" in ASCII).
const migrationLockKey int64 = 0x7870726165646765

// ErrSchemaNewer is wrapped by Open's error when the database was
// migrated by a newer binary.
var ErrSchemaNewer = errors.New("the database schema is newer than this binary")

// Migrations returns the binary's migrations sorted by version, or an
// error when versions are missing, repeated or not starting at 1.
func Migrations() ([]Migration, error) {
	ms := append([]Migration(nil), registered...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("fleet: migrations must be numbered 1..N without gaps or repeats: found version %d at position %d", m.Version, i+1)
		}
		if m.Name == "" || m.SQL == "" {
			return nil, fmt.Errorf("fleet: migration %d has no name or no SQL", m.Version)
		}
	}
	return ms, nil
}

// SchemaVersion is the highest migration this binary knows.
func SchemaVersion() int {
	ms, err := Migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// migrate brings the database to the binary's schema: under a session
// advisory lock (released by the server if this node dies), each missing
// migration is applied in its own transaction together with its row in
// SchemaTable. It returns the versions it applied.
func migrate(ctx context.Context, pool *pgxpool.Pool, node string) ([]int, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return nil, unavailable(err)
	}
	defer func() {
		// A fresh context: the caller's may be done; if the unlock
		// fails the connection is closed, which releases the lock.
		uctx, cancel := context.WithTimeout(context.Background(), lockQueryTimeout)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", migrationLockKey); err != nil {
			_ = conn.Hijack().Close(uctx)
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+SchemaTable+` (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	applied_by text NOT NULL DEFAULT ''
)`); err != nil {
		return nil, fmt.Errorf("fleet: create %s: %w", SchemaTable, err)
	}
	applied := map[int]string{}
	rows, err := conn.Query(ctx, "SELECT version, name FROM "+SchemaTable)
	if err != nil {
		return nil, fmt.Errorf("fleet: read %s: %w", SchemaTable, err)
	}
	highest := 0
	for rows.Next() {
		var v int
		var n string
		if err := rows.Scan(&v, &n); err != nil {
			rows.Close()
			return nil, err
		}
		applied[v] = n
		highest = max(highest, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fleet: read %s: %w", SchemaTable, err)
	}
	if highest > len(ms) {
		return nil, fmt.Errorf("%w: the database is at schema version %d (%q), this binary knows versions 1..%d: upgrade xpra-edge on this node",
			ErrSchemaNewer, highest, applied[highest], len(ms))
	}
	var done []int
	for _, m := range ms {
		if name, ok := applied[m.Version]; ok {
			if name != m.Name {
				return nil, fmt.Errorf("fleet: schema version %d is %q in the database but %q in this binary: the database was migrated by a different build", m.Version, name, m.Name)
			}
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+SchemaTable+" (version, name, applied_by) VALUES ($1, $2, $3)", m.Version, m.Name, node)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("fleet: migration %d (%s): %w", m.Version, m.Name, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}
