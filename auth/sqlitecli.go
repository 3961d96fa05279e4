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
// See UsersCLI for what they do.
func SQLiteCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, sqliteUsage)
		return 0
	}
	if len(args) < 2 {
		fmt.Fprintln(stderr, "invalid number of arguments")
		fmt.Fprint(stderr, sqliteUsage)
		return 1
	}
	if args[0] == "" {
		fmt.Fprintln(stderr, "invalid database filename")
		fmt.Fprint(stderr, sqliteUsage)
		return 1
	}
	return UsersCLI(context.Background(), SQLiteTable(args[0]), sqliteUsage, args[1:], stdout, stderr)
}

// UsersCLI runs one verb of the users tools (`xpra-edge sqlite FILE`,
// `xpra-edge pg DSN`) on table: args is the verb and its arguments.
// add stores uid/gid as the caller's numeric ids unless given. With
// --hash (or --hash=argon2id) add stores an argon2id PHC string of PASS
// instead of PASS itself, --hash=bcrypt a bcrypt hash; such a user can then
// only log in over an encrypted transport (xor digest), and xpra's own
// tools cannot check it. remove USER PASS also removes the rows whose hash
// matches PASS. Every write is one transaction. Bad arguments print the
// usage and return 1; any failure returns 1 and writes nothing. Only the
// commands that read print to stdout; errors go to stderr.
func UsersCLI(ctx context.Context, table UserTable, usageText string, args []string, stdout, stderr io.Writer) int {
	usage := func(msg string) int {
		fmt.Fprintln(stderr, msg)
		fmt.Fprint(stderr, usageText)
		return 1
	}
	if len(args) < 1 {
		return usage("invalid number of arguments")
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "create":
		if len(rest) != 0 {
			return usage("invalid number of arguments")
		}
		err = table.Create(ctx)
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
		err = usersAdd(ctx, table, hash, rest)
	case "remove":
		if len(rest) != 1 && len(rest) != 2 {
			return usage("invalid number of arguments")
		}
		var match func(UserRow) bool
		if len(rest) == 2 && rest[1] != "" {
			pass := rest[1]
			match = func(r UserRow) bool { return r.MatchesPassword(pass) }
		}
		_, err = table.Remove(ctx, rest[0], match)
	case "list":
		if len(rest) != 0 {
			return usage("invalid number of arguments")
		}
		err = usersList(ctx, table, stdout)
	case "authenticate":
		if len(rest) != 2 {
			return usage("invalid number of arguments")
		}
		err = usersAuthenticate(ctx, table, rest[0], rest[1], stdout, stderr)
	default:
		return usage("invalid command '" + cmd + "'")
	}
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

func usersAdd(ctx context.Context, table UserTable, hash string, a []string) error {
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
	str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	return table.Insert(ctx, UserRow{Username: vals[0], Password: str(vals[1]), UID: str(vals[2]), GID: str(vals[3]),
		Displays: str(vals[4]), EnvOptions: str(vals[5]), SessionOptions: str(vals[6])})
}

func usersList(ctx context.Context, table UserTable, w io.Writer) error {
	all, err := table.AllRows(ctx)
	if err != nil {
		return err
	}
	var rows [][]string
	for _, r := range all {
		row := []string{r.Username}
		for _, v := range []sql.NullString{r.Password, r.UID, r.GID, r.Displays, r.EnvOptions, r.SessionOptions} {
			if v.Valid {
				row = append(row, v.String)
			} else {
				row = append(row, "None")
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "no rows found")
		return nil
	}
	fields := []string{"username", "password", "uid", "gid", "displays", "env options", "session options"}
	sizes := make([]int, len(fields))
	for i, f := range fields {
		sizes[i] = len(f) + 1
	}
	for _, r := range rows {
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
	fmt.Fprintf(w, "%d rows found:\n", len(rows))
	fmt.Fprintln(w, strings.Repeat("-", total))
	fmt.Fprintln(w, line(fields))
	fmt.Fprintln(w, strings.Repeat("-", total))
	for _, r := range rows {
		fmt.Fprintln(w, line(r))
	}
	return nil
}

// errNoMatch is what authenticate reports for an unknown user or a wrong
// password.
var errNoMatch = errors.New("authentication failed")

func usersAuthenticate(ctx context.Context, table UserTable, username, pass string, stdout, stderr io.Writer) error {
	rows, err := table.UserRows(ctx, username)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if r.Password.Valid && (r.Password.String == pass || r.MatchesPassword(pass)) {
			fmt.Fprintf(stdout, "success, found sessions: %s\n", pySessions(r, stderr))
			return nil
		}
	}
	return errNoMatch
}

// pySessions prints a row the way xpra's tool does:
// (uid, gid, [displays], {env_options}, {session_options}).
func pySessions(r UserRow, stderr io.Writer) string {
	uid := pyParseID(r.UID.String, func(n string) (string, error) {
		u, err := user.Lookup(n)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	}, os.Getuid(), "uid", stderr)
	gid := pyParseID(r.GID.String, func(n string) (string, error) {
		g, err := user.LookupGroup(n)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	}, os.Getgid(), "gid", stderr)
	var b strings.Builder
	fmt.Fprintf(&b, "(%d, %d, [", uid, gid)
	if r.Displays.String != "" {
		for i, d := range strings.Split(r.Displays.String, ",") {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyRepr(strings.TrimSpace(d)))
		}
	}
	b.WriteString("], ")
	b.WriteString(pyDict(r.EnvOptions.String))
	b.WriteString(", ")
	b.WriteString(pyDict(r.SessionOptions.String))
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
