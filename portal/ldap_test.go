package portal

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/internal/ldaptest"
)

// ldapPortal is a portal whose password form checks the real ldap module
// (spec) against d; no system user has any group.
func ldapPortal(t *testing.T, spec string) *env {
	t.Helper()
	sp, err := auth.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := auth.New(sp, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, px: &fakeProxy{}}
	e.p = New(Config{
		Logger:     slog.New(slog.DiscardHandler),
		AdminGroup: "xpra-admins",
		Info: func(r *http.Request) (edge.RequestInfo, bool) {
			return edge.RequestInfo{Remote: "192.0.2.1:4000", TLS: true, HTTPS: true, Listener: "test", Auth: mod}, true
		},
		SystemGroups: func(string) []string { return nil },
	})
	e.p.Attach(e.px)
	return e
}

// TestLDAPGroupsMakeAdmin: with the ldap module listing directory groups
// (groups-base=), alice, in the directory group xpra-admins, gets /admin/;
// bob, in another group, gets 403, also in a browser where alice was
// logged in (and out) just before: her groups stay hers; without groups-base the
// same alice is no admin (the groups came from the directory).
func TestLDAPGroupsMakeAdmin(t *testing.T) {
	d := ldaptest.Start(t, ldaptest.Options{
		Users: []ldaptest.User{
			{UID: "alice", Password: "alice-pw", UIDNumber: 2001, GIDNumber: 3001},
			{UID: "bob", Password: "bob-pw", UIDNumber: 2002, GIDNumber: 3002},
		},
		Groups: []ldaptest.Group{{CN: "xpra-admins", Members: []string{"alice"}}, {CN: "users", Members: []string{"alice", "bob"}}},
	})
	dn := func(s string) string { return strings.ReplaceAll(s, ",", ";") }
	spec := "ldap,url=" + d.LDAPSURL + ",ca=" + d.CAFile + ",user-dn=uid=%s;" + dn(ldaptest.People)
	e := ldapPortal(t, spec+",groups-base="+dn(ldaptest.Groups))

	isAdmin := func(b *browser, who string, want bool) {
		t.Helper()
		_, page := b.login(who, who+"-pw")
		if !strings.Contains(page, `action="/logout"`) {
			t.Fatalf("%s did not log in:\n%s", who, page)
		}
		if strings.Contains(page, `id="admin-link"`) != want {
			t.Errorf("%s: admin link shown: %v, want %v", who, !want, want)
		}
		wantStatus := http.StatusForbidden
		if want {
			wantStatus = http.StatusOK
		}
		for _, path := range []string{"/admin/", "/admin/sessions.json"} {
			if resp := b.do("GET", path, nil); resp.StatusCode != wantStatus {
				t.Errorf("%s: GET %s: %s, want %d", who, path, resp.Status, wantStatus)
			}
		}
		if resp := b.do("POST", "/logout", url.Values{"csrf": {csrfOf(t, page)}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: logout: %s", who, resp.Status)
		}
	}
	isAdmin(e.browser(), "alice", true)
	isAdmin(e.browser(), "bob", false)
	shared := e.browser()
	isAdmin(shared, "alice", true)
	isAdmin(shared, "bob", false)
	isAdmin(shared, "alice", true)

	isAdmin(ldapPortal(t, spec).browser(), "alice", false)
}

// TestLDAPGroupsSilentDirectoryIsNoBan: a directory that falls silent at
// the groups search (a relay in front of slapd) refuses the portal login
// with the directory's reason (403), within the module's timeout, and
// counts no failure toward a ban.
func TestLDAPGroupsSilentDirectoryIsNoBan(t *testing.T) {
	d := ldaptest.Start(t, ldaptest.Options{
		Users:  []ldaptest.User{{UID: "alice", Password: "alice-pw", UIDNumber: 2001, GIDNumber: 3001}},
		Groups: []ldaptest.Group{{CN: "xpra-admins", Members: []string{"alice"}}},
	})
	relay, silenced := d.SilentProxy(t, []byte(ldaptest.Groups))
	dn := func(s string) string { return strings.ReplaceAll(s, ",", ";") }
	e := ldapPortal(t, "ldap,url="+relay+",ca="+d.CAFile+",user-dn=uid=%s;"+dn(ldaptest.People)+
		",groups-base="+dn(ldaptest.Groups)+",timeout=1s")
	b := e.browser()
	page := bodyOf(t, b.do("GET", "/", nil))
	resp := b.do("POST", "/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"alice"}, "password": {"alice-pw"}})
	page = bodyOf(t, resp)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "cannot be reached") || silenced.Load() != 1 {
		t.Fatalf("login while the directory is silent at the groups search: %s (%d silenced)\n%s", resp.Status, silenced.Load(), page)
	}
	e.px.mu.Lock()
	failures := e.px.failures
	e.px.mu.Unlock()
	if failures != 0 {
		t.Fatalf("%d failures counted toward a ban", failures)
	}
}
