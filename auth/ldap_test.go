package auth

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/ldaptest"
)

func TestLDAPSpecErrors(t *testing.T) {
	for _, spec := range []string{
		"ldap",
		"ldap,url=http://x,user-dn=uid=%s",
		"ldap,url=ldaps://,user-dn=uid=%s",
		"ldap,url=ldaps://h/dc=x,user-dn=uid=%s",
		"ldap,url=ldaps://u@h,user-dn=uid=%s",
		"ldap,url=ldaps://h",
		"ldap,url=ldaps://h,user-dn=uid=%s;dc=x,base=dc=x",
		"ldap,url=ldaps://h,user-dn=uid=x;dc=x",
		"ldap,url=ldaps://h,user-dn=uid=%s;dc=x;uid=%s",
		"ldap,url=ldaps://h,user-dn=uid=%s;dc=x,filter=(uid=%s)",
		"ldap,url=ldaps://h,base=dc=x,filter=(uid=x)",
		"ldap,url=ldaps://h,base=dc=x,filter=(uid=%s",
		"ldap,url=ldaps://h,base=dc=x,bind-dn=cn=s;dc=x",
		"ldap,url=ldaps://h,base=dc=x,bind-dn=cn=s;dc=x,bind-password-file=/f,bind-password-env=E",
		"ldap,url=ldaps://h,base=dc=x,bind-password-env=E",
		"ldap,url=ldaps://h,base=not a dn",
		"ldap,url=ldaps://h,user-dn=uid=%s;dc=x,group-filter=(cn=g)",
		"ldap,url=ldaps://h,base=dc=x,group-base=ou=g;dc=x",
		"ldap,url=ldaps://h,base=dc=x,group-filter=(member=%d",
		"ldap,url=ldaps://h,base=dc=x,timeout=0s",
		"ldap,url=ldaps://h,base=dc=x,timeout=2m",
		"ldap,url=ldaps://h,base=dc=x,tls=no",
		"ldap,url=ldaps://h,base=dc=x,groups-filter=(member=%d)",
		"ldap,url=ldaps://h,base=dc=x,group-name-attribute=cn",
		"ldap,url=ldaps://h,base=dc=x,groups-base=not a dn",
		"ldap,url=ldaps://h,base=dc=x,groups-base=ou=g;dc=x,groups-filter=(cn=admins)",
		"ldap,url=ldaps://h,base=dc=x,groups-base=ou=g;dc=x,groups-filter=(member=%d",
		"ldap,url=ldaps://h,base=dc=x,groups-base=ou=g;dc=x,group-name-attribute=cn)(x",
		"ldap,url=ldaps://h,base=dc=x,groups-base=ou=g;dc=x,group-name-attribute=",
		"ldap,url=ldaps://h,base=dc=x,groups-base=ou=g;dc=x,group-name-attribute=1.2.x",
	} {
		sp, err := ParseSpec(spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if _, err := New(sp, Options{}); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: got %v, want an ErrSpec", spec, err)
		}
	}
	if got := specDN(`uid=%s;ou=a\;b;dc=x`); got != `uid=%s,ou=a\;b,dc=x` {
		t.Fatalf("specDN: %q", got)
	}
}

// ldapDir is a slapd with the users and groups of the LDAP tests:
// alice and "a,b+c" in group xpra, bob in none, root0 with uidNumber 0.
func ldapDir(t *testing.T) *ldaptest.Server {
	t.Helper()
	return ldaptest.Start(t, ldaptest.Options{
		Users: []ldaptest.User{
			{UID: "alice", Password: "alice-pw", UIDNumber: 2001, GIDNumber: 3001},
			{UID: "bob", Password: "bob-pw", UIDNumber: 2002, GIDNumber: 3002},
			{UID: "a,b+c", Password: "comma-pw", UIDNumber: 2003, GIDNumber: 3003},
			{UID: "root0", Password: "root0-pw", UIDNumber: 0, GIDNumber: 0},
		},
		Groups: []ldaptest.Group{{CN: "xpra", Members: []string{"alice", "a,b+c", "root0"}}, {CN: "other", Members: []string{"bob"}}},
	})
}

// dnOpt is a DN in the spec form (';' between RDNs).
func dnOpt(dn string) string { return strings.ReplaceAll(dn, ",", ";") }

func wantFailed(t *testing.T, what string, err error, secrets ...string) {
	t.Helper()
	var re *RefusedError
	if !errors.Is(err, ErrFailed) || errors.As(err, &re) {
		t.Fatalf("%s: got %v, want ErrFailed", what, err)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("%s: the error holds a secret: %v", what, err)
		}
	}
}

func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) || errors.Is(err, ErrFailed) {
		t.Fatalf("%s: got %v, want a refusal that is no ErrFailed", what, err)
	}
}

// TestLDAPBindTemplate: a DN template over ldaps with the test CA: the
// right password logs in with uid/gid from the attributes, a wrong one or
// an unknown user fails, a user outside the group fails, a name that needs
// DN escaping works, uid 0 never logs in, plain transports are refused.
func TestLDAPBindTemplate(t *testing.T) {
	d := ldapDir(t)
	spec := "ldap,url=" + d.LDAPSURL + ",ca=" + d.CAFile + ",user-dn=uid=%s;" + dnOpt(ldaptest.People) +
		",group-base=" + dnOpt(ldaptest.Groups) + ",group-filter=(&(objectClass=groupOfNames)(cn=xpra)(member=%d))" +
		",uid-attribute=uidNumber,gid-attribute=gidNumber"
	a := mustNew(t, spec, Options{})
	if a.Name() != "ldap" {
		t.Fatal(a.Name())
	}
	id, err := doLogin(t, a, "alice", "alice-pw", tlsTCP)
	if err != nil {
		t.Fatalf("alice: %v\n%s", err, d.Log())
	}
	if id.Username != "alice" || id.UID != "2001" || id.GID != "3001" || !id.LocalSessions || id.Module != "ldap" {
		t.Fatalf("identity %+v", id)
	}
	_, err = doLogin(t, a, "alice", "alice-pwx", tlsTCP)
	wantFailed(t, "wrong password", err, "alice-pw")
	_, err = doLogin(t, a, "nobody", "alice-pw", tlsTCP)
	wantFailed(t, "unknown user", err, "alice-pw")
	// An empty password would be an anonymous ("unauthenticated") bind,
	// which directories accept for any DN (RFC 4513 5.1.2).
	empty := a.Begin("alice", tlsTCP)
	if _, err := empty.Challenge(xpraDigests, xpraSaltDigests); err != nil {
		t.Fatal(err)
	}
	_, err = empty.Verify(context.Background(), []byte{}, nil)
	wantFailed(t, "empty password", err)
	_, err = doLogin(t, a, "bob", "bob-pw", tlsTCP)
	wantFailed(t, "bob is not in group xpra", err)
	if id, err := doLogin(t, a, "a,b+c", "comma-pw", tlsTCP); err != nil || id.UID != "2003" {
		t.Fatalf("a user whose name needs DN escaping: %+v %v", id, err)
	}
	// DN injection: the name is one RDN value, never more RDNs.
	_, err = doLogin(t, a, "alice,"+ldaptest.People, "alice-pw", tlsTCP)
	wantFailed(t, "DN injection", err)
	for _, name := range []string{"alice\xff", "alice\x00", strings.Repeat("a", 300)} {
		_, err = doLogin(t, a, name, "alice-pw", tlsTCP)
		wantFailed(t, "a name that is no UTF-8, holds NUL or is too long", err)
	}
	_, err = doLogin(t, a, "root0", "root0-pw", tlsTCP)
	wantFailed(t, "uid 0", err)
	_, err = a.Begin("alice", plainTCP).Challenge(xpraDigests, xpraSaltDigests)
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "encrypted connection") {
		t.Fatalf("plain tcp: %v", err)
	}
	if _, err := a.Begin("alice", tlsTCP).Challenge([]string{"hmac+sha256"}, xpraSaltDigests); !errors.As(err, &re) {
		t.Fatalf("a client without xor: %v", err)
	}

	// Without the CA the server certificate is not trusted: a refusal
	// that bans nobody, not "authentication failed".
	noCA := mustNew(t, "ldap,url="+d.LDAPSURL+",user-dn=uid=%s;"+dnOpt(ldaptest.People), Options{})
	_, err = doLogin(t, noCA, "alice", "alice-pw", tlsTCP)
	wantRefused(t, "untrusted certificate", err)
}

// TestLDAPSearchThenBind: search as a service account over StartTLS, then
// bind as the entry found; filter injection finds nothing.
func TestLDAPSearchThenBind(t *testing.T) {
	d := ldapDir(t)
	common := ",ca=" + d.CAFile + ",base=" + dnOpt(ldaptest.People) + ",bind-dn=" + dnOpt(ldaptest.Service)
	group := ",group-base=" + dnOpt(ldaptest.Groups) + ",group-filter=(&(cn=xpra)(member=%d))"
	a := mustNew(t, "ldap,url="+d.LDAPURL+common+",bind-password-file="+d.ServicePWFile+group+
		",filter=(&(objectClass=posixAccount)(uid=%s)),uid-attribute=uidNumber,gid-attribute=gidNumber", Options{})
	id, err := doLogin(t, a, "alice", "alice-pw", tlsTCP)
	if err != nil || id.UID != "2001" || id.GID != "3001" || id.Username != "alice" {
		t.Fatalf("alice over StartTLS: %+v %v\n%s", id, err, d.Log())
	}
	_, err = doLogin(t, a, "alice", "bob-pw", tlsTCP)
	wantFailed(t, "wrong password", err, "bob-pw")
	_, err = doLogin(t, a, "bob", "bob-pw", tlsTCP)
	wantFailed(t, "outside the group", err)
	_, err = doLogin(t, a, "ghost", "x", tlsTCP)
	wantFailed(t, "unknown user", err)
	// Filter injection with alice's password: an unescaped name would
	// match alice's entry and her password would bind.
	for _, name := range []string{"*", "al*", "*)(uid=*", "alice)(|(uid=*", "x)(uid=alice"} {
		_, err = doLogin(t, a, name, "alice-pw", tlsTCP)
		wantFailed(t, "filter injection "+name, err)
	}
	if _, err := doLogin(t, a, "a,b+c", "comma-pw", tlsTCP); err != nil {
		t.Fatalf("a name with DN specials, found by search: %v", err)
	}

	// The service password from the environment works too; without
	// uid-attribute the identity has no uid (the user's own name is used).
	t.Setenv("XE_LDAP_TEST_PW", d.ServicePassword)
	env := mustNew(t, "ldap,url="+d.LDAPSURL+common+",bind-password-env=XE_LDAP_TEST_PW", Options{})
	if id, err := doLogin(t, env, "bob", "bob-pw", tlsTCP); err != nil || id.UID != "" || id.GID != "" {
		t.Fatalf("bob with the password from the environment: %+v %v", id, err)
	}
	// A wrong service password is the module's trouble, never the user's.
	t.Setenv("XE_LDAP_TEST_PW", "wrong")
	_, err = doLogin(t, env, "bob", "bob-pw", tlsTCP)
	if err == nil || errors.Is(err, ErrFailed) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong service password: %v", err)
	}
	// A filter that matches many entries is refused as ambiguous (a
	// configuration mistake), not taken as the first match.
	many := mustNew(t, "ldap,url="+d.LDAPSURL+common+",bind-password-file="+d.ServicePWFile+
		",filter=(|(uid=%s)(objectClass=posixAccount))", Options{})
	if _, err := doLogin(t, many, "alice", "alice-pw", tlsTCP); err == nil || errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "more than one") {
		t.Fatalf("ambiguous search: %v", err)
	}
	// This directory's ACL hides everything from anonymous searches (the
	// base is "no such object"): the module's trouble, no login, no ban.
	anon := mustNew(t, "ldap,url="+d.LDAPSURL+",ca="+d.CAFile+",base="+dnOpt(ldaptest.People), Options{})
	if _, err = doLogin(t, anon, "alice", "alice-pw", tlsTCP); err == nil || errors.Is(err, ErrFailed) {
		t.Fatalf("anonymous search: %v", err)
	}
}

// TestLDAPUnreachable: a closed port and a server that never answers are
// refusals (no ban), the latter within the timeout.
func TestLDAPUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	a := mustNew(t, "ldap,url=ldaps://"+closed+",user-dn=uid=%s;dc=x,timeout=500ms", Options{})
	_, err = doLogin(t, a, "alice", "pw", tlsTCP)
	wantRefused(t, "closed port", err)

	// Accepts and reads, never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	for _, scheme := range []string{"ldaps", "ldap"} {
		a = mustNew(t, "ldap,url="+scheme+"://"+silent.Addr().String()+",user-dn=uid=%s;dc=x,timeout=500ms", Options{})
		start := time.Now()
		_, err = doLogin(t, a, "alice", "pw", tlsTCP)
		wantRefused(t, scheme+" server that never answers", err)
		if took := time.Since(start); took < 400*time.Millisecond || took > 3*time.Second {
			t.Fatalf("%s: the login took %v with timeout=500ms", scheme, took)
		}
	}
}

// TestLDAPConcurrencyIsBounded: against a directory that accepts and never
// answers, at most len(ldapSlots) exchanges run at once; the other logins
// give up after SlotWait with ErrBusy (no ban), and the ones let in end at
// their timeout as refusals.
func TestLDAPConcurrencyIsBounded(t *testing.T) {
	old := SlotWait
	SlotWait = 300 * time.Millisecond
	t.Cleanup(func() { SlotWait = old })
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	a := mustNew(t, "ldap,url=ldaps://"+silent.Addr().String()+",user-dn=uid=%s;dc=x,timeout=1500ms", Options{})
	const logins = 20
	var busy, refused atomic.Int32
	var wg sync.WaitGroup
	for range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := doLogin(t, a, "alice", "pw", tlsTCP)
			var re *RefusedError
			switch {
			case errors.Is(err, ErrBusy):
				busy.Add(1)
			case errors.As(err, &re):
				refused.Add(1)
			default:
				t.Errorf("login: %v", err)
			}
		}()
	}
	wg.Wait()
	n := int32(cap(ldapSlots))
	if accepted.Load() != n || busy.Load() != logins-n || refused.Load() != n {
		t.Fatalf("%d connections reached the directory, %d busy, %d refused; want %d, %d, %d", accepted.Load(), busy.Load(), refused.Load(), n, logins-n, n)
	}
}

// groupsDir is a slapd for the group listing: alice in xpra and
// edge-admins, bob in other, a user whose name holds every filter special
// in odd, and two users named like filter injections in no group.
func groupsDir(t *testing.T) *ldaptest.Server {
	t.Helper()
	return ldaptest.Start(t, ldaptest.Options{
		Users: []ldaptest.User{
			{UID: "alice", Password: "alice-pw", UIDNumber: 2001, GIDNumber: 3001},
			{UID: "bob", Password: "bob-pw", UIDNumber: 2002, GIDNumber: 3002},
			{UID: `a*(b)\c`, Password: "odd-pw", UIDNumber: 2003, GIDNumber: 3003},
			{UID: "*", Password: "star-pw", UIDNumber: 2004, GIDNumber: 3004},
			{UID: "*)(|(cn=*", Password: "inj-pw", UIDNumber: 2005, GIDNumber: 3005},
		},
		Groups: []ldaptest.Group{
			{CN: "xpra", Members: []string{"alice"}},
			{CN: "edge-admins", Members: []string{"alice"}},
			{CN: "other", Members: []string{"bob"}},
			{CN: "odd", Members: []string{`a*(b)\c`}},
		},
	})
}

func wantGroups(t *testing.T, what string, a Authenticator, user, pw string, want ...string) {
	t.Helper()
	id, err := doLogin(t, a, user, pw, tlsTCP)
	if err != nil {
		t.Fatalf("%s: %s: %v", what, user, err)
	}
	if strings.Join(id.Groups, "|") != strings.Join(want, "|") {
		t.Fatalf("%s: %s is in groups %q, want %q", what, user, id.Groups, want)
	}
}

// TestLDAPGroups: with groups-base the login lists the user's directory
// groups into Identity.Groups, by member DN (the default) or by memberUid,
// as the user or as the service account; names and DNs are
// filter-escaped (a user named "*" is in no group, where the unescaped
// filter would match every group; a name made of filter specials finds
// its own group); the size bound refuses a filter matching more groups
// than ldapMaxGroups instead of cutting the list; without groups-base
// there are none.
func TestLDAPGroups(t *testing.T) {
	d := groupsDir(t)
	tmpl := "ldap,url=" + d.LDAPSURL + ",ca=" + d.CAFile + ",user-dn=uid=%s;" + dnOpt(ldaptest.People)
	byDN := mustNew(t, tmpl+",groups-base="+dnOpt(ldaptest.Groups), Options{})
	wantGroups(t, "member=%d as the user", byDN, "alice", "alice-pw", "edge-admins", "xpra")
	wantGroups(t, "member=%d as the user", byDN, "bob", "bob-pw", "other")
	wantGroups(t, "member=%d, a DN full of filter specials", byDN, `a*(b)\c`, "odd-pw", "odd")
	wantGroups(t, "member=%d, DN injection", byDN, "*", "star-pw")
	wantGroups(t, "member=%d, DN injection", byDN, "*)(|(cn=*", "inj-pw")
	_, err := doLogin(t, byDN, "alice", "bob-pw", tlsTCP)
	wantFailed(t, "wrong password with groups-base", err, "bob-pw")

	byUID := mustNew(t, tmpl+",groups-base="+dnOpt(ldaptest.Groups)+",groups-filter=(&(objectClass=groupOfNames)(memberUid=%s)),group-name-attribute=cn", Options{})
	wantGroups(t, "memberUid=%s", byUID, "alice", "alice-pw", "edge-admins", "xpra")
	wantGroups(t, "memberUid=%s, a name full of filter specials", byUID, `a*(b)\c`, "odd-pw", "odd")
	wantGroups(t, "memberUid=%s, filter injection", byUID, "*", "star-pw")
	wantGroups(t, "memberUid=%s, filter injection", byUID, "*)(|(cn=*", "inj-pw")

	// Search then bind as the service account, the gate group-filter and
	// the listing together: the listing runs as the service account.
	svc := mustNew(t, "ldap,url="+d.LDAPURL+",ca="+d.CAFile+",base="+dnOpt(ldaptest.People)+
		",bind-dn="+dnOpt(ldaptest.Service)+",bind-password-file="+d.ServicePWFile+
		",group-base="+dnOpt(ldaptest.Groups)+",group-filter=(&(cn=xpra)(member=%d))"+
		",groups-base="+dnOpt(ldaptest.Groups)+",groups-filter=(|(member=%d)(memberUid=%s))", Options{})
	wantGroups(t, "service account over StartTLS", svc, "alice", "alice-pw", "edge-admins", "xpra")
	_, err = doLogin(t, svc, "bob", "bob-pw", tlsTCP)
	wantFailed(t, "bob outside the gate group", err)

	// Without groups-base the module vouches for no groups.
	plain := mustNew(t, tmpl, Options{})
	if id, err := doLogin(t, plain, "alice", "alice-pw", tlsTCP); err != nil || id.Groups != nil {
		t.Fatalf("without groups-base: %+v %v", id, err)
	}

	// The bound: alice is in 2 groups; with ldapMaxGroups 2 she logs in,
	// with 1 the login is the module's trouble (no ban), never a cut list.
	old := ldapMaxGroups
	t.Cleanup(func() { ldapMaxGroups = old })
	ldapMaxGroups = 2
	wantGroups(t, "at the bound", byDN, "alice", "alice-pw", "edge-admins", "xpra")
	ldapMaxGroups = 1
	_, err = doLogin(t, byDN, "alice", "alice-pw", tlsTCP)
	var re *RefusedError
	if err == nil || errors.Is(err, ErrFailed) || errors.As(err, &re) || !strings.Contains(err.Error(), "fix groups-filter") {
		t.Fatalf("more groups than the bound: %v", err)
	}
	wantGroups(t, "under the bound", byDN, "bob", "bob-pw", "other")
	ldapMaxGroups = old

	// A groups-base that does not exist is the module's trouble too.
	missing := mustNew(t, tmpl+",groups-base=ou=nowhere;"+dnOpt(ldaptest.Suffix), Options{})
	if _, err := doLogin(t, missing, "alice", "alice-pw", tlsTCP); err == nil || errors.Is(err, ErrFailed) {
		t.Fatalf("missing groups-base: %v", err)
	}
}

// TestLDAPGroupsSilentDirectory: a directory that answers the binds but
// falls silent at the groups search (a relay in front of the real slapd
// that stops at the search under groups-base) refuses the login within
// the timeout: a refusal, which bans nobody, never ErrFailed. Through the
// same relay, a login that lists no groups works.
func TestLDAPGroupsSilentDirectory(t *testing.T) {
	d := groupsDir(t)
	relay, silenced := d.SilentProxy(t, []byte(ldaptest.Groups))
	spec := "ldap,url=" + relay + ",ca=" + d.CAFile + ",user-dn=uid=%s;" + dnOpt(ldaptest.People) + ",timeout=1s"
	if _, err := doLogin(t, mustNew(t, spec, Options{}), "alice", "alice-pw", tlsTCP); err != nil || silenced.Load() != 0 {
		t.Fatalf("through the relay without groups-base: %v (%d silenced)", err, silenced.Load())
	}
	a := mustNew(t, spec+",groups-base="+dnOpt(ldaptest.Groups), Options{})
	start := time.Now()
	_, err := doLogin(t, a, "alice", "alice-pw", tlsTCP)
	took := time.Since(start)
	wantRefused(t, "silent at the groups search", err)
	if silenced.Load() != 1 {
		t.Fatalf("the relay fell silent %d times, want 1 (the refusal came from elsewhere: %v)", silenced.Load(), err)
	}
	if took < 900*time.Millisecond || took > 4*time.Second {
		t.Fatalf("the login took %v with timeout=1s", took)
	}
}
