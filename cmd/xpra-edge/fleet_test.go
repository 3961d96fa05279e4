package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

func runT(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != want {
		t.Fatalf("%v: exit %d, want %d: %s%s", args, code, want, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// TestPGCommandSameVerbsAsSQLite runs the same verbs through `sqlite`
// and `pg` (the DSN without its password, which comes from
// XPRA_EDGE_PG_PASSWORD, and --config=FILE) and compares their outputs;
// import copies the sqlite file, and a second import changes nothing.
func TestPGCommandSameVerbsAsSQLite(t *testing.T) {
	c := pgtest.Start(t)
	t.Setenv("XPRA_EDGE_PG_PASSWORD", c.Password)
	dsn := c.DSNWithoutPassword()
	dir := t.TempDir()
	file := filepath.Join(dir, "u.sdb")
	conf := filepath.Join(dir, "edge.toml")
	if err := os.WriteFile(conf, []byte("[store]\npostgres = \""+dsn+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, loc := range [][]string{{"sqlite", file}, {"pg", dsn}} {
		runT(t, 0, append(loc, "create")...)
		runT(t, 0, append(loc, "add", "ann", "pw", "1000", "1000", ":3", "A=1", "x=y")...)
		runT(t, 0, append(loc, "add", "--hash=bcrypt", "bea", "pw2")...)
		runT(t, 0, append(loc, "add", "cid", "pw3")...)
		runT(t, 0, append(loc, "remove", "cid", "wrong")...)
		runT(t, 0, append(loc, "remove", "bea", "pw2")...)
	}
	sqList, _ := runT(t, 0, "sqlite", file, "list")
	pgList, _ := runT(t, 0, "pg", "--config="+conf, "list")
	// uid/gid default to the caller's ids in both.
	if sqList != pgList || !strings.Contains(pgList, "2 rows found") || strings.Contains(pgList, "bea") {
		t.Fatalf("lists differ:\nsqlite:\n%s\npg:\n%s", sqList, pgList)
	}
	sqAuth, _ := runT(t, 0, "sqlite", file, "authenticate", "ann", "pw")
	pgAuth, _ := runT(t, 0, "pg", dsn, "authenticate", "ann", "pw")
	if sqAuth != pgAuth || !strings.HasPrefix(pgAuth, "success") {
		t.Fatalf("authenticate: sqlite %q, pg %q", sqAuth, pgAuth)
	}
	_, e := runT(t, 1, "pg", dsn, "authenticate", "ann", "nope")
	if !strings.Contains(e, "authentication failed") {
		t.Fatalf("wrong password: %s", e)
	}
	runT(t, 1, "pg", dsn, "frobnicate")
	// import: into a fresh database, twice.
	fresh := c.CreateDatabase(t, "fresh")
	out, _ := runT(t, 0, "pg", fresh, "import", file)
	if !strings.Contains(out, "2 rows, 2 users: 2 added, 0 replaced, 0 unchanged") {
		t.Fatalf("import: %q", out)
	}
	out, _ = runT(t, 0, "pg", fresh, "import", file)
	if !strings.Contains(out, "2 users: 0 added, 0 replaced, 2 unchanged") {
		t.Fatalf("second import: %q", out)
	}
	if l, _ := runT(t, 0, "pg", fresh, "list"); l != sqList {
		t.Fatalf("imported list:\n%s\nwant:\n%s", l, sqList)
	}
	// A wrong password: a clear error without the password.
	t.Setenv("XPRA_EDGE_PG_PASSWORD", "not-the-Secret")
	_, e = runT(t, 1, "pg", dsn, "list")
	if !strings.Contains(e, "password authentication failed") || strings.Contains(e, "not-the-Secret") {
		t.Fatalf("wrong password: %s", e)
	}
}
