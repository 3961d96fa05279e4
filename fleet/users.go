package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xpra-edge/xpra-edge/auth"
)

// userQueryTimeout bounds one read of a user's rows at login: past it
// the login fails closed (ErrUnavailable).
const userQueryTimeout = 5 * time.Second

// Users is the fleet's users table (edge_users): xpra's sqlite schema
// with the same meaning, read live at every login by the postgres auth
// module and edited by `xpra-edge pg`.
type Users struct{ s *Store }

var _ auth.UserTable = (*Users)(nil)

// Users returns the store's users table.
func (s *Store) Users() *Users { return &Users{s: s} }

const userColumns = "id, username, password, uid, gid, displays, env_options, session_options"

func (u *Users) query(ctx context.Context, where string, args ...any) ([]auth.UserRow, error) {
	rows, err := u.s.pool.Query(ctx, "SELECT "+userColumns+" FROM edge_users"+where+" ORDER BY id", args...)
	if err != nil {
		return nil, u.s.Err(err)
	}
	defer rows.Close()
	out, err := auth.ScanUserRows(rows)
	return out, u.s.Err(err)
}

// UserRows implements auth.UserSource: one query per call, bounded by
// userQueryTimeout; a database that cannot be reached gives an error
// wrapping ErrUnavailable.
func (u *Users) UserRows(ctx context.Context, username string) ([]auth.UserRow, error) {
	ctx, cancel := context.WithTimeout(ctx, userQueryTimeout)
	defer cancel()
	return u.query(ctx, " WHERE username = $1", username)
}

// AllRows implements auth.UserTable.
func (u *Users) AllRows(ctx context.Context) ([]auth.UserRow, error) { return u.query(ctx, "") }

// Create implements auth.UserTable: Open's migrations made the table;
// Create checks that it is there.
func (u *Users) Create(ctx context.Context) error {
	var ok bool
	if err := u.s.pool.QueryRow(ctx, "SELECT to_regclass('edge_users') IS NOT NULL").Scan(&ok); err != nil {
		return u.s.Err(err)
	}
	if !ok {
		return errors.New("table edge_users is missing although the schema is migrated")
	}
	return nil
}

// Insert implements auth.UserTable.
func (u *Users) Insert(ctx context.Context, r auth.UserRow) error {
	_, err := u.s.pool.Exec(ctx, "INSERT INTO edge_users (username, password, uid, gid, displays, env_options, session_options) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		r.Username, r.Password, r.UID, r.GID, r.Displays, r.EnvOptions, r.SessionOptions)
	return u.s.Err(err)
}

// Remove implements auth.UserTable.
func (u *Users) Remove(ctx context.Context, username string, match func(auth.UserRow) bool) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, u.s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+userColumns+" FROM edge_users WHERE username = $1 ORDER BY id FOR UPDATE", username)
		if err != nil {
			return err
		}
		found, err := auth.ScanUserRows(rows)
		rows.Close()
		if err != nil {
			return err
		}
		var ids []int64
		for _, r := range found {
			if match == nil || match(r) {
				ids = append(ids, r.ID)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, "DELETE FROM edge_users WHERE id = ANY($1)", ids)
		n = int(tag.RowsAffected())
		return err
	})
	return n, u.s.Err(err)
}

// ImportResult counts what ImportSQLite did, per user of the file.
type ImportResult struct {
	Added     int // users not in the database before
	Replaced  int // users whose rows differed and were replaced
	Unchanged int // users whose rows were already the same
	Rows      int // rows in the file
}

func (r ImportResult) String() string {
	return fmt.Sprintf("%d rows, %d users: %d added, %d replaced, %d unchanged", r.Rows, r.Added+r.Replaced+r.Unchanged, r.Added, r.Replaced, r.Unchanged)
}

// ImportSQLite copies the users of an xpra sqlite file into the table in
// one transaction: every user of the file ends up with exactly the
// file's rows (in the file's order); users only in the database are left
// alone. Importing the same file again changes nothing (all unchanged).
func (u *Users) ImportSQLite(ctx context.Context, path string) (ImportResult, error) {
	var res ImportResult
	rows, err := auth.SQLiteTable(path).AllRows(ctx)
	if err != nil {
		return res, fmt.Errorf("read %s: %w", path, err)
	}
	res.Rows = len(rows)
	var order []string
	byUser := map[string][]auth.UserRow{}
	for _, r := range rows {
		if _, seen := byUser[r.Username]; !seen {
			order = append(order, r.Username)
		}
		byUser[r.Username] = append(byUser[r.Username], r)
	}
	err = pgx.BeginFunc(ctx, u.s.pool, func(tx pgx.Tx) error {
		res = ImportResult{Rows: len(rows)}
		// One import at a time, while logins go on reading.
		if _, err := tx.Exec(ctx, "LOCK TABLE edge_users IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		write := map[string]bool{}
		for _, name := range order {
			cur, err := tx.Query(ctx, "SELECT "+userColumns+" FROM edge_users WHERE username = $1 ORDER BY id", name)
			if err != nil {
				return err
			}
			have, err := auth.ScanUserRows(cur)
			cur.Close()
			if err != nil {
				return err
			}
			switch {
			case sameRows(have, byUser[name]):
				res.Unchanged++
				continue
			case len(have) == 0:
				res.Added++
			default:
				res.Replaced++
				if _, err := tx.Exec(ctx, "DELETE FROM edge_users WHERE username = $1", name); err != nil {
					return err
				}
			}
			write[name] = true
		}
		// In the file's order, so that a first import lists as the file.
		for _, r := range rows {
			if !write[r.Username] {
				continue
			}
			if _, err := tx.Exec(ctx, "INSERT INTO edge_users (username, password, uid, gid, displays, env_options, session_options) VALUES ($1, $2, $3, $4, $5, $6, $7)",
				r.Username, r.Password, r.UID, r.GID, r.Displays, r.EnvOptions, r.SessionOptions); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, u.s.Err(err)
	}
	return res, nil
}

// sameRows compares rows without their ids.
func sameRows(a, b []auth.UserRow) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.ID, y.ID = 0, 0
		if x != y {
			return false
		}
	}
	return true
}
