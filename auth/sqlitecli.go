package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

const sqliteUsage = `usage:
 xpra-edge sqlite filename create
 xpra-edge sqlite filename list
 xpra-edge sqlite filename add [--hash[=argon2id|bcrypt]] username password [uid, gid, displays, env_options, session_options]
 xpra-edge sqlite filename remove username [password]
 xpra-edge sqlite filename authenticate username password
`

// SQLiteCLI runs `xpra-edge sqlite FILE ...` (args after "sqlite"),
// returning the exit code. Commands, arguments and output follow xpra's
// `python3 -m xpra.server.auth.sqlite_auth`:
//
//	FILE create
//	FILE list
//	FILE add [--hash[=argon2id|bcrypt]] USER PASS [UID GID DISPLAYS ENV_OPTIONS SESSION_OPTIONS]
//	FILE remove USER [PASS]
//	FILE authenticate USER PASS
//
// add stores uid/gid as the caller's numeric ids unless given. With
// --hash (or --hash=argon2id) add stores an argon2id PHC string of PASS
// instead of PASS itself, --hash=bcrypt a bcrypt hash; such a user can then
// only log in over an encrypted transport (xor digest), and xpra's own
// tools cannot check it. remove USER PASS also removes the rows whose hash
// matches PASS. Every write is one transaction. Bad arguments print the
// usage and return 1; any failure returns 1 and writes nothing. Only the
// commands that read print to stdout; errors go to stderr.
func SQLiteCLI(args []string, stdout, stderr io.Writer) int {
	usage := func(msg string) int {
		fmt.Fprintln(stderr, msg)
		fmt.Fprint(stderr, sqliteUsage)
		return 1
	}
	if len(args) < 2 {
		return usage("invalid number of arguments")
	}
	file, cmd, rest := args[0], args[1], args[2:]
	if file == "" {
		return usage("invalid database filename")
	}
	var err error
	switch cmd {
	case "create":
		if len(rest) != 0 {
			return usage("invalid number of arguments")
		}
		err = sqliteCreate(file)
	case "add":
		hash := ""
		if len(rest) > 0 && strings.HasPrefix(rest[0], "--hash") {
			switch rest[0] {
			case "--hash", "--hash=argon2id":
				hash = "argon2id"
			case "--hash=bcrypt":
				hash = "bcrypt"
			default:
				return usage("invalid option '" + rest[0] + "'")
			}
			rest = rest[1:]
		}
		if len(rest) < 2 || len(rest) > 7 {
			return usage("invalid number of arguments")
		}
		if rest[0] == "" {
			return usage("the username must not be empty")
		}
		err = sqliteAdd(file, hash, rest)
	case "remove":
		if len(rest) != 1 && len(rest) != 2 {
			return usage("invalid number of arguments")
		}
		pass := ""
		if len(rest) == 2 {
			pass = rest[1]
		}
		err = sqliteRemove(file, rest[0], pass)
	case "list":
		if len(rest) != 0 {
			return usage("invalid number of arguments")
		}
		err = sqliteList(file, stdout)
	case "authenticate":
		if len(rest) != 2 {
			return usage("invalid number of arguments")
		}
		err = sqliteAuthenticate(file, rest[0], rest[1], stdout, stderr)
	default:
		return usage("invalid command '" + cmd + "'")
	}
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// openSQLiteRW opens an existing database for writing (never creates it).
func openSQLiteRW(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot open the database: %w", err)
	}
	return sql.Open("sqlite3", sqliteDSN(path, "rw"))
}

// inTx runs f in one transaction and commits only if it succeeds.
func inTx(db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.Begin()
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

func sqliteCreate(file string) error {
	db, err := sql.Open("sqlite3", sqliteDSN(file, "rwc"))
	if err != nil {
		return err
	}
	defer db.Close()
	return inTx(db, func(tx *sql.Tx) error {
		_, err := tx.Exec(sqliteSchema)
		return err
	})
}

func sqliteAdd(file, hash string, a []string) error {
	vals := []string{a[0], a[1], strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()), "", "", ""}
	copy(vals[2:], a[2:])
	switch hash {
	case "argon2id":
		vals[1] = HashPassword([]byte(a[1]))
	case "bcrypt":
		h, err := bcrypt.GenerateFromPassword([]byte(a[1]), bcrypt.DefaultCost)
		if err != nil {
			return fmt.Errorf("bcrypt: %w", err)
		}
		vals[1] = string(h)
	}
	db, err := openSQLiteRW(file)
	if err != nil {
		return err
	}
	defer db.Close()
	return inTx(db, func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO users(username, password, uid, gid, displays, env_options, session_options) VALUES(?, ?, ?, ?, ?, ?, ?)",
			vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6])
		return err
	})
}

func sqliteRemove(file, username, pass string) error {
	db, err := openSQLiteRW(file)
	if err != nil {
		return err
	}
	defer db.Close()
	return inTx(db, func(tx *sql.Tx) error {
		if pass == "" {
			_, err := tx.Exec("DELETE FROM users WHERE username=?", username)
			return err
		}
		rows, err := tx.Query("SELECT rowid, password FROM users WHERE username=?", username)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			var pw sql.NullString
			if err := rows.Scan(&id, &pw); err != nil {
				rows.Close()
				return err
			}
			if pw.Valid && (pw.String == pass || isHash(pw.String) && verifyHash(pw.String, []byte(pass))) {
				ids = append(ids, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.Exec("DELETE FROM users WHERE rowid=?", id); err != nil {
				return err
			}
		}
		return nil
	})
}

func sqliteList(file string, w io.Writer) error {
	db, err := openSQLiteRO(file)
	if err != nil {
		return fmt.Errorf("cannot open the database: %w", err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT username, password, uid, gid, displays, env_options, session_options FROM users")
	if err != nil {
		return err
	}
	defer rows.Close()
	var table [][]string
	for rows.Next() {
		var f [7]sql.NullString
		if err := rows.Scan(&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]); err != nil {
			return err
		}
		row := make([]string, 7)
		for i, v := range f {
			row[i] = "None"
			if v.Valid {
				row[i] = v.String
			}
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(table) == 0 {
		fmt.Fprintln(w, "no rows found")
		return nil
	}
	fields := []string{"username", "password", "uid", "gid", "displays", "env options", "session options"}
	sizes := make([]int, len(fields))
	for i, f := range fields {
		sizes[i] = len(f) + 1
	}
	for _, r := range table {
		for i, v := range r {
			sizes[i] = max(sizes[i], utf8.RuneCountInString(v)+1)
		}
	}
	total := len(fields) + 1
	for _, s := range sizes {
		total += s
	}
	line := func(vals []string) string {
		var b strings.Builder
		b.WriteString("|")
		for i, v := range vals {
			b.WriteString(strings.Repeat(" ", max(0, sizes[i]-utf8.RuneCountInString(v))))
			b.WriteString(v)
			b.WriteString("|")
		}
		return b.String()
	}
	fmt.Fprintf(w, "%d rows found:\n", len(table))
	fmt.Fprintln(w, strings.Repeat("-", total))
	fmt.Fprintln(w, line(fields))
	fmt.Fprintln(w, strings.Repeat("-", total))
	for _, r := range table {
		fmt.Fprintln(w, line(r))
	}
	return nil
}

// errNoMatch is what authenticate reports for an unknown user or a wrong
// password.
var errNoMatch = errors.New("authentication failed")

func sqliteAuthenticate(file, username, pass string, stdout, stderr io.Writer) error {
	db, err := openSQLiteRO(file)
	if err != nil {
		return fmt.Errorf("cannot open the database: %w", err)
	}
	defer db.Close()
	rows, err := userRows(context.Background(), db, username)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if !r.hasPassword {
			continue
		}
		if r.password == pass || isHash(r.password) && verifyHash(r.password, []byte(pass)) {
			fmt.Fprintf(stdout, "success, found sessions: %s\n", pySessions(r, stderr))
			return nil
		}
	}
	return errNoMatch
}

// pySessions prints a row the way xpra's tool does:
// (uid, gid, [displays], {env_options}, {session_options}).
func pySessions(r sqliteRow, stderr io.Writer) string {
	uid := pyParseID(r.uid, func(n string) (string, error) {
		u, err := user.Lookup(n)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	}, os.Getuid(), "uid", stderr)
	gid := pyParseID(r.gid, func(n string) (string, error) {
		g, err := user.LookupGroup(n)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	}, os.Getgid(), "gid", stderr)
	var b strings.Builder
	fmt.Fprintf(&b, "(%d, %d, [", uid, gid)
	if r.displays != "" {
		for i, d := range strings.Split(r.displays, ",") {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyRepr(strings.TrimSpace(d)))
		}
	}
	b.WriteString("], ")
	b.WriteString(pyDict(r.envOptions))
	b.WriteString(", ")
	b.WriteString(pyDict(r.sessionOptions))
	b.WriteString(")")
	return b.String()
}

// pyParseID is xpra's parse_uid/parse_gid, used only for the CLI's output:
// a number, else the named entry (default "nobody"), else the caller's.
func pyParseID(v string, lookup func(string) (string, error), own int, what string, stderr io.Writer) int {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return n
	}
	name := v
	if name == "" {
		name = "nobody"
	}
	if s, err := lookup(name); err == nil {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	fmt.Fprintf(stderr, "Error: cannot find %s of '%s'\n", what, name)
	return own
}

// pyDict renders parse_simple_dict(s, ";") as a Python dict repr, keeping
// the first position of each key and its last value.
func pyDict(s string) string {
	var keys []string
	vals := map[string]string{}
	for _, el := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(el, "=")
		if el == "" || !ok {
			continue
		}
		if _, seen := vals[k]; !seen {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pyRepr(k) + ": " + pyRepr(vals[k]))
	}
	b.WriteString("}")
	return b.String()
}

// pyRepr is Python's repr() of a str.
func pyRepr(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x80 || unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}
