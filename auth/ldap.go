package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// LDAP checks the password with a simple bind to an LDAP directory, over
// TLS only (ldaps://, or ldap:// upgraded with StartTLS). A bind needs the
// plain password, so, like pam, it uses the xor digest and is offered only
// on encrypted transports or unix sockets.
//
// The user's entry is found either from a DN template (user-dn, "%s" is
// the DN-escaped login name) or by a search (base, filter with "%s" the
// filter-escaped name, default "(uid=%s)"), anonymously or as a service
// account (bind-dn with bind-password-file or bind-password-env). An
// optional group-filter (under group-base, default base; "%s" the name,
// "%d" the user's DN, both filter-escaped) must match at least one entry.
// uid-attribute and gid-attribute (for example uidNumber, gidNumber) give
// Identity.UID/GID for system-wide mode; the sessions are the user's local
// ones. Every exchange with the directory is bounded by timeout (default
// 5s) and searches by a size limit.
//
// With groups-base, the login also lists the user's directory groups into
// Identity.Groups (the portal's admin_group counts them): a search under
// groups-base with groups-filter (default "(member=%d)"; "%s" the name,
// "%d" the user's DN, both filter-escaped), each match named by its
// group-name-attribute (default cn). At most ldapMaxGroups entries: a
// filter that matches more is refused as a configuration mistake, not cut
// short. The search runs in the same bounded exchange, as the service
// account when there is one; a directory that fails or falls silent there
// refuses the login (no ban), as anywhere else.
//
// In the spec form a value cannot hold a comma (xpra's syntax), so in the
// DN options (user-dn, base, bind-dn, group-base) an unescaped ';'
// separates RDNs: "uid=%s;ou=people;dc=example;dc=org".
//
// Options: url (required), ca, user-dn, base, filter, bind-dn,
// bind-password-file, bind-password-env, group-base, group-filter,
// groups-base, groups-filter, group-name-attribute, uid-attribute,
// gid-attribute, timeout, prompt.
type LDAP struct {
	base
	url        *url.URL
	caFile     string
	userDN     string
	searchBase string
	filter     string
	bindDN     string
	bindPWFile string
	bindPWEnv  string
	groupBase  string
	group      string
	groupsBase string // where the user's groups are listed ("": not listed)
	groupsFilt string
	groupName  string // the attribute naming a group
	uidAttr    string
	gidAttr    string
	timeout    time.Duration
}

var _ Authenticator = (*LDAP)(nil)

// ldapSlots bounds the directory exchanges running at once.
var ldapSlots = make(chan struct{}, 16)

// ldapMaxName bounds the login names sent to the directory.
const ldapMaxName = 256

// ldapMaxFile bounds the CA and password files read.
const ldapMaxFile = 1 << 20

// ldapMaxGroups bounds the groups one login lists (a variable for tests).
var ldapMaxGroups = 1000

// ldapMaxGroupName bounds a group name taken from the directory.
const ldapMaxGroupName = 256

func newLDAP(o *optionReader) (*LDAP, error) {
	l := &LDAP{base: readBase(o, "ldap", false)}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: module ldap: "+format, append([]any{ErrSpec}, args...)...)
	}
	raw := o.str("url", "")
	if raw == "" {
		return nil, bad("needs url=ldaps://HOST[:PORT] or url=ldap://HOST[:PORT] (StartTLS)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Hostname() == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, bad("url must be ldaps://HOST[:PORT] or ldap://HOST[:PORT], got %q", raw)
	}
	l.url = u
	l.caFile = o.str("ca", "")
	l.userDN = specDN(o.str("user-dn", ""))
	l.searchBase = specDN(o.str("base", ""))
	l.filter = o.str("filter", "")
	l.bindDN = specDN(o.str("bind-dn", ""))
	l.bindPWFile = o.str("bind-password-file", "")
	l.bindPWEnv = o.str("bind-password-env", "")
	l.groupBase = specDN(o.str("group-base", ""))
	l.group = o.str("group-filter", "")
	l.groupsBase = specDN(o.str("groups-base", ""))
	l.groupsFilt = o.str("groups-filter", "")
	groupName, groupNameSet := o.get("group-name-attribute")
	l.groupName = groupName
	l.uidAttr = o.str("uid-attribute", "")
	l.gidAttr = o.str("gid-attribute", "")
	l.timeout = 5 * time.Second
	if v, ok := o.get("timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > time.Minute {
			return nil, bad("timeout must be a duration between 0 and 1m, got %q", v)
		}
		l.timeout = d
	}
	switch {
	case l.userDN != "" && l.searchBase != "":
		return nil, bad("give either user-dn (a DN template) or base (search then bind), not both")
	case l.userDN == "" && l.searchBase == "":
		return nil, bad("needs user-dn=TEMPLATE or base=DN (search then bind)")
	case l.userDN != "":
		if strings.Count(l.userDN, "%s") != 1 {
			return nil, bad("user-dn must hold %%s exactly once")
		}
		if _, err := ldap.ParseDN(strings.Replace(l.userDN, "%s", "x", 1)); err != nil {
			return nil, bad("user-dn is not a DN: %v", err)
		}
		if l.filter != "" || l.bindDN != "" {
			return nil, bad("filter and bind-dn go with base (search then bind), not with user-dn")
		}
	default:
		if l.filter == "" {
			l.filter = "(uid=%s)"
		}
		if strings.Count(l.filter, "%s") < 1 {
			return nil, bad("filter must hold %%s (the login name)")
		}
		if _, err := ldap.CompileFilter(strings.ReplaceAll(l.filter, "%s", "x")); err != nil {
			return nil, bad("filter is not an LDAP filter: %v", err)
		}
	}
	for name, dn := range map[string]string{"base": l.searchBase, "bind-dn": l.bindDN, "group-base": l.groupBase, "groups-base": l.groupsBase} {
		if dn == "" {
			continue
		}
		if _, err := ldap.ParseDN(dn); err != nil {
			return nil, bad("%s is not a DN: %v", name, err)
		}
	}
	if (l.bindPWFile != "" || l.bindPWEnv != "") && l.bindDN == "" {
		return nil, bad("bind-password-file and bind-password-env need bind-dn")
	}
	if l.bindDN != "" && (l.bindPWFile == "") == (l.bindPWEnv == "") {
		return nil, bad("bind-dn needs exactly one of bind-password-file or bind-password-env")
	}
	if l.group != "" {
		if l.groupBase == "" {
			l.groupBase = l.searchBase
		}
		if l.groupBase == "" {
			return nil, bad("group-filter needs group-base (or base)")
		}
		f := strings.ReplaceAll(strings.ReplaceAll(l.group, "%s", "x"), "%d", "x")
		if _, err := ldap.CompileFilter(f); err != nil {
			return nil, bad("group-filter is not an LDAP filter: %v", err)
		}
	} else if l.groupBase != "" {
		return nil, bad("group-base needs group-filter")
	}
	if l.groupsBase == "" {
		if l.groupsFilt != "" || groupNameSet {
			return nil, bad("groups-filter and group-name-attribute need groups-base")
		}
	} else {
		if l.groupsFilt == "" {
			l.groupsFilt = "(member=%d)"
		}
		if !strings.Contains(l.groupsFilt, "%s") && !strings.Contains(l.groupsFilt, "%d") {
			return nil, bad("groups-filter must hold %%d (the user's DN) or %%s (the login name)")
		}
		f := strings.ReplaceAll(strings.ReplaceAll(l.groupsFilt, "%s", "x"), "%d", "x")
		if _, err := ldap.CompileFilter(f); err != nil {
			return nil, bad("groups-filter is not an LDAP filter: %v", err)
		}
		if !groupNameSet {
			l.groupName = "cn"
		}
		if !ldapAttrName(l.groupName) {
			return nil, bad("group-name-attribute must be an attribute name, got %q", l.groupName)
		}
	}
	return l, nil
}

// ldapAttrName: an attribute type's name (a letter, then letters, digits
// and '-') or a numeric OID, at most 64 bytes.
func ldapAttrName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	oid := s[0] >= '0' && s[0] <= '9'
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case oid && (c >= '0' && c <= '9' || c == '.'):
		case !oid && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '-')):
		default:
			return false
		}
	}
	return true
}

// specDN turns the spec form of a DN (';' between RDNs, since a spec value
// cannot hold a comma) into a DN: every unescaped ';' becomes ','. An
// RFC 4514 DN never holds an unescaped ';' (a ';' in a value is written
// "\;"), so nothing a DN can say is lost.
func specDN(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			b.WriteByte(c)
			b.WriteByte(s[i+1])
			i++
		case c == ';':
			b.WriteByte(',')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Begin implements Authenticator.
func (l *LDAP) Begin(username string, t Transport) Login { return newLogin(l, username, t) }

func (l *LDAP) mode(_ string, t Transport) (mode, error) {
	if !t.Encrypted {
		return modeXOR, &RefusedError{Reason: "ldap authentication requires an encrypted connection (TLS or wss)"}
	}
	return modeXOR, nil
}

// errLDAPUnreachable is the reason a client is given when the directory
// cannot be reached: a refusal, which bans nobody.
var errLDAPUnreachable = &RefusedError{Reason: "the directory server cannot be reached, try again later"}

func (l *LDAP) verify(ctx context.Context, username string, pr *proof) (Identity, error) {
	if pr.kind != modeXOR || len(pr.plain) == 0 || username == "" {
		return Identity{}, failed(l.name)
	}
	if len(username) > ldapMaxName || strings.ContainsAny(username, "\x00\n\r") || !utf8.ValidString(username) {
		return Identity{}, fmt.Errorf("ldap: %w: the login name is too long, not UTF-8 or holds control characters", ErrFailed)
	}
	if err := acquireSlot(ctx, ldapSlots); err != nil {
		return Identity{}, fmt.Errorf("ldap: %w", err)
	}
	defer func() { <-ldapSlots }()
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	c, err := l.dial(ctx)
	if err != nil {
		return Identity{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	id, err := l.check(ctx, c, username, string(pr.plain))
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrFailed) {
		return Identity{}, fmt.Errorf("ldap: %w: %w", errLDAPUnreachable, ctx.Err())
	}
	return id, err
}

// dial connects to the directory and makes the connection TLS (ldaps, or
// StartTLS on ldap), all within ctx's deadline.
func (l *LDAP) dial(ctx context.Context) (*ldap.Conn, error) {
	tc, err := l.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("ldap: %w", err)
	}
	port := l.url.Port()
	if port == "" {
		port = map[string]string{"ldap": "389", "ldaps": "636"}[l.url.Scheme]
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(l.url.Hostname(), port))
	if err != nil {
		return nil, fmt.Errorf("ldap: %w: %w", errLDAPUnreachable, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	if l.url.Scheme == "ldaps" {
		tconn := tls.Client(raw, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("ldap: %w: tls: %w", errLDAPUnreachable, err)
		}
		c := ldap.NewConn(tconn, true)
		c.Start()
		c.SetTimeout(l.timeout)
		return c, nil
	}
	c := ldap.NewConn(raw, false)
	c.Start()
	c.SetTimeout(l.timeout)
	if err := c.StartTLS(tc); err != nil {
		c.Close()
		return nil, fmt.Errorf("ldap: %w: starttls: %w", errLDAPUnreachable, err)
	}
	return c, nil
}

func (l *LDAP) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: l.url.Hostname(), MinVersion: tls.VersionTLS12}
	if l.caFile == "" {
		return tc, nil
	}
	pem, err := ReadSmallFile(l.caFile, ldapMaxFile)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca: %s holds no PEM certificate", l.caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// ReadSmallFile reads a file of at most max bytes (a CA bundle, a secret)
// and refuses a larger one instead of reading it whole.
func ReadSmallFile(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// servicePassword reads the service account's password (file: its first
// line).
func (l *LDAP) servicePassword() (string, error) {
	if l.bindPWEnv != "" {
		pw := os.Getenv(l.bindPWEnv)
		if pw == "" {
			return "", fmt.Errorf("bind-password-env: $%s is empty or unset", l.bindPWEnv)
		}
		return pw, nil
	}
	b, err := ReadSmallFile(l.bindPWFile, ldapMaxFile)
	if err != nil {
		return "", fmt.Errorf("bind-password-file: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	clear(b)
	if pw == "" {
		return "", fmt.Errorf("bind-password-file: %s is empty", l.bindPWFile)
	}
	return pw, nil
}

// bindService binds as the service account (when one is configured).
func (l *LDAP) bindService(c *ldap.Conn) error {
	if l.bindDN == "" {
		return nil
	}
	pw, err := l.servicePassword()
	if err != nil {
		return fmt.Errorf("ldap: %w", err)
	}
	if err := c.Bind(l.bindDN, pw); err != nil {
		return l.classify("service bind as "+l.bindDN, err, false)
	}
	return nil
}

// classify turns a go-ldap error into the module's: a network error is a
// refusal that bans nobody; invalid credentials (when userBind) are
// ErrFailed; anything else is the module's own trouble.
func (l *LDAP) classify(step string, err error, userBind bool) error {
	var le *ldap.Error
	switch {
	case ldap.IsErrorWithCode(err, ldap.ErrorNetwork),
		// not an LDAP result: the connection itself failed (go-ldap
		// returns its reader's end, a read timeout among them, as a
		// plain error)
		!errors.As(err, &le):
		return fmt.Errorf("ldap: %w: %s: %w", errLDAPUnreachable, step, err)
	case userBind && ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		return fmt.Errorf("ldap: %w: %s: invalid credentials", ErrFailed, step)
	}
	return fmt.Errorf("ldap: %s: %w", step, err)
}

func (l *LDAP) attrs() []string {
	var a []string
	for _, x := range []string{l.uidAttr, l.gidAttr} {
		if x != "" {
			a = append(a, x)
		}
	}
	if len(a) == 0 {
		a = []string{"1.1"} // no attributes
	}
	return a
}

func (l *LDAP) check(ctx context.Context, c *ldap.Conn, username, password string) (Identity, error) {
	limit := int(l.timeout / time.Second)
	if limit < 1 {
		limit = 1
	}
	var dn string
	var entry *ldap.Entry
	if l.userDN != "" {
		dn = strings.Replace(l.userDN, "%s", ldap.EscapeDN(username), 1)
	} else {
		if err := l.bindService(c); err != nil {
			return Identity{}, err
		}
		filter := strings.ReplaceAll(l.filter, "%s", ldap.EscapeFilter(username))
		res, err := c.Search(ldap.NewSearchRequest(l.searchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			2, limit, false, filter, l.attrs(), nil))
		if err != nil && !(ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil) {
			return Identity{}, l.classify("user search", err, false)
		}
		switch len(res.Entries) {
		case 0:
			// A bind that fails as a wrong password does, so an unknown
			// name takes about as long as a known one.
			_ = c.Bind("cn=no-such-user,"+l.searchBase, password)
			return Identity{}, fmt.Errorf("ldap: %w: no entry matches the user search", ErrFailed)
		case 1:
			entry = res.Entries[0]
			dn = entry.DN
		default:
			return Identity{}, fmt.Errorf("ldap: the user search matches more than one entry (fix the filter)")
		}
	}
	if err := ctx.Err(); err != nil {
		return Identity{}, err
	}
	if err := c.Bind(dn, password); err != nil {
		return Identity{}, l.classify("user bind", err, true)
	}
	// From here on, the searches run as the service account when there is
	// one (directories often let users read little), else as the user.
	if l.bindDN != "" && (l.group != "" || l.groupsBase != "") {
		if err := l.bindService(c); err != nil {
			return Identity{}, err
		}
	}
	id := Identity{Username: username, LocalSessions: true}
	if l.uidAttr != "" || l.gidAttr != "" {
		if entry == nil {
			res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
				1, limit, false, "(objectClass=*)", l.attrs(), nil))
			if err != nil {
				return Identity{}, l.classify("read the user entry", err, false)
			}
			if len(res.Entries) != 1 {
				return Identity{}, fmt.Errorf("ldap: the user entry cannot be read")
			}
			entry = res.Entries[0]
		}
		var err error
		if id.UID, err = numericAttr(entry, l.uidAttr); err != nil {
			return Identity{}, err
		}
		if id.GID, err = numericAttr(entry, l.gidAttr); err != nil {
			return Identity{}, err
		}
		// Root and, for a proxy running as root, system accounts never
		// log in (as with pam): the answer a wrong password gets.
		if id.UID != "" {
			n, _ := strconv.Atoi(id.UID)
			if Unreachable(n, os.Geteuid() == 0) {
				return Identity{}, fmt.Errorf("ldap: %w: uid %d is root or a system account", ErrFailed, n)
			}
		}
		if id.GID == "0" {
			return Identity{}, fmt.Errorf("ldap: %w: gid 0 is root's group", ErrFailed)
		}
	}
	if l.group != "" {
		filter := strings.ReplaceAll(strings.ReplaceAll(l.group, "%s", ldap.EscapeFilter(username)), "%d", ldap.EscapeFilter(dn))
		res, err := c.Search(ldap.NewSearchRequest(l.groupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			1, limit, false, filter, []string{"1.1"}, nil))
		if err != nil && !(ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil) {
			return Identity{}, l.classify("group search", err, false)
		}
		if len(res.Entries) == 0 {
			return Identity{}, fmt.Errorf("ldap: %w: not in the group (group-filter matches nothing)", ErrFailed)
		}
	}
	if l.groupsBase != "" {
		groups, err := l.groups(ctx, c, username, dn, limit)
		if err != nil {
			return Identity{}, err
		}
		id.Groups = groups
	}
	return id, nil
}

// groups lists the names of the user's directory groups: a search under
// groups-base with groups-filter (name and DN filter-escaped), bounded by
// ldapMaxGroups entries and limit seconds. More matches than the bound
// are refused (the filter is wrong), never cut to an arbitrary part.
// Names that are empty, too long, not UTF-8 or hold control characters
// are skipped; the list is sorted without repeats.
func (l *LDAP) groups(ctx context.Context, c *ldap.Conn, username, dn string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		// the exchange's time ran out before the groups search: the
		// directory is as unreachable as one that stops answering in it.
		return nil, fmt.Errorf("ldap: %w: groups search: %w", errLDAPUnreachable, err)
	}
	filter := strings.ReplaceAll(strings.ReplaceAll(l.groupsFilt, "%s", ldap.EscapeFilter(username)), "%d", ldap.EscapeFilter(dn))
	max := ldapMaxGroups
	res, err := c.Search(ldap.NewSearchRequest(l.groupsBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		max+1, limit, false, filter, []string{l.groupName}, nil))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		return nil, fmt.Errorf("ldap: the groups search matches more entries than the server's size limit or %d (fix groups-filter)", max)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return nil, fmt.Errorf("ldap: groups search: groups-base %s does not exist or cannot be read", l.groupsBase)
	case err != nil:
		return nil, l.classify("groups search", err, false)
	case len(res.Entries) > max:
		return nil, fmt.Errorf("ldap: the groups search matches more than %d entries (fix groups-filter)", max)
	}
	var out []string
	for _, e := range res.Entries {
		for _, v := range e.GetEqualFoldAttributeValues(l.groupName) {
			if v == "" || len(v) > ldapMaxGroupName || !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
				continue
			}
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// numericAttr reads a decimal id attribute ("" when attr is "").
func numericAttr(e *ldap.Entry, attr string) (string, error) {
	if attr == "" {
		return "", nil
	}
	vs := e.GetAttributeValues(attr)
	if len(vs) != 1 {
		return "", fmt.Errorf("ldap: the user entry has %d values of %s, want one", len(vs), attr)
	}
	n, err := strconv.Atoi(vs[0])
	if err != nil || n < 0 || n > 1<<31-2 {
		return "", fmt.Errorf("ldap: %s of the user entry is not a number", attr)
	}
	return strconv.Itoa(n), nil
}
