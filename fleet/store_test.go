package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openT(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func schemaRows(t *testing.T, s *Store) map[int]string {
	t.Helper()
	rows, err := s.Pool().Query(ctxT(t), "SELECT version, name FROM "+SchemaTable)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int]string{}
	for rows.Next() {
		var v int
		var n string
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		got[v] = n
	}
	return got
}

// TestMigrationsApplyOnceConcurrently opens the same fresh database from
// four stores at once: every migration is applied exactly once (a second
// application of CREATE TABLE would fail the Open), and a later Open
// applies nothing.
func TestMigrationsApplyOnceConcurrently(t *testing.T) {
	c := pgtest.Start(t)
	var logs [4]bytes.Buffer
	var wg sync.WaitGroup
	errs := make([]error, 4)
	stores := make([]*Store, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(ctxT(t), Options{DSN: c.DSN(), Node: "n", Logger: slog.New(slog.NewTextHandler(&logs[i], nil))})
		}()
	}
	wg.Wait()
	migrated := 0
	for i := range 4 {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer stores[i].Close()
		if strings.Contains(logs[i].String(), "fleet schema migrated") {
			migrated++
		}
	}
	if migrated != 1 {
		t.Fatalf("%d stores applied migrations, want 1", migrated)
	}
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	got := schemaRows(t, stores[0])
	if len(got) != len(ms) {
		t.Fatalf("schema rows %v, want %d", got, len(ms))
	}
	for _, m := range ms {
		if got[m.Version] != m.Name {
			t.Fatalf("version %d recorded as %q, want %q", m.Version, got[m.Version], m.Name)
		}
	}
	var log bytes.Buffer
	s := openT(t, Options{DSN: c.DSN(), Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if strings.Contains(log.String(), "migrated") {
		t.Fatalf("a second open migrated again: %s", log.String())
	}
	for _, tbl := range []string{"edge_users", "edge_cert_data"} {
		if _, err := s.Pool().Exec(ctxT(t), "SELECT count(*) FROM "+tbl); err != nil {
			t.Fatalf("table %s: %v", tbl, err)
		}
	}
}

// TestNewerSchemaRefused: a database migrated by a newer binary (a
// version this binary does not know) is refused with a clear error, and
// so is one whose version has another name.
func TestNewerSchemaRefused(t *testing.T) {
	c := pgtest.Start(t)
	s := openT(t, Options{DSN: c.DSN()})
	v := SchemaVersion()
	if _, err := s.Pool().Exec(ctxT(t), "INSERT INTO "+SchemaTable+" (version, name) VALUES ($1, 'from-the-future')", v+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctxT(t), Options{DSN: c.DSN()})
	if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), "from-the-future") || !strings.Contains(err.Error(), "upgrade xpra-edge") {
		t.Fatalf("open of a newer database: %v", err)
	}
	if _, err := s.Pool().Exec(ctxT(t), "DELETE FROM "+SchemaTable+" WHERE version = $1", v+1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctxT(t), "UPDATE "+SchemaTable+" SET name = 'other' WHERE version = 1"); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctxT(t), Options{DSN: c.DSN()})
	if err == nil || !strings.Contains(err.Error(), `schema version 1 is "other" in the database`) {
		t.Fatalf("open of a database with another version 1: %v", err)
	}
}

// TestMigrationListChecked: the registered list must be 1..N.
func TestMigrationListChecked(t *testing.T) {
	saved := registered
	defer func() { registered = saved }()
	if _, err := Migrations(); err != nil {
		t.Fatalf("the binary's own list: %v", err)
	}
	registered = append(append([]Migration(nil), saved...), Migration{Version: len(saved) + 2, Name: "gap", SQL: "SELECT 1"})
	if _, err := Migrations(); err == nil || !strings.Contains(err.Error(), "without gaps") {
		t.Fatalf("gap: %v", err)
	}
	registered = append(append([]Migration(nil), saved...), Migration{Version: 1, Name: "again", SQL: "SELECT 1"})
	if _, err := Migrations(); err == nil {
		t.Fatal("repeated version accepted")
	}
	registered = append(append([]Migration(nil), saved...), Migration{Version: len(saved) + 1, Name: "x"})
	if _, err := Migrations(); err == nil {
		t.Fatal("migration without SQL accepted")
	}
}

// TestFailedMigrationRollsBack: a migration that fails leaves neither
// its tables nor its version row.
func TestFailedMigrationRollsBack(t *testing.T) {
	c := pgtest.Start(t)
	openT(t, Options{DSN: c.DSN()}).Close()
	saved := registered
	defer func() { registered = saved }()
	n := len(saved) + 1
	registered = append(append([]Migration(nil), saved...), Migration{Version: n, Name: "broken", SQL: "CREATE TABLE half (v int); SELECT no_such_function()"})
	_, err := Open(ctxT(t), Options{DSN: c.DSN()})
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("broken migration: %v", err)
	}
	registered = saved
	s := openT(t, Options{DSN: c.DSN()})
	if got := schemaRows(t, s); len(got) != n-1 {
		t.Fatalf("schema rows after a failed migration: %v", got)
	}
	var exists bool
	if err := s.Pool().QueryRow(ctxT(t), "SELECT to_regclass('half') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("table of the failed migration exists=%v (%v)", exists, err)
	}
}

// TestPasswordNeverInLogsOrErrors: the password of the DSN or of
// Options.Password appears in no log line and no error, whether the
// open succeeds, the password is wrong, or the server is down.
func TestPasswordNeverInLogsOrErrors(t *testing.T) {
	c := pgtest.Start(t)
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	check := func(what, text, secret string) {
		t.Helper()
		if strings.Contains(text, secret) {
			t.Fatalf("%s holds the password: %s", what, text)
		}
	}
	// Password in the DSN.
	s := openT(t, Options{DSN: c.DSN(), Logger: logger})
	if !strings.Contains(log.String(), "xxxxx") {
		t.Fatalf("log does not show the redacted DSN: %s", log.String())
	}
	check("log", log.String(), c.Password)
	check("RedactedDSN", s.RedactedDSN(), c.Password)
	s.Close()
	// Password given apart from the DSN.
	s = openT(t, Options{DSN: c.DSNWithoutPassword(), Password: c.Password, Logger: logger})
	check("log", log.String(), c.Password)
	s.Close()
	// The passphrase of a client key (sslpassword; pgx uses it only with
	// sslkey, but it is a secret wherever it is written).
	const keyPass = "K3y-passphrase"
	s = openT(t, Options{DSN: c.DSN() + "&sslpassword=" + keyPass, Logger: logger})
	check("log", log.String(), keyPass)
	check("RedactedDSN", s.RedactedDSN(), keyPass)
	s.Close()
	tlsDSN := strings.Replace(c.DSN(), "sslmode=disable", "sslmode=require", 1)
	_, err := Open(ctxT(t), Options{DSN: tlsDSN + "&sslpassword=" + keyPass + "&sslkey=/nonexistent/key&sslcert=/nonexistent/cert", Logger: logger})
	if err == nil {
		t.Fatal("a missing client key accepted")
	}
	t.Logf("client key missing: %v", err)
	check("error", err.Error(), keyPass)
	// A wrong password: the error names the failure, not the password.
	wrong := "Wr0ng-secret-Pw"
	_, err = Open(ctxT(t), Options{DSN: c.DSNWithoutPassword(), Password: wrong, Logger: logger})
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}
	check("error", err.Error(), wrong)
	bad := strings.Replace(c.DSN(), c.Password, wrong, 1)
	_, err = Open(ctxT(t), Options{DSN: bad + "&password=" + wrong, Logger: logger})
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	check("error", err.Error(), wrong)
	// A malformed DSN.
	_, err = Open(ctxT(t), Options{DSN: "postgres://edge:" + wrong + "@127.0.0.1:notaport/edge", Logger: logger})
	if err == nil {
		t.Fatal("bad port accepted")
	}
	check("error", err.Error(), wrong)
	_, err = Open(ctxT(t), Options{DSN: "host=127.0.0.1 port=x password='" + wrong + "'", Logger: logger})
	if err == nil {
		t.Fatal("bad key/value DSN accepted")
	}
	check("error", err.Error(), wrong)
	// The server down: ErrUnavailable (which is auth's), no password.
	c.Stop()
	_, err = Open(ctxT(t), Options{DSN: c.DSN(), Logger: logger})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("stopped server: %v", err)
	}
	check("error", err.Error(), c.Password)
	check("log", log.String(), c.Password)
	check("log", log.String(), wrong)
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:s3cret@h:5432/db?sslmode=disable":       "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgresql://u@h/db?password=s3cret&sslmode=require": "postgresql://u@h/db?password=xxxxx&sslmode=require",
		"postgres://u@h/db":                       "postgres://u@h/db",
		"host=h password=s3cret dbname=d":         "host=h password=xxxxx dbname=d",
		"host=h password = 's3 cr\\'et' dbname=d": "host=h password = xxxxx dbname=d",
		"postgres://u:s3cret@h:bad port/db":       "(unparsable postgres URL)",
		// sslpassword is the passphrase of an encrypted sslkey
		"postgres://u@h/db?sslkey=/k&sslpassword=k3y-pass":  "postgres://u@h/db?sslkey=%2Fk&sslpassword=xxxxx",
		"host=h sslkey=/k sslpassword=k3y-pass dbname=d":    "host=h sslkey=/k sslpassword=xxxxx dbname=d",
		"host=h password=s3cret sslpassword='k3y pass' x=y": "host=h password=xxxxx sslpassword=xxxxx x=y",
	} {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStoreErrClassifies: a query against a stopped server wraps
// ErrUnavailable; an SQL error does not.
func TestStoreErrClassifies(t *testing.T) {
	c := pgtest.Start(t)
	s := openT(t, Options{DSN: c.DSN(), ConnectTimeout: 2 * time.Second})
	_, err := s.Pool().Exec(ctxT(t), "SELECT no_such_column FROM edge_users")
	if err == nil || errors.Is(s.Err(err), ErrUnavailable) {
		t.Fatalf("SQL error classified as unavailable: %v", err)
	}
	var n int
	err = s.Pool().QueryRow(ctxT(t), "SELECT 1 WHERE false").Scan(&n)
	if err == nil || IsUnavailable(err) || errors.Is(s.Err(err), ErrUnavailable) {
		t.Fatalf("no rows classified as unavailable: %v", err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if _, err := s.Pool().Exec(ctx, "SELECT 1"); err == nil || IsUnavailable(err) {
		t.Fatalf("a cancelled context classified as unavailable: %v", err)
	}
	c.Stop()
	_, err = s.Pool().Exec(ctxT(t), "SELECT 1")
	if err == nil || !errors.Is(s.Err(err), ErrUnavailable) {
		t.Fatalf("stopped server: %v", s.Err(err))
	}
	c.Start()
	if _, err := s.Pool().Exec(ctxT(t), "SELECT 1"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// TestStoreCloseBounded: a database the network no longer reaches (its
// connections silent, not closed) does not hold Close: pgx waits up to
// 15 s for the server to see a broken connection closed, which it never
// does here; Close returns within closeWait and a bit.
func TestStoreCloseBounded(t *testing.T) {
	c := pgtest.Start(t)
	px := startFreezeProxy(t, fmt.Sprintf("127.0.0.1:%d", c.Port))
	dsn := strings.Replace(c.DSN(), fmt.Sprintf("127.0.0.1:%d", c.Port), px.addr(), 1)
	s, err := Open(ctxT(t), Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	px.freeze()
	// a query times out on the silent network: its connection is broken
	qctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	_, err = s.Pool().Exec(qctx, "SELECT 1")
	cancel()
	if err == nil {
		t.Fatal("a query through the silenced connection answered")
	}
	start := time.Now()
	s.Close()
	took := time.Since(start)
	t.Logf("Close returned in %v", took)
	if took > closeWait+time.Second {
		t.Fatalf("Close took %v with the database out of reach", took)
	}
}
