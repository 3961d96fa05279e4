package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/ldaptest"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// TestLDAPLoginOverTLS: xpra-edge with an ldap listener (Debian's slapd,
// search then bind as a service account over StartTLS, a group filter,
// uid/gid from uidNumber/gidNumber). The real xpra 3.1.3 client logs in
// over TLS as the directory user carol, whose uidNumber is the uid of a
// local account with another name: it reaches that account's running
// session, so the uid came from the directory (system-wide mode). A wrong
// password, a user outside the group with the right password, and plain
// xpra are refused. The portal's password login uses the same module:
// carol sees that session in her list; wrong password and dave are
// refused. The module also lists carol's directory groups (groups-base=):
// she is in edge-admins, the portal's admin_group, and gets /admin/;
// erin, in xpra-users only and of the same uid (so the same system
// groups), gets 403. No password reaches the log.
func TestLDAPLoginOverTLS(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "root")
	ldaptest.Require(t)
	local := xpratest.CreateUser(t, userName("xpl"), randomPassword(t))
	sessDir := sharedSocketDir(t)
	s := xpratest.StartServer(t, xpratest.ServerOptions{User: local.Name, SocketDir: sessDir, Start: "xterm -T edge-" + local.Name})
	pwC, pwD, pwE := randomPassword(t), randomPassword(t), randomPassword(t)
	d := ldaptest.Start(t, ldaptest.Options{
		Users: []ldaptest.User{
			{UID: "carol", Password: pwC, UIDNumber: local.UID, GIDNumber: local.GID},
			{UID: "dave", Password: pwD, UIDNumber: local.UID, GIDNumber: local.GID},
			{UID: "erin", Password: pwE, UIDNumber: local.UID, GIDNumber: local.GID},
		},
		Groups: []ldaptest.Group{{CN: "xpra-users", Members: []string{"carol", "erin"}}, {CN: "other", Members: []string{"dave"}},
			{CN: "edge-admins", Members: []string{"carol"}}},
	})
	dn := func(s string) string { return strings.ReplaceAll(s, ",", ";") }
	spec := "ldap,url=" + d.LDAPURL + ",ca=" + d.CAFile + ",base=" + dn(ldaptest.People) +
		",bind-dn=" + dn(ldaptest.Service) + ",bind-password-file=" + d.ServicePWFile +
		",group-filter=(&(objectClass=groupOfNames)(cn=xpra-users)(member=%d)),group-base=" + dn(ldaptest.Groups) +
		",uid-attribute=uidNumber,gid-attribute=gidNumber,groups-base=" + dn(ldaptest.Groups)
	sp := startSystemwideProxy(t, swOptions{sessDir: sessDir, auth: spec, extra: "[portal]\nenable = true\nadmin_group = \"edge-admins\"\n"})

	c := sp.attachTLS(t, "carol", pwC, "")
	if err := c.WaitOutput(xpratest.AttachedLine, attachTimeout); err != nil {
		t.Fatalf("carol over TLS: %v\n%s\nproxy:\n%s\nslapd:\n%s", err, c.Output(), sp.log.String(), d.Log())
	}
	w, err := c.WaitWindowInfo("xterm", attachTimeout)
	if err != nil || !strings.Contains(w.Title, "edge-"+local.Name) {
		t.Fatalf("carol sees window %q (%v), want the xterm of uid %d's session", w.Title, err, local.UID)
	}
	wantInfo(t, sp.proxyInfo(t, 1), "proxy.user", "carol", "proxy.auth", "ldap", "proxy.display", s.Display,
		"proxy.target", "socket://"+s.SocketPath)
	c.Stop()

	bad := sp.attachTLS(t, "carol", pwC+"x", "")
	refused(t, "wrong password", bad, "authentication failed")
	outside := sp.attachTLS(t, "dave", pwD, "")
	refused(t, "dave is outside the group", outside, "authentication failed")
	ghost := sp.attachTLS(t, "nobody-xe", pwC, "")
	refused(t, "unknown user", ghost, "authentication failed")
	plain := xpratest.Attach(t, "tcp://carol:"+pwC+"@"+sp.addr+"/", xpratest.ClientOptions{})
	if out := refused(t, "plain tcp", plain, "encrypted connection"); strings.Contains(out, "authentication failed") {
		t.Fatalf("plain tcp was told the password is wrong instead of why:\n%s", out)
	}
	if !sp.waitLog("user=dave", 5*time.Second) || !sp.waitLog("not in the group", 5*time.Second) {
		t.Fatalf("the proxy did not log why dave was refused:\n%s", sp.log.String())
	}

	// The portal's password form checks the same module: carol sees her
	// (uid's) session, a wrong password and dave are refused.
	web := newWebClient(t, "https://"+sp.addr, sp.caFile)
	resp, page := web.portalLogin("carol", pwC)
	if resp.StatusCode != 200 || !signedInAs(page, "carol") || !strings.Contains(page, `data-display="`+s.Display+`"`) {
		t.Fatalf("portal login of carol: %d\n%s\nproxy:\n%s", resp.StatusCode, page, sp.log.String())
	}
	for _, path := range []string{"/admin/", "/admin/sessions.json"} {
		if resp, page := web.get(path); resp.StatusCode != 200 || !strings.Contains(page, "sessions") {
			t.Fatalf("carol (directory group edge-admins) GET %s: %d\n%s\nproxy:\n%s", path, resp.StatusCode, page, sp.log.String())
		}
	}
	if !sp.waitLog("user=carol module=ldap admin=true", 5*time.Second) {
		t.Fatalf("the proxy did not log carol's portal login as an admin:\n%s", sp.log.String())
	}
	erin := newWebClient(t, "https://"+sp.addr, sp.caFile)
	if resp, page := erin.portalLogin("erin", pwE); resp.StatusCode != 200 || !signedInAs(page, "erin") || strings.Contains(page, `id="admin-link"`) {
		t.Fatalf("portal login of erin: %d\n%s", resp.StatusCode, page)
	}
	for _, path := range []string{"/admin/", "/admin/sessions.json"} {
		if resp, page := erin.get(path); resp.StatusCode != 403 {
			t.Fatalf("erin (not in edge-admins) GET %s: %d\n%s", path, resp.StatusCode, page)
		}
	}
	for _, c := range []struct{ user, pw string }{{"carol", pwC + "x"}, {"dave", pwD}} {
		web := newWebClient(t, "https://"+sp.addr, sp.caFile)
		resp, page := web.portalLogin(c.user, c.pw)
		if resp.StatusCode != 401 || signedInAs(page, c.user) || !strings.Contains(page, "authentication failed") {
			t.Fatalf("portal login of %s with a wrong password or outside the group: %d\n%s", c.user, resp.StatusCode, page)
		}
	}
	noSecrets(t, sp.proxy, pwC, pwD, pwE, d.ServicePassword)
}
