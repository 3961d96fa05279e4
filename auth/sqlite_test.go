package auth

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sqliteTool is one implementation of the sqlite CLI.
type sqliteTool struct {
	name string
	run  func(t *testing.T, args ...string) (stdout, stderr string, code int)
}

func goTool() sqliteTool {
	return sqliteTool{"xpra-edge", func(t *testing.T, args ...string) (string, string, int) {
		var o, e bytes.Buffer
		code := SQLiteCLI(args, &o, &e)
		return o.String(), e.String(), code
	}}
}

func pyTool() sqliteTool {
	return sqliteTool{"xpra", func(t *testing.T, args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, systemPython, append([]string{"-m", "xpra.server.auth.sqlite_auth"}, args...)...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("python: %v", err)
			}
			code = ee.ExitCode()
		}
		return o.String(), e.String(), code
	}}
}

func mustRun(t *testing.T, tool sqliteTool, args ...string) string {
	t.Helper()
	o, e, code := tool.run(t, args...)
	if code != 0 {
		t.Fatalf("%s %v: exit %d\n%s%s", tool.name, args, code, o, e)
	}
	return o
}

// sqliteLogin logs in through the sqlite module on file.
func sqliteLogin(t *testing.T, file, user, pw string) (Identity, error) {
	t.Helper()
	return doLogin(t, mustNew(t, "sqlite,filename="+file, Options{}), user, pw, plainTCP)
}

// The lifecycle of xpra's auth_test.py (no DB fails, create, add, remove,
// wrong password), with one tool writing and both tools and the module
// checking, in both directions.
func TestSQLiteLifecycleBothTools(t *testing.T) {
	needXpraPython(t)
	tools := []sqliteTool{goTool(), pyTool()}
	for _, writer := range tools {
		t.Run("written by "+writer.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "auth.sdb")
			check := func(stage string, want bool) {
				t.Helper()
				_, err := sqliteLogin(t, file, "foo", "hello")
				if (err == nil) != want {
					t.Errorf("%s: module login err=%v, want ok=%v", stage, err, want)
				}
				for _, reader := range tools {
					_, _, code := reader.run(t, file, "authenticate", "foo", "hello")
					if (code == 0) != want {
						t.Errorf("%s: %s authenticate exit %d, want ok=%v", stage, reader.name, code, want)
					}
				}
			}
			check("no database", false)
			if _, err := os.Stat(file); err == nil && writer.name == "xpra-edge" {
				t.Fatal("a failed login created the database file")
			}
			os.Remove(file) // xpra's tool creates an empty file on a failed read
			mustRun(t, writer, file, "create")
			check("created", false)
			mustRun(t, writer, file, "add", "foo", "hello")
			check("added", true)
			mustRun(t, writer, file, "remove", "foo")
			check("removed", false)
			mustRun(t, writer, file, "add", "foo", "wrong")
			check("wrong password", false)
			mustRun(t, writer, file, "remove", "foo", "nomatch")
			mustRun(t, writer, file, "add", "foo", "hello", "nobody", "nobody", ":10, tcp://u:p@127.0.0.1:10000/", "A=1;B=2", "compression=0")
			check("second row", true)
			// Both tools print the same list and the same sessions.
			for _, args := range [][]string{{"list"}, {"authenticate", "foo", "hello"}} {
				a := mustRun(t, tools[0], append([]string{file}, args...)...)
				b := mustRun(t, tools[1], append([]string{file}, args...)...)
				if a != b {
					t.Errorf("%v differs:\nxpra-edge:\n%s\nxpra:\n%s", args, a, b)
				}
			}
			id, err := sqliteLogin(t, file, "foo", "hello")
			if err != nil {
				t.Fatal(err)
			}
			want := Identity{Username: "foo", Module: "sqlite", UID: "nobody", GID: "nobody",
				Displays: []string{":10", "tcp://u:p@127.0.0.1:10000/"}, Env: map[string]string{"A": "1", "B": "2"},
				SessionOptions: map[string]string{"compression": "0"}}
			if !reflect.DeepEqual(id, want) {
				t.Errorf("identity\n got %+v\nwant %+v", id, want)
			}
			mustRun(t, writer, file, "remove", "foo", "wrong")
			mustRun(t, writer, file, "remove", "foo", "hello")
			check("all removed", false)
			if out := mustRun(t, tools[0], file, "list"); out != "no rows found\n" {
				t.Errorf("list: %q", out)
			}
		})
	}
}

func TestSQLiteSeveralRows(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rows.sdb")
	g := goTool()
	mustRun(t, g, file, "create")
	mustRun(t, g, file, "add", "foo", "one", "1001", "1001", ":1")
	mustRun(t, g, file, "add", "foo", "two", "1002", "1002", ":2,:3")
	mustRun(t, g, file, "add", "bar", "two", "1003", "1003", ":4")
	for _, c := range []struct {
		user, pw string
		uid      string
		displays []string
	}{
		{"foo", "one", "1001", []string{":1"}},
		{"foo", "two", "1002", []string{":2", ":3"}},
		{"bar", "two", "1003", []string{":4"}},
	} {
		id, err := sqliteLogin(t, file, c.user, c.pw)
		if err != nil || id.UID != c.uid || !reflect.DeepEqual(id.Displays, c.displays) {
			t.Errorf("%s/%s: %+v %v", c.user, c.pw, id, err)
		}
	}
	if _, err := sqliteLogin(t, file, "bar", "one"); !errors.Is(err, ErrFailed) {
		t.Errorf("bar/one: %v", err)
	}
	// Read live: a row added now is used by the next login.
	mustRun(t, g, file, "add", "baz", "three")
	if _, err := sqliteLogin(t, file, "baz", "three"); err != nil {
		t.Errorf("live add: %v", err)
	}
	// NULL columns (a row written by another tool) are empty, and a NULL
	// password never matches.
	db, err := openSQLiteRW(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO users(username, password) VALUES('nul', 'pw'), ('nopw', NULL)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if id, err := sqliteLogin(t, file, "nul", "pw"); err != nil || id.UID != "" || id.Displays != nil {
		t.Errorf("nul: %+v %v", id, err)
	}
	if _, err := sqliteLogin(t, file, "nopw", "None"); !errors.Is(err, ErrFailed) {
		t.Errorf("NULL password matched: %v", err)
	}
}

func TestSQLiteHashed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hash.sdb")
	g := goTool()
	mustRun(t, g, file, "create")
	mustRun(t, g, file, "add", "--hash", "h", "hashed-pw", "nobody", "nobody", ":9")
	mustRun(t, g, file, "add", "--hash=bcrypt", "b", "bc-pw")
	mustRun(t, g, file, "add", "mixed", "plain-pw", "", "", ":1")
	mustRun(t, g, file, "add", "--hash", "mixed", "hashed-pw", "", "", ":2")
	list := mustRun(t, g, file, "list")
	if strings.Contains(list, "hashed-pw") || !strings.Contains(list, "$argon2id$") || !strings.Contains(list, "$2a$") {
		t.Fatalf("list:\n%s", list)
	}
	a := mustNew(t, "sqlite,filename="+file, Options{})
	for _, u := range []struct{ name, pw string }{{"h", "hashed-pw"}, {"b", "bc-pw"}} {
		_, err := a.Begin(u.name, plainTCP).Challenge(xpraDigests, xpraSaltDigests)
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("%s on plain: %v", u.name, err)
		}
		if _, err := doLogin(t, a, u.name, u.pw, tlsTCP); err != nil {
			t.Errorf("%s on tls: %v", u.name, err)
		}
		if _, err := doLogin(t, a, u.name, "nope", tlsTCP); !errors.Is(err, ErrFailed) {
			t.Errorf("%s wrong on tls: %v", u.name, err)
		}
		if o, _, code := g.run(t, file, "authenticate", u.name, u.pw); code != 0 || !strings.HasPrefix(o, "success, found sessions: ") {
			t.Errorf("cli authenticate %s: %d %s", u.name, code, o)
		}
	}
	// mixed rows: plain transport uses hmac (only the plaintext row),
	// encrypted uses xor (both rows).
	if id, err := doLogin(t, a, "mixed", "plain-pw", plainTCP); err != nil || id.Displays[0] != ":1" {
		t.Errorf("mixed plain/plain: %+v %v", id, err)
	}
	if _, err := doLogin(t, a, "mixed", "hashed-pw", plainTCP); !errors.Is(err, ErrFailed) {
		t.Errorf("mixed hashed on plain: %v", err)
	}
	for pw, d := range map[string]string{"plain-pw": ":1", "hashed-pw": ":2"} {
		if id, err := doLogin(t, a, "mixed", pw, tlsTCP); err != nil || id.Displays[0] != d {
			t.Errorf("mixed %s on tls: %+v %v", pw, id, err)
		}
	}
	// remove USER PASS also removes the hashed row that matches.
	mustRun(t, g, file, "remove", "h", "hashed-pw")
	if _, _, code := g.run(t, file, "authenticate", "h", "hashed-pw"); code != 1 {
		t.Error("hashed row not removed")
	}
}

func TestSQLiteCLIErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "e.sdb")
	g := goTool()
	// Reads and writes on a missing file fail and create nothing.
	for _, args := range [][]string{{"list"}, {"add", "a", "b"}, {"remove", "a"}, {"authenticate", "a", "b"}} {
		if _, e, code := g.run(t, append([]string{file}, args...)...); code != 1 || e == "" {
			t.Errorf("%v on a missing file: exit %d", args, code)
		}
		if _, err := os.Stat(file); err == nil {
			t.Fatalf("%v created the file", args)
		}
	}
	mustRun(t, g, file, "create")
	mustRun(t, g, file, "add", "a", "b")
	before, _ := os.ReadFile(file)
	bad := [][]string{
		{},
		{file},
		{file, "create"},      // exists already
		{file, "create", "x"}, // extra argument
		{file, "bogus"},       // unknown command
		{file, "add", "a"},    // too few
		{file, "add", "a", "b", "1", "2", "d", "e", "s", "extra"}, // too many
		{file, "add", "--hash=md5", "a", "b"},
		{file, "add", "", "b"},
		{file, "remove"},
		{file, "remove", "a", "b", "c"},
		{file, "list", "x"},
		{file, "authenticate", "a"},
		{file, "authenticate", "a", "wrong"},
	}
	for _, args := range bad {
		o, e, code := g.run(t, args...)
		if code != 1 {
			t.Errorf("%v: exit %d", args, code)
		}
		if o != "" || e == "" {
			t.Errorf("%v: stdout %q stderr %q", args, o, e)
		}
	}
	after, _ := os.ReadFile(file)
	if !bytes.Equal(before, after) {
		t.Error("a failed command changed the database")
	}
	if o, e, _ := g.run(t, file, "authenticate", "a", "secretword"); strings.Contains(o+e, "secretword") {
		t.Error("output repeats the password")
	}
	// A database without the users table.
	empty := filepath.Join(dir, "empty.sdb")
	os.WriteFile(empty, nil, 0o600)
	if _, _, code := g.run(t, empty, "list"); code != 1 {
		t.Error("list without a table")
	}
	if _, err := sqliteLogin(t, empty, "a", "b"); err == nil || errors.Is(err, ErrFailed) && !strings.Contains(err.Error(), "sqlite") {
		t.Errorf("login without a table: %v", err)
	}
}

func TestPyRepr(t *testing.T) {
	for in, want := range map[string]string{
		"abc": "'abc'", "it's": `"it's"`, `a'b"c`: `'a\'b"c'`, "t\tn\n": `'t\tn\n'`, `back\slash`: `'back\\slash'`,
		"\x01": `'\x01'`, "é": "'é'", "": "''",
	} {
		if got := pyRepr(in); got != want {
			t.Errorf("pyRepr(%q) = %s, want %s", in, got, want)
		}
	}
	if got := pyDict("A=1;B=2;A=3;bad;;C=x=y"); got != "{'A': '3', 'B': '2', 'C': 'x=y'}" {
		t.Errorf("pyDict = %s", got)
	}
}

// xpra's own sqlite authenticator (server side) accepts our client answer
// for a database written by our CLI, and picks the same row.
func TestSQLiteXpraAuthenticatorReadsOurDatabase(t *testing.T) {
	needXpraPython(t)
	file := filepath.Join(t.TempDir(), "ours.sdb")
	g := goTool()
	mustRun(t, g, file, "create")
	mustRun(t, g, file, "add", "foo", "one", "65534", "65534", ":1")
	mustRun(t, g, file, "add", "foo", "two", "65534", "65534", ":2,tcp://h:1/", "K=V", "compression=1")
	const script = `
import sys, binascii
from xpra.server.auth.sqlite_auth import Authenticator
u = binascii.unhexlify
a = Authenticator("foo", filename=sys.argv[1])
a.get_challenge(["hmac+sha512"])
a.salt = u(sys.argv[2])
a.choose_salt_digest(["hmac+sha512"])
ok = a.authenticate(u(sys.argv[3]).decode("latin1"), u(sys.argv[4]))
print(ok, a.get_sessions() if ok else None)
`
	for pw, want := range map[string]string{
		"two":   "True (65534, 65534, [':2', 'tcp://h:1/'], {'K': 'V'}, {'compression': '1'})",
		"one":   "True (65534, 65534, [':1'], {}, {})",
		"three": "False None",
	} {
		ch := Challenge{Salt: randomBytes(64), Digest: "hmac+sha512", SaltDigest: "hmac+sha512"}
		resp, cs, err := Respond([]byte(pw), ch, false)
		if err != nil {
			t.Fatal(err)
		}
		out, err := runPython(t, script, nil, file, hex.EncodeToString(ch.Salt), hex.EncodeToString(resp), hex.EncodeToString(cs))
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if got := lines[len(lines)-1]; got != want {
			t.Errorf("password %s: xpra says %q, want %q", pw, got, want)
		}
	}
}
