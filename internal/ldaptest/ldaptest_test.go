package ldaptest

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestStart: the directory answers on both ports, over TLS only, with the
// users and groups it was given, and refuses a wrong password and
// anonymous searches.
func TestStart(t *testing.T) {
	s := Start(t, Options{
		Users:  []User{{UID: "alice", Password: "pw-a", UIDNumber: 2001, GIDNumber: 3001}},
		Groups: []Group{{CN: "xpra", Members: []string{"alice"}}},
	})
	c, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(s.TLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(User{UID: "alice"}.DN(), "pw-a"); err != nil {
		t.Fatalf("bind over ldaps: %v\n%s", err, s.Log())
	}
	res, err := c.Search(ldap.NewSearchRequest(Groups, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(member="+ldap.EscapeFilter(User{UID: "alice"}.DN())+")", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("cn") != "xpra" {
		t.Fatalf("group search: %v %+v", err, res)
	}
	if err := c.Bind(User{UID: "alice"}.DN(), "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}

	p, err := ldap.DialURL(s.LDAPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// No simple bind without TLS (security simple_bind=128).
	if err := p.Bind(User{UID: "alice"}.DN(), "pw-a"); err == nil {
		t.Fatal("a simple bind without TLS succeeded")
	}
	if err := p.StartTLS(s.TLSConfig()); err != nil {
		t.Fatal(err)
	}
	if err := p.Bind(Service, s.ServicePassword); err != nil {
		t.Fatalf("service bind after StartTLS: %v", err)
	}
	a, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(s.TLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	res, err = a.Search(ldap.NewSearchRequest(People, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(uid=alice)", nil, nil))
	if err == nil && len(res.Entries) > 0 {
		t.Fatal("an anonymous search found users")
	}
}
