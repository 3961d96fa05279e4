package fleet

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

var (
	plain = auth.Transport{Kind: "tcp", Remote: "127.0.0.1:1"}
	tls   = auth.Transport{Kind: "ssl", Encrypted: true, Remote: "127.0.0.1:1"}
)

// login runs one whole xpra login (challenge, client response, verify).
func login(t *testing.T, a auth.Authenticator, user, password string, tr auth.Transport) (auth.Identity, error) {
	t.Helper()
	l := a.Begin(user, tr)
	ch, err := l.Challenge([]string{"xor", "hmac+sha256"}, []string{"hmac+sha256"})
	if err != nil {
		return auth.Identity{}, err
	}
	resp, cs, err := auth.Respond([]byte(password), *ch, tr.Encrypted)
	if err != nil {
		t.Fatal(err)
	}
	return l.Verify(context.Background(), resp, cs)
}

func cli(t *testing.T, s *Store, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := auth.UsersCLI(ctxT(t), s.Users(), "usage\n", args, &out, &errb); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errb.String())
	}
	return out.String()
}

func postgresModule(t *testing.T, s *Store) auth.Authenticator {
	t.Helper()
	sp, err := auth.ParseSpec("postgres")
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(sp, auth.Options{Postgres: s.Users()})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPostgresModuleAcrossNodes: a user added through one node's store
// logs in through another's at once; a password change and a removal
// are seen at the next login; sessions, uid/gid and options come from
// the row as with sqlite; a hashed password needs TLS.
func TestPostgresModuleAcrossNodes(t *testing.T) {
	c := pgtest.Start(t)
	a := openT(t, Options{DSN: c.DSN(), Node: "a"})
	b := openT(t, Options{DSN: c.DSN(), Node: "b"})
	modB := postgresModule(t, b)

	if _, err := login(t, modB, "alice", "pw1", plain); !errors.Is(err, auth.ErrFailed) {
		t.Fatalf("unknown user: %v", err)
	}
	cli(t, a, "add", "alice", "pw1", "1000", "1000", "tcp://10.0.0.1:14500/,:7", "K=V;X=Y", "speaker=off")
	id, err := login(t, modB, "alice", "pw1", plain)
	if err != nil {
		t.Fatalf("login on node b: %v", err)
	}
	if id.Module != "postgres" || id.UID != "1000" || id.GID != "1000" || len(id.Displays) != 2 || id.Displays[1] != ":7" ||
		id.Env["K"] != "V" || id.SessionOptions["speaker"] != "off" {
		t.Fatalf("identity %+v", id)
	}
	if _, err := login(t, modB, "alice", "wrong", plain); !errors.Is(err, auth.ErrFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	// Password change on node a: seen by node b's next login.
	cli(t, a, "remove", "alice")
	cli(t, a, "add", "--hash", "alice", "pw2")
	if _, err := login(t, modB, "alice", "pw1", tls); !errors.Is(err, auth.ErrFailed) {
		t.Fatalf("old password after change: %v", err)
	}
	var re *auth.RefusedError
	if _, err := login(t, modB, "alice", "pw2", plain); !errors.As(err, &re) {
		t.Fatalf("hashed password over plain tcp: %v", err)
	}
	if _, err := login(t, modB, "alice", "pw2", tls); err != nil {
		t.Fatalf("hashed password over tls: %v", err)
	}
	if out := cli(t, b, "authenticate", "alice", "pw2"); !strings.HasPrefix(out, "success, found sessions: (") {
		t.Fatalf("authenticate: %q", out)
	}
	cli(t, a, "remove", "alice", "pw2")
	if _, err := login(t, modB, "alice", "pw2", tls); !errors.Is(err, auth.ErrFailed) {
		t.Fatalf("removed user: %v", err)
	}
	// The module cannot be built without the store.
	sp, _ := auth.ParseSpec("postgres")
	if _, err := auth.New(sp, auth.Options{}); !errors.Is(err, auth.ErrSpec) {
		t.Fatalf("postgres module without a store: %v", err)
	}
}

// TestPostgresDownFailsClosed: with PostgreSQL stopped a login is
// refused with an error wrapping ErrUnavailable (the edge answers
// "authentication error" and counts no failure), within the bounds; once
// it is back, logins work again without reopening the store.
func TestPostgresDownFailsClosed(t *testing.T) {
	c := pgtest.Start(t)
	s := openT(t, Options{DSN: c.DSN(), ConnectTimeout: 2 * time.Second})
	cli(t, s, "add", "bob", "secret")
	mod := postgresModule(t, s)
	if _, err := login(t, mod, "bob", "secret", plain); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	start := time.Now()
	_, err := login(t, mod, "bob", "secret", plain)
	took := time.Since(start)
	if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrFailed) {
		t.Fatalf("login with PostgreSQL down: %v", err)
	}
	if strings.Contains(err.Error(), c.Password) {
		t.Fatalf("error holds the password: %v", err)
	}
	t.Logf("login with PostgreSQL down refused in %s: %v", took, err)
	if took > userQueryTimeout+time.Second {
		t.Fatalf("refusal took %s", took)
	}
	// The next one finds no server at all (connection refused).
	start = time.Now()
	_, err = login(t, mod, "bob", "secret", plain)
	if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrFailed) || time.Since(start) > userQueryTimeout+time.Second {
		t.Fatalf("second login with PostgreSQL down (%s): %v", time.Since(start), err)
	}
	t.Logf("then in %s: %v", time.Since(start), err)
	c.Start()
	if _, err := login(t, mod, "bob", "secret", plain); err != nil {
		t.Fatalf("login after PostgreSQL is back: %v", err)
	}
}

// makeSQLite makes an xpra sqlite users file with the given rows (NULLs
// where a field is nil).
func makeSQLite(t *testing.T, path string, rows [][]*string) {
	t.Helper()
	var out, errb bytes.Buffer
	if _, err := filepath.Abs(path); err != nil {
		t.Fatal(err)
	}
	if code := auth.SQLiteCLI([]string{path, "create"}, &out, &errb); code != 0 {
		if !strings.Contains(errb.String(), "already exists") {
			t.Fatal(errb.String())
		}
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM users"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		args := make([]any, 7)
		for i, v := range r {
			if v != nil {
				args[i] = *v
			}
		}
		if _, err := db.Exec("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)", args...); err != nil {
			t.Fatal(err)
		}
	}
}

func p(s string) *string { return &s }

// TestImportSQLite: an xpra sqlite file is imported with its NULLs, its
// several rows per user and its order; a second import changes nothing;
// a changed file replaces only the users that changed; users only in
// PostgreSQL stay; the list is the sqlite tool's list.
func TestImportSQLite(t *testing.T) {
	c := pgtest.Start(t)
	s := openT(t, Options{DSN: c.DSN()})
	file := filepath.Join(t.TempDir(), "users.sdb")
	makeSQLite(t, file, [][]*string{
		{p("u1"), p("a"), p("1000"), p("1000"), p(":1"), nil, nil},
		{p("u2"), nil, nil, nil, nil, nil, nil},
		{p("u1"), p("b"), p("1001"), p("1001"), p(":2"), p("A=1"), p("x=y")},
	})
	cli(t, s, "add", "pgonly", "zz")
	res, err := s.Users().ImportSQLite(ctxT(t), file)
	if err != nil {
		t.Fatal(err)
	}
	if res != (ImportResult{Added: 2, Rows: 3}) {
		t.Fatalf("first import: %+v", res)
	}
	res, err = s.Users().ImportSQLite(ctxT(t), file)
	if err != nil || res != (ImportResult{Unchanged: 2, Rows: 3}) {
		t.Fatalf("second import: %+v, %v", res, err)
	}
	// The same rows, in the same order, with their NULLs: the list
	// output equals the sqlite tool's for the same users.
	var sq, sqErr bytes.Buffer
	auth.SQLiteCLI([]string{file, "list"}, &sq, &sqErr)
	cli(t, s, "remove", "pgonly")
	if got := cli(t, s, "list"); got != sq.String() {
		t.Fatalf("pg list:\n%s\nsqlite list:\n%s", got, sq.String())
	}
	if !strings.Contains(sq.String(), "None") {
		t.Fatalf("NULLs not shown: %s", sq.String())
	}
	cli(t, s, "add", "pgonly", "zz")
	mod := postgresModule(t, s)
	if id, err := login(t, mod, "u1", "b", plain); err != nil || id.UID != "1001" || id.Env["A"] != "1" {
		t.Fatalf("imported second row: %+v %v", id, err)
	}
	// Change u1 only.
	makeSQLite(t, file, [][]*string{
		{p("u1"), p("c"), p("1000"), p("1000"), p(":1"), nil, nil},
		{p("u2"), nil, nil, nil, nil, nil, nil},
	})
	res, err = s.Users().ImportSQLite(ctxT(t), file)
	if err != nil || res != (ImportResult{Replaced: 1, Unchanged: 1, Rows: 2}) {
		t.Fatalf("import of a changed file: %+v, %v", res, err)
	}
	if _, err := login(t, mod, "u1", "b", plain); !errors.Is(err, auth.ErrFailed) {
		t.Fatalf("replaced row still logs in: %v", err)
	}
	if _, err := login(t, mod, "u1", "c", plain); err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, mod, "pgonly", "zz", plain); err != nil {
		t.Fatalf("user only in PostgreSQL: %v", err)
	}
	if _, err := s.Users().ImportSQLite(ctxT(t), filepath.Join(t.TempDir(), "missing.sdb")); err == nil {
		t.Fatal("import of a missing file succeeded")
	}
}

// TestImportSQLiteAllOrNothing: an import that fails part way (here the
// file's last user has a NUL byte in its password, which sqlite stores and
// PostgreSQL's text refuses) changes nothing: the user it had replaced
// keeps its rows, the one it had added is not there.
func TestImportSQLiteAllOrNothing(t *testing.T) {
	c := pgtest.Start(t)
	s := openT(t, Options{DSN: c.DSN()})
	cli(t, s, "add", "u1", "old")
	before := cli(t, s, "list")
	file := filepath.Join(t.TempDir(), "users.sdb")
	makeSQLite(t, file, [][]*string{
		{p("u1"), p("new"), nil, nil, nil, nil, nil},
		{p("u2"), p("pw2"), nil, nil, nil, nil, nil},
		{p("u3"), p("bad\x00pw"), nil, nil, nil, nil, nil},
	})
	if res, err := s.Users().ImportSQLite(ctxT(t), file); err == nil {
		t.Fatalf("import of a password with a NUL byte succeeded: %v", res)
	} else {
		t.Logf("import refused: %v", err)
	}
	if after := cli(t, s, "list"); after != before {
		t.Fatalf("a failed import changed the table:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
