package auth

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/mattn/go-sqlite3" // the sqlite driver
)

// SQLite checks users against an sqlite database with xpra's schema
//
//	users(username, password, uid, gid, displays, env_options, session_options)
//
// read live on every login (a file made by xpra's own sqlite tool works
// unchanged). Rows are checked as by every table module (see UserRow):
// the first row whose password matches gives the sessions; a hashed
// password needs an encrypted transport. Options: filename (default
// "sqlite.sdb", as xpra), prompt.
type SQLite struct{ tableModule }

var _ Authenticator = (*SQLite)(nil)

func newSQLite(o *optionReader) (*SQLite, error) {
	b := readBase(o, "sqlite", false)
	f := o.str("filename", "sqlite.sdb")
	if f == "" {
		return nil, fmt.Errorf("%w: module sqlite needs a non-empty filename= option", ErrSpec)
	}
	abs, err := filepath.Abs(f)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return &SQLite{tableModule{base: b, src: SQLiteTable(abs)}}, nil
}

// SQLiteTable is the users table of the sqlite file at this path.
type SQLiteTable string

var _ UserTable = SQLiteTable("")

// sqliteDSN makes a go-sqlite3 URI for path; readOnly also stops the
// driver from creating a missing file.
func sqliteDSN(path, mode string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(path) + "?mode=" + mode + "&_busy_timeout=5000"
}

// openSQLiteRO opens an existing database read-only.
func openSQLiteRO(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot open the database: %w", err)
	}
	return sql.Open("sqlite3", sqliteDSN(path, "ro"))
}

// openSQLiteRW opens an existing database for writing (never creates it).
func openSQLiteRW(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot open the database: %w", err)
	}
	return sql.Open("sqlite3", sqliteDSN(path, "rw"))
}

const sqliteColumns = "rowid, username, password, uid, gid, displays, env_options, session_options"

type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanUserRows reads rows of the columns id, username, password, uid,
// gid, displays, env_options, session_options (database/sql or pgx).
func ScanUserRows(rows rowScanner) ([]UserRow, error) {
	var out []UserRow
	for rows.Next() {
		var r UserRow
		var name sql.NullString
		if err := rows.Scan(&r.ID, &name, &r.Password, &r.UID, &r.GID, &r.Displays, &r.EnvOptions, &r.SessionOptions); err != nil {
			return nil, err
		}
		r.Username = name.String
		out = append(out, r)
	}
	return out, rows.Err()
}

func (p SQLiteTable) query(ctx context.Context, where string, args ...any) ([]UserRow, error) {
	db, err := openSQLiteRO(string(p))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT "+sqliteColumns+" FROM users"+where+" ORDER BY rowid", args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	return ScanUserRows(rows)
}

// UserRows implements UserSource.
func (p SQLiteTable) UserRows(ctx context.Context, username string) ([]UserRow, error) {
	return p.query(ctx, " WHERE username=?", username)
}

// AllRows implements UserTable.
func (p SQLiteTable) AllRows(ctx context.Context) ([]UserRow, error) { return p.query(ctx, "") }

// inTx runs f in one transaction and commits only if it succeeds.
func inTx(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// sqliteSchema is xpra's users table (sqlauthbase.DatabaseUtilBase.create).
const sqliteSchema = "CREATE TABLE users (username VARCHAR(255) NOT NULL, password VARCHAR(255), uid VARCHAR(63), gid VARCHAR(63), displays VARCHAR(8191), env_options VARCHAR(8191), session_options VARCHAR(8191))"

// Create implements UserTable: it makes the file and its table.
func (p SQLiteTable) Create(ctx context.Context) error {
	db, err := sql.Open("sqlite3", sqliteDSN(string(p), "rwc"))
	if err != nil {
		return err
	}
	defer db.Close()
	return inTx(ctx, db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqliteSchema)
		return err
	})
}

// Insert implements UserTable.
func (p SQLiteTable) Insert(ctx context.Context, r UserRow) error {
	db, err := openSQLiteRW(string(p))
	if err != nil {
		return err
	}
	defer db.Close()
	return inTx(ctx, db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO users(username, password, uid, gid, displays, env_options, session_options) VALUES(?, ?, ?, ?, ?, ?, ?)",
			r.Username, r.Password, r.UID, r.GID, r.Displays, r.EnvOptions, r.SessionOptions)
		return err
	})
}

// Remove implements UserTable.
func (p SQLiteTable) Remove(ctx context.Context, username string, match func(UserRow) bool) (int, error) {
	db, err := openSQLiteRW(string(p))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT "+sqliteColumns+" FROM users WHERE username=? ORDER BY rowid", username)
		if err != nil {
			return err
		}
		found, err := ScanUserRows(rows)
		rows.Close()
		if err != nil {
			return err
		}
		for _, r := range found {
			if match != nil && !match(r) {
				continue
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM users WHERE rowid=?", r.ID); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
