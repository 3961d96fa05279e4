package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/oidctest"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

var opRequestID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// oidcSignIn follows the portal's single sign-on button to the provider's
// login form, types the password there and returns the last answer (the
// portal's callback page, or the redirect to it when w.stopAt is set).
func oidcSignIn(t *testing.T, w *webClient, op *oidctest.Provider, user, password string) (*http.Response, string) {
	t.Helper()
	resp, page := w.get("/login/oidc")
	m := opRequestID.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), op.Issuer+"/login") || m == nil {
		t.Fatalf("the sign-on button did not lead to the provider's login form: %d %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	return w.post(op.Issuer+"/login", url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
}

// TestPortalOIDCLogin: xpra-edge's portal with [portal.oidc] only (no
// password form), against a real OpenID provider (zitadel/oidc's op) in
// the test process, trusted through ca_file: a member of the allowed
// group signs in at the provider and gets her session list (the display
// her group maps to; the admin view from the groups claim); a user outside
// the allowed groups and a callback with a tampered state are refused; the
// client secret never reaches the log.
func TestPortalOIDCLogin(t *testing.T) {
	xpratest.RequirePeers(t, "root")
	addr := xpratest.FreeTCPAddr(t)
	base := "https://" + addr
	secret := randomPassword(t)
	op := oidctest.Start(t, oidctest.Options{
		ClientSecret: secret,
		RedirectURIs: []string{base + "/login/oidc/callback"},
		Users: []oidctest.User{
			{Username: "carol", Password: "carol-pw", Groups: []string{"xpra-users", "xpra-admins"}},
			{Username: "dave", Password: "dave-pw", Groups: []string{"others"}},
		},
	})
	secretFile := writeFile(t, filepath.Join(t.TempDir(), "oidc-secret"), secret+"\n")
	extra := fmt.Sprintf(`[portal]
enable = true
password_login = false
admin_group = "xpra-admins"

[portal.oidc]
issuer = %q
client_id = "xpra-edge"
client_secret_file = %q
ca_file = %q
redirect_url = %q
allowed_groups = ["xpra-users"]
group_displays = { "xpra-users" = ["tcp://127.0.0.1:1/7"] }
`, op.Issuer, secretFile, op.CAFile, base+"/login/oidc/callback")
	sp := startSystemwideProxy(t, swOptions{auth: "toml", addr: addr, extra: extra})

	w := newWebClient(t, base, sp.caFile, op.CAFile)
	_, page := w.get("/")
	if !strings.Contains(page, `href="/login/oidc"`) || strings.Contains(page, `name="password"`) {
		t.Fatalf("the login page should offer single sign-on only:\n%s", page)
	}
	resp, page := oidcSignIn(t, w, op, "carol", "carol-pw")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Signed in") {
		t.Fatalf("callback: %d\n%s\nproxy:\n%s", resp.StatusCode, page, sp.log.String())
	}
	_, page = w.get("/")
	if !signedInAs(page, "carol") || !strings.Contains(page, `data-display=":7"`) || !strings.Contains(page, `href="/admin/"`) {
		t.Fatalf("carol's session list:\n%s", page)
	}
	if resp, _ := w.get("/admin/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin view for a member of xpra-admins: %d", resp.StatusCode)
	}
	if !sp.waitLog(`msg="portal login"`, 5*time.Second) || !sp.waitLog("user=carol module=oidc", 5*time.Second) {
		t.Fatalf("no portal login logged:\n%s", sp.log.String())
	}

	d := newWebClient(t, base, sp.caFile, op.CAFile)
	resp, page = oidcSignIn(t, d, op, "dave", "dave-pw")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "authentication failed") {
		t.Fatalf("dave (outside the allowed group): %d\n%s", resp.StatusCode, page)
	}
	if _, page := d.get("/"); signedInAs(page, "dave") {
		t.Fatal("dave is signed in")
	}

	x := newWebClient(t, base, sp.caFile, op.CAFile)
	x.stopAt = base + "/login/oidc/callback"
	resp, _ = oidcSignIn(t, x, op, "carol", "carol-pw")
	cb, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || cb.Query().Get("state") == "" {
		t.Fatalf("redirect to the callback: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := cb.Query()
	q.Set("state", "tampered-"+q.Get("state"))
	cb.RawQuery = q.Encode()
	x.stopAt = ""
	resp, page = x.get(cb.String())
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered state: %d\n%s", resp.StatusCode, page)
	}
	if _, page := x.get("/"); signedInAs(page, "carol") {
		t.Fatal("signed in with a tampered state")
	}
	noSecrets(t, sp.proxy, secret)
}

// TestPortalOIDCBrowserFlow: headless chromium through single sign-on:
// the portal's login page, the provider's login form (zitadel/oidc's op
// in the test process), back to the portal's session list, which holds
// the real xpra 3.1.3 session that carol's group maps to; "open" hands a
// ticket to the HTML5 client, which draws that session's xterm (pixels
// checked). Screenshots of each page go to $XPRA_EDGE_SHOTS.
func TestPortalOIDCBrowserFlow(t *testing.T) {
	xpratest.RequirePeers(t, "chromium")
	if _, err := os.Stat("/usr/share/xpra/www/index.html"); err != nil {
		xpratest.RequirePeers(t, "xpra-html5 (/usr/share/xpra/www)")
	}
	be := startBackendPair(t)
	secret := randomPassword(t)
	idp := oidctest.Start(t, oidctest.Options{
		ClientSecret: secret,
		Users: []oidctest.User{
			{Username: "carol", Password: "carol-pw", Groups: []string{"xpra-users"}},
		},
	})
	secretFile := writeFile(t, filepath.Join(t.TempDir(), "oidc-secret"), secret+"\n")
	op := startOnePort(t, be, fmt.Sprintf(`
[portal]
enable = true

[portal.oidc]
issuer = %q
client_id = "xpra-edge"
client_secret_file = %q
ca_file = %q
allowed_groups = ["xpra-users"]
group_displays = { "xpra-users" = ["tcp://%s/%d"] }
`, idp.Issuer, secretFile, idp.CAFile, be.b.TCPAddr, be.b.DisplayNum))
	base := "https://" + op.addr
	idp.AllowRedirect(base + "/login/oidc/callback")
	shots := portalShots(t)
	shot := func(b *xpratest.Browser, name string) string {
		p := filepath.Join(shots, name)
		if err := b.Screenshot(p); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
		return p
	}

	b := xpratest.OpenHTML5With(t, base+"/", xpratest.BrowserOptions{IgnoreCertErrors: true, Lifetime: 4 * time.Minute})
	if err := b.WaitTrue(`document.getElementById("login-oidc") && document.getElementById("signin")`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	shot(b, "portal-oidc-1-login.png")
	if err := b.Eval(`(() => { document.getElementById("login-oidc").click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitTrue(`document.getElementById("op-submit") !== null`, 20*time.Second); err != nil {
		t.Fatalf("%v: page %s", err, b.Location())
	}
	if !strings.HasPrefix(b.Location(), idp.Issuer+"/login") {
		t.Fatalf("the button led to %s, not the provider", b.Location())
	}
	if err := b.Eval(`(() => { document.getElementById("op-username").value = "carol"; document.getElementById("op-password").value = "carol-pw";
		return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	shot(b, "portal-oidc-2-provider.png")
	if err := b.Eval(`(() => { document.getElementById("op-submit").click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	display := ":" + strconv.Itoa(be.b.DisplayNum)
	if err := b.WaitTrue(fmt.Sprintf(`document.getElementById("user") && document.getElementById("user").innerText === "carol" &&
		document.querySelectorAll("tr.session").length === 1 && document.querySelector("tr.session").dataset.display === %q`, display), 30*time.Second); err != nil {
		t.Fatalf("%v: page %s: %q\nproxy:\n%s", err, b.Location(), b.PageText(), op.log.String())
	}
	if !strings.HasPrefix(b.Location(), base+"/") {
		t.Fatalf("the session list is at %s", b.Location())
	}
	shot(b, "portal-oidc-3-sessions.png")
	if err := b.Eval(`(() => { document.querySelector("tr.session button.open").click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitDrawn(60 * time.Second); err != nil {
		t.Fatalf("%v\npage %s: %q", err, b.Location(), b.PageText())
	}
	if text := b.PageText(); !strings.Contains(text, titleB) {
		t.Errorf("the client does not show %q of carol's session: %q", titleB, text)
	}
	checkXtermDrawn(t, b, shot(b, "portal-oidc-4-client.png"))
	if !op.waitLog("user=carol module=oidc", 5*time.Second) {
		t.Fatalf("no oidc portal login logged:\n%s", op.log.String())
	}
	noSecrets(t, op.proxy, secret)
}
