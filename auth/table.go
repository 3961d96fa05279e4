package auth

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// UserRow is one row of xpra's users table, whichever database holds it
// (an sqlite file, the fleet's PostgreSQL):
//
//	users(username, password, uid, gid, displays, env_options, session_options)
//
// A NULL column is an invalid NullString. ID orders the rows (sqlite's
// rowid, PostgreSQL's id); it is 0 for a row not read from a database.
type UserRow struct {
	ID             int64
	Username       string
	Password       sql.NullString
	UID, GID       sql.NullString
	Displays       sql.NullString
	EnvOptions     sql.NullString
	SessionOptions sql.NullString
}

// Identity is what a login matching this row yields.
func (r UserRow) Identity() Identity {
	return Identity{
		Username:       r.Username,
		UID:            r.UID.String,
		GID:            r.GID.String,
		Displays:       splitDisplays(r.Displays.String),
		Env:            parseSimpleDict(r.EnvOptions.String, ";"),
		SessionOptions: parseSimpleDict(r.SessionOptions.String, ";"),
	}
}

// MatchesPassword reports whether pass is this row's password: the same
// plaintext, or a stored argon2id or bcrypt hash of it. A NULL or empty
// password matches nothing.
func (r UserRow) MatchesPassword(pass string) bool {
	if !r.Password.Valid || r.Password.String == "" {
		return false
	}
	pw := r.Password.String
	return pw == pass || isHash(pw) && verifyHash(pw, []byte(pass))
}

// UserSource reads a user's rows in table order. It is asked again at
// every login (nothing is cached between logins), so a change is seen at
// the next one. An error wrapping ErrUnavailable means the database
// could not be reached.
type UserSource interface {
	UserRows(ctx context.Context, username string) ([]UserRow, error)
}

// UserTable is a users table the `sqlite` and `pg` tools edit.
type UserTable interface {
	UserSource
	// Create makes the table (sqlite: the file; PostgreSQL: migrations
	// do, Create only checks that it exists).
	Create(ctx context.Context) error
	// AllRows returns every row in table order.
	AllRows(ctx context.Context) ([]UserRow, error)
	// Insert adds one row.
	Insert(ctx context.Context, r UserRow) error
	// Remove deletes, in one transaction, the rows of username for which
	// match is true (every row when match is nil), returning how many.
	Remove(ctx context.Context, username string, match func(UserRow) bool) (int, error)
}

// tableModule is an auth module over a UserSource: sqlite and postgres.
// Several rows per user are allowed; the first row whose password
// matches gives the sessions. A password column holding an argon2id or
// bcrypt hash is checked with the xor digest, on encrypted transports
// only.
type tableModule struct {
	base
	src UserSource
}

// Begin implements Authenticator. The user's rows are read once per
// login, when the challenge is made, and used again for the response.
func (m *tableModule) Begin(username string, t Transport) Login {
	return newLogin(&tableLogin{m: m}, username, t)
}

// tableLogin is the checker of one login: it holds the rows read for
// the challenge until the response is verified.
type tableLogin struct {
	m    *tableModule
	rows []UserRow
	err  error
	read bool
}

// sourceTimeout bounds the read of a user's rows for the challenge
// (Challenge has no context).
const sourceTimeout = 10 * time.Second

func (l *tableLogin) moduleName() string { return l.m.name }
func (l *tableLogin) prompt() string     { return l.m.promptS }

func (l *tableLogin) load(ctx context.Context, username string) ([]UserRow, error) {
	if !l.read {
		l.read = true
		l.rows, l.err = l.m.src.UserRows(ctx, username)
		if l.err != nil {
			l.err = fmt.Errorf("%s: %w", l.m.name, l.err)
		}
	}
	return l.rows, l.err
}

func (l *tableLogin) mode(username string, t Transport) (mode, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sourceTimeout)
	defer cancel()
	rows, err := l.load(ctx, username)
	if err != nil {
		// Verify reports it; the challenge looks like any other.
		return modeHMAC, nil
	}
	plain, hashed := 0, 0
	for _, r := range rows {
		if !r.Password.Valid {
			continue
		}
		if isHash(r.Password.String) {
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

func (l *tableLogin) verify(ctx context.Context, username string, p *proof) (Identity, error) {
	rows, err := l.load(ctx, username)
	if err != nil {
		p.dummyCheck()
		return Identity{}, err
	}
	for _, r := range rows {
		if !r.Password.Valid || r.Password.String == "" {
			continue
		}
		ok, err := p.checkStoredCtx(ctx, storedCredential(r.Password.String))
		if err != nil {
			return Identity{}, fmt.Errorf("%s: %w", l.m.name, err)
		}
		if ok {
			return r.Identity(), nil
		}
	}
	if len(rows) == 0 {
		p.dummyCheck()
	}
	return Identity{}, failed(l.m.name)
}

// Postgres checks users against the fleet's PostgreSQL users table
// (xpra's sqlite schema, read live at every login; see package fleet).
// Options: prompt. It needs Options.Postgres ([store] postgres).
type Postgres struct{ tableModule }

var _ Authenticator = (*Postgres)(nil)

func newPostgres(o *optionReader, src UserSource) (*Postgres, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: module postgres needs [store] postgres (or --postgres) to name the fleet's database", ErrSpec)
	}
	return &Postgres{tableModule{base: readBase(o, "postgres", false), src: src}}, nil
}
