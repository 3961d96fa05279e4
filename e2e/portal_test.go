package e2e

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"

	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// Issue #14: the browser portal, through headless chromium against real
// xpra 3.1.3 servers: a password login, two sessions listed, one opened in
// xpra's HTML5 client without typing the password again (a single-use
// ticket handed over in sessionStorage), the xterm drawn, the same ticket
// refused a second time, the admin view, logout ending the login on the
// server.

// portalShots is where the portal's screenshots go: $XPRA_EDGE_SHOTS
// when set (not committed), else the test's artifact directory.
func portalShots(t *testing.T) string {
	if d := os.Getenv("XPRA_EDGE_SHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// captureTicketJS copies whatever a page puts in sessionStorage under
// "password" into localStorage (shared by the portal's and the client's
// pages of the origin), as somebody who saw the ticket in transit would
// keep it.
const captureTicketJS = `(() => {
	const set = Storage.prototype.setItem;
	Storage.prototype.setItem = function (k, v) {
		if (k === "password" && this === window.sessionStorage) {
			try { set.call(window.localStorage, "captured-ticket", v); } catch (e) {}
		}
		return set.apply(this, arguments);
	};
})()`

func TestPortalBrowserFlow(t *testing.T) {
	xpratest.RequirePeers(t, "chromium")
	if _, err := os.Stat("/usr/share/xpra/www/index.html"); err != nil {
		xpratest.RequirePeers(t, "xpra-html5 (/usr/share/xpra/www)")
	}
	be := startBackendPair(t)
	op := startOnePort(t, be, fmt.Sprintf(`
[portal]
enable = true
admin_users = [%q]
`, twoUser))
	shots := portalShots(t)
	base := "https://" + op.addr
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, op.caFile)}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Plain http is sent to https; the HTML5 client moved to /client/ and
	// its files are still at their old paths.
	resp, err := hc.Get("http://" + op.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != base+"/" {
		t.Errorf("GET http://.../: %s Location %q, want a redirect to %s/", resp.Status, resp.Header.Get("Location"), base)
	}
	want, _ := os.ReadFile("/usr/share/xpra/www/index.html")
	for _, u := range []string{base + "/client/", base + "/client/index.html", base + "/index.html"} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != string(want) {
			t.Errorf("GET %s: %s, %d bytes: not Debian's HTML5 client page", u, resp.Status, len(body))
		}
	}

	opts := xpratest.BrowserOptions{IgnoreCertErrors: true, Lifetime: 4 * time.Minute}
	b := xpratest.OpenHTML5With(t, base+"/", opts)
	if err := b.WaitTrue(`document.getElementById("signin")`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	shot := func(b *xpratest.Browser, name string) string {
		p := filepath.Join(shots, name)
		if err := b.Screenshot(p); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
		return p
	}
	shot(b, "portal-1-login.png")
	submit := func(user, password string) {
		t.Helper()
		js := fmt.Sprintf(`(() => { document.getElementById("username").value = %q; document.getElementById("password").value = %q;
			document.getElementById("signin").click(); return true; })()`, user, password)
		if err := b.Eval(js, nil); err != nil {
			t.Fatal(err)
		}
	}
	submit(twoUser, "wrong")
	if err := b.WaitTrue(`document.getElementById("error") && document.getElementById("error").innerText.includes("authentication failed")`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	shot(b, "portal-2-login-failed.png")
	submit(twoUser, twoPassword)
	if err := b.WaitTrue(`document.querySelectorAll("tr.session").length === 2`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := b.Eval(`Array.from(document.querySelectorAll("tr.session")).map(r => r.dataset.display)`, &listed); err != nil {
		t.Fatal(err)
	}
	da, db := ":"+strconv.Itoa(be.a.DisplayNum), ":"+strconv.Itoa(be.b.DisplayNum)
	if len(listed) != 2 || !strings.Contains(strings.Join(listed, " "), da) || !strings.Contains(strings.Join(listed, " "), db) {
		t.Fatalf("sessions listed %v, want %s and %s", listed, da, db)
	}
	if text := b.PageText(); strings.Contains(text, "127.0.0.1") {
		t.Errorf("the session list shows backend addresses: %q", text)
	}
	shot(b, "portal-3-sessions.png")

	cookies, err := b.Cookies(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	var login *network.Cookie
	for _, c := range cookies {
		if c.Name == "__Host-xpra-edge" {
			login = c
		}
	}
	if login == nil {
		t.Fatalf("no login cookie among %d", len(cookies))
	}
	if !login.Secure || !login.HTTPOnly || login.SameSite != network.CookieSameSiteStrict || login.Path != "/" {
		t.Errorf("login cookie: secure=%v httpOnly=%v sameSite=%q path=%q", login.Secure, login.HTTPOnly, login.SameSite, login.Path)
	}

	// Open backend b's session: the page hands the ticket over and the
	// HTML5 client draws b's xterm.
	if err := b.OnNewDocument(captureTicketJS); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := b.Eval(fmt.Sprintf(`(() => { document.querySelector('tr.session[data-display=%q] button.open').click(); return true; })()`, db), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitDrawn(60 * time.Second); err != nil {
		t.Fatalf("%v\npage %s: %q", err, b.Location(), b.PageText())
	}
	t.Logf("HTML5 client drew the xterm %v after \"open\"", time.Since(began).Round(time.Millisecond))
	if loc := b.Location(); strings.Contains(loc, "password") || !strings.Contains(loc, "/client/index.html") {
		t.Errorf("client page URL %q", loc)
	}
	if text := b.PageText(); !strings.Contains(text, titleB) {
		t.Errorf("the client does not show %q of the session chosen: %q", titleB, text)
	}
	checkXtermDrawn(t, b, shot(b, "portal-4-client.png"))
	var reconnect bool
	if err := b.Eval(`client.reconnect`, &reconnect); err != nil || reconnect {
		t.Errorf("the client would reconnect by itself with a used ticket (reconnect=%v, %v)", reconnect, err)
	}
	var ticket string
	if err := b.Eval(`localStorage.getItem("captured-ticket") || ""`, &ticket); err != nil || len(ticket) < 40 {
		t.Fatalf("ticket not seen in transit (%q, %v)", ticket, err)
	}
	if err := b.Eval(`sessionStorage.getItem("password")`, new(any)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(op.log.String(), ticket) {
		t.Errorf("the proxy's log holds the ticket")
	}

	// The admin view, in another tab, lists the live session.
	adm := b.NewTab(t, base+"/admin/")
	if err := adm.WaitTrue(`document.querySelectorAll("tr.live").length === 1`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := adm.Navigate(base + "/admin/sessions.json"); err != nil {
		t.Fatal(err)
	}
	var js struct {
		Sessions []struct {
			User, Remote, Target, Display string
			FromServer                    int64 `json:"bytes_from_server"`
		}
	}
	if err := json.Unmarshal([]byte(adm.PageText()), &js); err != nil || len(js.Sessions) != 1 {
		t.Fatalf("sessions.json: %v %q", err, adm.PageText())
	}
	if s := js.Sessions[0]; s.User != twoUser || s.Display != db || s.FromServer < 1000 || !strings.HasPrefix(s.Remote, "127.0.0.1:") {
		t.Errorf("sessions.json: %+v", s)
	}

	// The admin stops it: the client is told.
	if err := adm.Navigate(base + "/admin/"); err != nil {
		t.Fatal(err)
	}
	shot(adm, "portal-5-admin.png")
	if err := adm.Eval(`(() => { document.querySelector("tr.live button.stop").click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	reason, err := b.WaitDisconnected(20 * time.Second)
	if err != nil || !strings.Contains(reason, "stopped by an administrator") {
		t.Fatalf("after the admin's stop the client shows %q (%v)", reason, err)
	}
	t.Logf("the client shows %q after the admin's stop", reason)
	// The admin page the stop leads to lists none. The stop waits up to
	// 5 s for the session to end before it answers, then that page
	// loads: 30 s leaves room on a loaded machine.
	if err := adm.WaitTrue(`document.querySelectorAll("tr.live").length === 0`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if !op.waitLog("portal admin stopped a session", 5*time.Second) {
		t.Error("the proxy did not log the admin's stop")
	}

	// A second use of the same ticket (the client page loaded again with
	// it) is refused. The stopped client first leaves for connect.html
	// (its close callback, which also rewrites sessionStorage): wait for
	// that, so that the page read next is the reloaded client's and not
	// the stopped one still showing the admin's stop (WaitDisconnected
	// may have seen its reason before it left).
	if err := b.WaitTrue(`location.pathname.endsWith("/connect.html")`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Eval(`(() => { sessionStorage.setItem("password", localStorage.getItem("captured-ticket")); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Navigate(base + "/client/index.html"); err != nil {
		t.Fatal(err)
	}
	err = b.WaitDrawn(30 * time.Second)
	if !errors.Is(err, xpratest.ErrDisconnected) || !strings.Contains(err.Error(), "holds no ticket") {
		t.Fatalf("second use of the ticket: %v, want the no-ticket refusal; page %q", err, b.PageText())
	}
	t.Logf("second use: %v", err)
	shot(b, "portal-6-ticket-reused.png")

	// Logout ends the login on the server: the old cookie, replayed, no
	// longer lists the sessions.
	if err := adm.Navigate(base + "/"); err != nil {
		t.Fatal(err)
	}
	if err := adm.Eval(`(() => { document.getElementById("logout").click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := adm.WaitTrue(`document.getElementById("signin")`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	shot(adm, "portal-7-logged-out.png")
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.AddCookie(&http.Cookie{Name: login.Name, Value: login.Value})
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if strings.Contains(string(page), "tr class=\"session\"") || !strings.Contains(string(page), `id="signin"`) {
		t.Errorf("the logged-out cookie still lists sessions: %s", page)
	}
	req, _ = http.NewRequest("GET", base+"/admin/sessions.json", nil)
	req.AddCookie(&http.Cookie{Name: login.Name, Value: login.Value})
	if resp, err = hc.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("sessions.json with the logged-out cookie: %s", resp.Status)
	}
}

// checkXtermDrawn checks a screenshot of the HTML5 client: where the
// window's canvas is, a white terminal with black text over the page's
// dark background.
func checkXtermDrawn(t *testing.T, b *xpratest.Browser, shot string) {
	t.Helper()
	var r struct{ X, Y, W, H float64 }
	if err := b.Eval(`(() => { const c = document.querySelector("div.window canvas").getBoundingClientRect();
		return {X: c.x, Y: c.y, W: c.width, H: c.height}; })()`, &r); err != nil {
		t.Fatal(err)
	}
	img := readPNG(t, shot)
	rect := image.Rect(int(r.X), int(r.Y), int(r.X+r.W), int(r.Y+r.H))
	if rect.Dx() < 100 || rect.Dy() < 50 {
		t.Fatalf("xterm canvas is %v", rect)
	}
	white, black := 0, 0
	for y := rect.Min.Y; y < rect.Max.Y; y++ {
		for x := rect.Min.X; x < rect.Max.X; x++ {
			switch c := img.RGBAAt(x, y); {
			case c.R > 240 && c.G > 240 && c.B > 240:
				white++
			case c.R < 16 && c.G < 16 && c.B < 16:
				black++
			}
		}
	}
	if area := rect.Dx() * rect.Dy(); white < area/2 || black < 20 {
		t.Errorf("the xterm's area %v of %s has %d white and %d black pixels of %d: not a drawn terminal", rect, shot, white, black, area)
	}
	if bg := img.RGBAAt(rect.Max.X+20, rect.Max.Y+20); bg.R > 240 && bg.G > 240 && bg.B > 240 {
		t.Errorf("the page around the window is white too (%v): the screenshot proves nothing", bg)
	}
}

// TestPortalSystemwideStart: system-wide mode (root, PAM): a system user
// with no session logs in to the portal with their system password, is
// offered "start a new session", starts one (running as them) and the
// HTML5 client connects to it; back on the portal the session is listed
// with the time it started.
func TestPortalSystemwideStart(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb", "pgrep", "root", "chromium")
	pw := randomPassword(t)
	u := xpratest.CreateUser(t, userName("xpp"), pw)
	cleanUpUser(t, u.UID)
	sp := startSystemwideProxy(t, swOptions{sessDir: sharedSocketDir(t), startSessions: true, extra: "\n[portal]\nenable = true\n"})
	shots := portalShots(t)
	base := "https://" + sp.addr

	b := xpratest.OpenHTML5With(t, base+"/", xpratest.BrowserOptions{IgnoreCertErrors: true, Lifetime: 3 * time.Minute})
	if err := b.WaitTrue(`document.getElementById("signin")`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	js := fmt.Sprintf(`(() => { document.getElementById("username").value = %q; document.getElementById("password").value = %q;
		document.getElementById("signin").click(); return true; })()`, u.Name, pw)
	if err := b.Eval(js, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitTrue(`document.getElementById("none") && document.getElementById("start")`, 30*time.Second); err != nil {
		t.Fatalf("%v\nproxy:\n%s", err, sp.log.String())
	}
	p := filepath.Join(shots, "portal-8-systemwide-no-session.png")
	if err := b.Screenshot(p); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
	if err := b.Eval(`(() => { document.getElementById("start").click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitTrue(`location.pathname === "/client/index.html" && typeof client !== "undefined" && client && client.connected`, 90*time.Second); err != nil {
		t.Fatalf("%v\nproxy:\n%s", err, sp.log.String())
	}
	if !sp.waitLog("portal started a session", 5*time.Second) {
		t.Fatal("the proxy did not log the session the portal started")
	}
	if procs := processesOf(u.UID, "xpra start"); len(procs) == 0 {
		t.Fatalf("no xpra server runs as %s (uid %d)", u.Name, u.UID)
	}
	if err := b.Navigate(base + "/"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitTrue(`document.querySelectorAll("tr.session").length === 1`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if text := b.PageText(); strings.Contains(text, "unknown") {
		t.Errorf("the started session's start time is unknown: %q", text)
	}
	p = filepath.Join(shots, "portal-9-systemwide-started.png")
	if err := b.Screenshot(p); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
	noSecrets(t, sp.proxy, pw)
}
