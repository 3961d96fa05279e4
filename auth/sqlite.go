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
// unchanged). Several rows per user are allowed; the first row whose
// password matches gives the sessions. A password column holding an
// argon2id or bcrypt hash is checked with the xor digest, on encrypted
// transports only. Options: filename (default "sqlite.sdb", as xpra),
// prompt.
type SQLite struct {
	base
	filename string
}

var _ Authenticator = (*SQLite)(nil)

func newSQLite(o *optionReader) (*SQLite, error) {
	s := &SQLite{base: readBase(o, "sqlite", false)}
	f := o.str("filename", "sqlite.sdb")
	if f == "" {
		return nil, fmt.Errorf("%w: module sqlite needs a non-empty filename= option", ErrSpec)
	}
	abs, err := filepath.Abs(f)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	s.filename = abs
	return s, nil
}

// Begin implements Authenticator.
func (s *SQLite) Begin(username string, t Transport) Login { return newLogin(s, username, t) }

// sqliteDSN makes a go-sqlite3 URI for path; readOnly also stops the
// driver from creating a missing file.
func sqliteDSN(path, mode string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(path) + "?mode=" + mode + "&_busy_timeout=5000"
}

// openDB opens an existing database read-only.
func openSQLiteRO(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	return sql.Open("sqlite3", sqliteDSN(path, "ro"))
}

// sqliteRow is one row of the users table.
type sqliteRow struct {
	username, password                             string
	hasPassword                                    bool
	uid, gid, displays, envOptions, sessionOptions string
}

func (r sqliteRow) identity() Identity {
	return Identity{
		Username:       r.username,
		UID:            r.uid,
		GID:            r.gid,
		Displays:       splitDisplays(r.displays),
		Env:            parseSimpleDict(r.envOptions, ";"),
		SessionOptions: parseSimpleDict(r.sessionOptions, ";"),
	}
}

// userRows returns the rows of username in table order.
func userRows(ctx context.Context, db *sql.DB, username string) ([]sqliteRow, error) {
	rows, err := db.QueryContext(ctx, "SELECT username, password, uid, gid, displays, env_options, session_options FROM users WHERE username=? ORDER BY rowid", username)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sqliteRow
	for rows.Next() {
		var f [7]sql.NullString
		if err := rows.Scan(&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]); err != nil {
			return nil, err
		}
		out = append(out, sqliteRow{username: f[0].String, password: f[1].String, hasPassword: f[1].Valid,
			uid: f[2].String, gid: f[3].String, displays: f[4].String, envOptions: f[5].String, sessionOptions: f[6].String})
	}
	return out, rows.Err()
}

func (s *SQLite) rows(ctx context.Context, username string) ([]sqliteRow, error) {
	db, err := openSQLiteRO(s.filename)
	if err != nil {
		return nil, fmt.Errorf("sqlite: cannot open the database: %w", err)
	}
	defer db.Close()
	r, err := userRows(ctx, db, username)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query: %w", err)
	}
	return r, nil
}

func (s *SQLite) mode(username string, t Transport) (mode, error) {
	rows, err := s.rows(context.Background(), username)
	if err != nil {
		// Verify reports it; the challenge looks like any other.
		return modeHMAC, nil
	}
	plain, hashed := 0, 0
	for _, r := range rows {
		if !r.hasPassword {
			continue
		}
		if isHash(r.password) {
			hashed++
		} else {
			plain++
		}
	}
	switch {
	case hashed == 0:
		return modeHMAC, nil
	case t.Encrypted:
		return modeXOR, nil
	case plain > 0:
		return modeHMAC, nil // only the plaintext rows can match
	}
	return modeHMAC, &RefusedError{Reason: "this user's password is stored hashed and can only be checked over an encrypted connection (TLS or wss)"}
}

func (s *SQLite) verify(ctx context.Context, username string, p *proof) (Identity, error) {
	rows, err := s.rows(ctx, username)
	if err != nil {
		p.dummyCheck()
		return Identity{}, err
	}
	for _, r := range rows {
		if !r.hasPassword || r.password == "" {
			continue
		}
		ok, err := p.checkStoredCtx(ctx, storedCredential(r.password))
		if err != nil {
			return Identity{}, fmt.Errorf("%s: %w", s.name, err)
		}
		if ok {
			return r.identity(), nil
		}
	}
	if len(rows) == 0 {
		p.dummyCheck()
	}
	return Identity{}, failed(s.name)
}
