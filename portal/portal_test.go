package portal

import (
	"context"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/router"
)

// fakeProxy is the proxy side of the portal, recorded.
type fakeProxy struct {
	mu       sync.Mutex
	banned   bool
	failures int
	targets  map[string][]router.Target
	stopped  []int
	canStart bool
	live     []edge.SessionInfo
}

func (f *fakeProxy) Banned(string) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.banned }
func (f *fakeProxy) NoteLoginFailure(string, string) {
	f.mu.Lock()
	f.failures++
	f.mu.Unlock()
}
func (f *fakeProxy) NoteLoginOK(string)           {}
func (f *fakeProxy) AuthFailDelay() time.Duration { return 0 }
func (f *fakeProxy) UserTargets(id auth.Identity, _ string) ([]router.Target, error) {
	return f.targets[id.Username], nil
}
func (f *fakeProxy) CanStart(auth.Identity) bool { return f.canStart }
func (f *fakeProxy) StartSession(context.Context, auth.Identity) (router.Target, error) {
	return router.Target{Scheme: "unix", Address: "/nonexistent", Display: ":77"}, nil
}
func (f *fakeProxy) Sessions() []edge.SessionInfo { return f.live }
func (f *fakeProxy) StopSessionID(id int, _ string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.live {
		if s.ID == id {
			f.stopped = append(f.stopped, id)
			return true
		}
	}
	return false
}

type env struct {
	t     *testing.T
	p     *Portal
	px    *fakeProxy
	now   time.Time
	mu    sync.Mutex
	plain bool // requests arrive over plain http
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mod, err := auth.New(auth.Spec{Name: "toml", Options: map[string]string{}}, auth.Options{Users: []auth.User{
		{Name: "alice", Password: "alice-pw", Displays: []string{"tcp://127.0.0.1:1/10", "tcp://127.0.0.1:2/11"}},
		{Name: "root-admin", Password: "admin-pw", Displays: []string{"tcp://127.0.0.1:1/10"}},
		{Name: "bob", Password: "bob-pw", Displays: []string{"tcp://127.0.0.1:3/12"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, now: time.Unix(1_800_000_000, 0)}
	e.px = &fakeProxy{targets: map[string][]router.Target{
		"alice": {
			{Scheme: "tcp", Address: "127.0.0.1:1", Display: "tcp://127.0.0.1:1/10"},
			{Scheme: "tcp", Address: "127.0.0.1:2", Display: "tcp://127.0.0.1:2/11"},
		},
		"bob": {{Scheme: "tcp", Address: "127.0.0.1:3", Display: "tcp://127.0.0.1:3/12"}},
	}, live: []edge.SessionInfo{{ID: 3, Name: ":proxy-3", User: "bob", Remote: "192.0.2.9:5000", Target: "tcp://127.0.0.1:3", Started: e.now.Add(-time.Minute), FromClient: 10, FromServer: 2000}}}
	e.p = New(Config{
		Logger:     slog.New(slog.DiscardHandler),
		AdminUsers: []string{"root-admin"},
		AdminGroup: "xpra-admins",
		Info: func(r *http.Request) (edge.RequestInfo, bool) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return edge.RequestInfo{Remote: "192.0.2.1:4000", TLS: !e.plain, HTTPS: true, Listener: "test", Auth: mod}, true
		},
		Now: func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now },
		SystemGroups: func(name string) []string {
			if name == "bob" {
				return []string{"users", "xpra-admins"}
			}
			return nil
		},
	})
	e.p.Attach(e.px)
	return e
}

func (e *env) advance(d time.Duration) { e.mu.Lock(); e.now = e.now.Add(d); e.mu.Unlock() }

// browser is a cookie jar that talks to the portal through httptest.
type browser struct {
	e       *env
	cookies map[string]*http.Cookie
}

func (e *env) browser() *browser { return &browser{e: e, cookies: map[string]*http.Cookie{}} }

func (b *browser) do(method, path string, form url.Values) *http.Response {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://portal.test"+path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range b.cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	w := httptest.NewRecorder()
	b.e.p.ServeHTTP(w, r)
	resp := w.Result()
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return resp
}

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", page)
	}
	return html.UnescapeString(m[1])
}

// login logs b in and returns the sessions page.
func (b *browser) login(user, password string) (*http.Response, string) {
	b.e.t.Helper()
	page := bodyOf(b.e.t, b.do("GET", "/", nil))
	resp := b.do("POST", "/login", url.Values{"csrf": {csrfOf(b.e.t, page)}, "username": {user}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther {
		return resp, bodyOf(b.e.t, resp)
	}
	r2 := b.do("GET", "/", nil)
	return resp, bodyOf(b.e.t, r2)
}

func TestLoginCookieFlagsAndCSP(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp := b.do("GET", "/", nil)
	if got := resp.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy || strings.Contains(got, "unsafe-inline") {
		t.Errorf("CSP %q", got)
	}
	page := bodyOf(t, resp)
	if !strings.Contains(page, `name="password"`) || strings.Contains(page, "<script>") {
		t.Errorf("login page:\n%s", page)
	}
	resp, sessions := b.login("alice", "alice-pw")
	var lc *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			lc = c
		}
	}
	if lc == nil {
		t.Fatalf("no login cookie: %v", resp.Cookies())
	}
	if !lc.Secure || !lc.HttpOnly || lc.SameSite != http.SameSiteStrictMode || lc.Path != "/" || lc.Domain != "" || !strings.HasPrefix(lc.Name, "__Host-") {
		t.Errorf("login cookie flags: %+v", lc)
	}
	if !strings.Contains(sessions, `data-display=":10"`) || !strings.Contains(sessions, `data-display=":11"`) || !strings.Contains(sessions, `id="count">2<`) {
		t.Errorf("sessions page does not list :10 and :11:\n%s", sessions)
	}
	if strings.Contains(sessions, "127.0.0.1") {
		t.Errorf("sessions page shows a backend address:\n%s", sessions)
	}
	if strings.Contains(sessions, `id="admin-link"`) {
		t.Errorf("alice is no admin but sees the admin link")
	}
}

func TestLoginFailureCountsTowardBans(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp, page := b.login("alice", "wrong")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "authentication failed") {
		t.Fatalf("wrong password: %s\n%s", resp.Status, page)
	}
	if e.px.failures != 1 {
		t.Errorf("failures noted: %d, want 1", e.px.failures)
	}
	if _, ok := b.cookies[cookieName]; ok {
		t.Errorf("a failed login set the login cookie")
	}
	e.px.banned = true
	resp, _ = b.login("alice", "alice-pw")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("banned address: %s, want 429", resp.Status)
	}
}

func TestCSRFRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	page := bodyOf(t, b.do("GET", "/", nil))
	token := csrfOf(t, page)
	// The form's token without the cookie (a cross-site post) and a
	// wrong token with the cookie are refused.
	other := e.browser()
	if resp := other.do("POST", "/login", url.Values{"csrf": {token}, "username": {"alice"}, "password": {"alice-pw"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without the CSRF cookie: %s", resp.Status)
	}
	if resp := b.do("POST", "/login", url.Values{"csrf": {token + "x"}, "username": {"alice"}, "password": {"alice-pw"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login with a wrong CSRF token: %s", resp.Status)
	}
	_, sessions := b.login("alice", "alice-pw")
	tok := csrfOf(t, sessions)
	for _, path := range []string{"/open", "/logout", "/start"} {
		if resp := b.do("POST", path, url.Values{"csrf": {"nope"}, "session": {"0"}, "display": {":10"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with a wrong CSRF token: %s", path, resp.Status)
		}
		if resp := b.do("POST", path, url.Values{"session": {"0"}, "display": {":10"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without a CSRF token: %s", path, resp.Status)
		}
	}
	// Still logged in: the refused logout did nothing.
	if resp := b.do("POST", "/open", url.Values{"csrf": {tok}, "session": {"0"}, "display": {":10"}}); resp.StatusCode != http.StatusOK {
		t.Errorf("open with the right token: %s", resp.Status)
	}
}

func TestPlainHTTPRedirectedOrRefused(t *testing.T) {
	e := newEnv(t)
	e.plain = true
	r := httptest.NewRequest("GET", "http://portal.test:8443/login", nil)
	w := httptest.NewRecorder()
	e.p.ServeHTTP(w, r)
	if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "https://portal.test:8443/login" {
		t.Errorf("GET over http: %d %q", w.Code, w.Header().Get("Location"))
	}
	r = httptest.NewRequest("POST", "http://portal.test:8443/login", strings.NewReader("username=alice"))
	w = httptest.NewRecorder()
	e.p.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("POST over http: %d", w.Code)
	}
}

func TestBodyBounded(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	page := bodyOf(t, b.do("GET", "/", nil))
	big := url.Values{"csrf": {csrfOf(t, page)}, "username": {"alice"}, "password": {strings.Repeat("x", 64<<10)}}
	if resp := b.do("POST", "/login", big); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("64 KiB form: %s, want 400", resp.Status)
	}
}

var ticketRe = regexp.MustCompile(`data-ticket="([^"]+)"`)

// open opens session i of the sessions page and returns the ticket.
func (b *browser) open(sessions string, i int, display string) string {
	b.e.t.Helper()
	resp := b.do("POST", "/open", url.Values{"csrf": {csrfOf(b.e.t, sessions)}, "session": {string(rune('0' + i))}, "display": {display}})
	page := bodyOf(b.e.t, resp)
	if resp.StatusCode != http.StatusOK {
		b.e.t.Fatalf("open: %s\n%s", resp.Status, page)
	}
	m := ticketRe.FindStringSubmatch(page)
	if m == nil {
		b.e.t.Fatalf("no ticket in the open page:\n%s", page)
	}
	if !strings.Contains(page, `src="/portal-static/open.js"`) || !strings.Contains(page, `data-client="/client/index.html"`) {
		b.e.t.Errorf("open page does not hand off to the client:\n%s", page)
	}
	return html.UnescapeString(m[1])
}

// wsLogin logs in as an xpra connection would, whose upgrade request
// carried b's cookies, with password as the response key.
func (b *browser) wsLogin(username, password string) (router.Target, error) {
	r := httptest.NewRequest("GET", "https://portal.test/client/index.html", nil)
	for _, c := range b.cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	a, ok := b.e.p.TicketAuth(r)
	if !ok {
		return router.Target{}, errNoTicketAuth
	}
	l := a.Begin(username, auth.Transport{Kind: "wss", Encrypted: true})
	digests := []string{"hmac+sha256", "xor"}
	ch, err := l.Challenge(digests, digests[:1])
	if err != nil {
		return router.Target{}, err
	}
	if ch.Digest != "hmac+sha256" {
		return router.Target{}, errors.New("ticket challenge is not hmac: " + ch.Digest)
	}
	resp, salt, err := auth.Respond([]byte(password), *ch, false)
	if err != nil {
		return router.Target{}, err
	}
	if _, err := l.Verify(context.Background(), resp, salt); err != nil {
		return router.Target{}, err
	}
	t, ok := l.(edge.BoundLogin).Target()
	if !ok {
		return router.Target{}, errors.New("no bound target")
	}
	return t, nil
}

var errNoTicketAuth = errors.New("the portal does not take this upgrade")

func TestTicketSingleUseAndBound(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, sessions := b.login("alice", "alice-pw")
	ticket := b.open(sessions, 1, ":11")
	if len(ticket) < 40 {
		t.Fatalf("ticket %q is short", ticket)
	}
	// Another browser's login cannot use it, nor can a request without
	// the cookie.
	other := e.browser()
	_, _ = other.login("bob", "bob-pw")
	if _, err := other.wsLogin("alice", ticket); !errors.Is(err, errNoTicket) {
		t.Errorf("another login's cookie (which holds no ticket): %v", err)
	}
	if _, err := e.browser().wsLogin("alice", ticket); !errors.Is(err, errNoTicketAuth) {
		t.Errorf("no cookie: %v", err)
	}
	// Wrong user, wrong secret: refused, the ticket stays.
	if _, err := b.wsLogin("bob", ticket); !errors.Is(err, auth.ErrFailed) {
		t.Errorf("other user name: %v", err)
	}
	if _, err := b.wsLogin("alice", "wrong"+ticket[5:]); !errors.Is(err, auth.ErrFailed) {
		t.Errorf("wrong secret: %v", err)
	}
	tg, err := b.wsLogin("alice", ticket)
	if err != nil {
		t.Fatalf("ticket login: %v", err)
	}
	if tg.Display != "tcp://127.0.0.1:2/11" {
		t.Errorf("bound target %+v, want the session :11 chosen", tg)
	}
	// Single use: the second use is refused, as a refusal that counts no
	// failure (the HTML5 client's "Connect" retries the ticket it kept;
	// counted, a few clicks would ban everyone behind the user's NAT).
	if _, err := b.wsLogin("alice", ticket); !errors.Is(err, errNoTicket) {
		t.Errorf("second use of the ticket: %v, want the no-ticket refusal", err)
	}
	// While another ticket is pending, a wrong one is a failure again.
	_ = b.open(sessions, 0, ":10")
	if _, err := b.wsLogin("alice", ticket); !errors.Is(err, auth.ErrFailed) {
		t.Errorf("a used ticket while another is pending: %v", err)
	}
	// Expiry.
	t2 := b.open(sessions, 0, ":10")
	e.advance(DefaultTicketTTL + time.Second)
	if _, err := b.wsLogin("alice", t2); err == nil {
		t.Errorf("expired ticket accepted")
	}
	// A ticket of a login that logged out dies with it.
	t3 := b.open(sessions, 0, ":10")
	if resp := b.do("POST", "/logout", url.Values{"csrf": {csrfOf(t, sessions)}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	if _, err := b.wsLogin("alice", t3); err == nil {
		t.Errorf("ticket of a logged-out login accepted")
	}
}

func TestOpenRefusesStaleChoice(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, sessions := b.login("alice", "alice-pw")
	resp := b.do("POST", "/open", url.Values{"csrf": {csrfOf(t, sessions)}, "session": {"0"}, "display": {":11"}})
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("index and display disagree: %s", resp.Status)
	}
	resp = b.do("POST", "/open", url.Values{"csrf": {csrfOf(t, sessions)}, "session": {"5"}, "display": {":10"}})
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("index out of range: %s", resp.Status)
	}
}

func TestLogoutEndsLoginServerSide(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, sessions := b.login("alice", "alice-pw")
	old := *b.cookies[cookieName]
	if resp := b.do("POST", "/logout", url.Values{"csrf": {csrfOf(t, sessions)}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	// The old cookie, replayed, is no login any more.
	b.cookies[cookieName] = &old
	page := bodyOf(t, b.do("GET", "/", nil))
	if strings.Contains(page, `data-display=`) || !strings.Contains(page, `name="password"`) {
		t.Errorf("after logout the old cookie still shows sessions:\n%s", page)
	}
	if resp := b.do("POST", "/open", url.Values{"csrf": {csrfOf(t, sessions)}, "session": {"0"}, "display": {":10"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("open after logout: %s", resp.Status)
	}
}

func TestLoginExpiry(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, _ = b.login("alice", "alice-pw")
	e.advance(DefaultIdleTTL + time.Minute)
	if page := bodyOf(t, b.do("GET", "/", nil)); !strings.Contains(page, `name="password"`) {
		t.Errorf("idle login still live")
	}
}

func TestAdmin(t *testing.T) {
	e := newEnv(t)
	alice := e.browser()
	_, _ = alice.login("alice", "alice-pw")
	for _, path := range []string{"/admin/", "/admin/sessions.json"} {
		if resp := alice.do("GET", path, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("non-admin GET %s: %s", path, resp.Status)
		}
	}
	if resp := e.browser().do("GET", "/admin/sessions.json", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous GET /admin/sessions.json: %s", resp.Status)
	}
	// bob is in the admin group (system groups), root-admin is listed.
	for _, u := range [][2]string{{"bob", "bob-pw"}, {"root-admin", "admin-pw"}} {
		b := e.browser()
		_, page := b.login(u[0], u[1])
		if !strings.Contains(page, `id="admin-link"`) {
			t.Errorf("%s: no admin link", u[0])
		}
		resp := b.do("GET", "/admin/sessions.json", nil)
		js := bodyOf(t, resp)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
			!strings.Contains(js, `"user":"bob"`) || !strings.Contains(js, `"bytes_from_server":2000`) || !strings.Contains(js, `"duration":"1m0s"`) {
			t.Errorf("%s: sessions.json %s %s", u[0], resp.Status, js)
		}
		admin := bodyOf(t, b.do("GET", "/admin/", nil))
		if !strings.Contains(admin, ":proxy-3") || !strings.Contains(admin, "192.0.2.9:5000") {
			t.Errorf("admin page:\n%s", admin)
		}
		if resp := b.do("POST", "/admin/stop", url.Values{"csrf": {"bad"}, "id": {"3"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("stop with a bad CSRF token: %s", resp.Status)
		}
		if resp := b.do("POST", "/admin/stop", url.Values{"csrf": {csrfOf(t, admin)}, "id": {"3"}}); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("stop: %s", resp.Status)
		}
	}
	if resp := alice.do("POST", "/admin/stop", url.Values{"csrf": {"x"}, "id": {"3"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("non-admin stop: %s", resp.Status)
	}
	if len(e.px.stopped) != 2 || e.px.stopped[0] != 3 {
		t.Errorf("stopped %v, want [3 3]", e.px.stopped)
	}
}

func TestStart(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, sessions := b.login("alice", "alice-pw")
	if strings.Contains(sessions, `id="start"`) {
		t.Errorf("start offered where the user may not start sessions")
	}
	if resp := b.do("POST", "/start", url.Values{"csrf": {csrfOf(t, sessions)}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("start refused: %s", resp.Status)
	}
	e.px.canStart = true
	sessions = bodyOf(t, b.do("GET", "/", nil))
	if !strings.Contains(sessions, `id="start"`) {
		t.Errorf("start not offered")
	}
	resp := b.do("POST", "/start", url.Values{"csrf": {csrfOf(t, sessions)}})
	page := bodyOf(t, resp)
	if resp.StatusCode != http.StatusOK || !ticketRe.MatchString(page) {
		t.Fatalf("start: %s\n%s", resp.Status, page)
	}
	tg, err := b.wsLogin("alice", html.UnescapeString(ticketRe.FindStringSubmatch(page)[1]))
	if err != nil || tg.Display != ":77" {
		t.Errorf("started session's ticket: %+v %v", tg, err)
	}
}

// A ticket dies with its login: one minted just before the login's end
// (LoginTTL) or its idle end (IdleTTL) is refused once that has passed,
// although the ticket's own 60 s have not.
func TestTicketDiesWithItsLogin(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, sessions := b.login("alice", "alice-pw")
	// Keep the login in use until 30 s before its 12 hours end.
	for range 12 {
		e.advance(DefaultLoginTTL/12 - 30*time.Second/12)
		if page := bodyOf(t, b.do("GET", "/", nil)); !strings.Contains(page, `id="user">alice<`) {
			t.Fatalf("login ended early")
		}
	}
	ticket := b.open(sessions, 0, ":10")
	e.advance(40 * time.Second)
	if _, err := b.wsLogin("alice", ticket); err == nil {
		t.Errorf("a ticket of a login past its %v was accepted", DefaultLoginTTL)
	}

	// Idle: the ticket is the login's last use; an hour later the login
	// has ended (the idle bound set to less than a ticket's life).
	e.p.cfg.IdleTTL = 30 * time.Second
	c := e.browser()
	_, sessions = c.login("alice", "alice-pw")
	ticket = c.open(sessions, 0, ":10")
	e.advance(40 * time.Second)
	if _, err := c.wsLogin("alice", ticket); err == nil {
		t.Errorf("a ticket of a login idle past %v was accepted", e.p.cfg.IdleTTL)
	}
}

// A login always sets a new cookie value of the server's making and ends
// the browser's previous login: a value planted before the login (or the
// old login's) is no login afterwards, and the CSRF token changes too. (A
// password login needs the login page, which a logged-in browser is sent
// away from; a redirect login can follow another in the same browser.)
func TestLoginRotatesCookie(t *testing.T) {
	e := newEnv(t)
	idp := &fakeIdP{}
	mod, _ := auth.New(auth.Spec{Name: "toml"}, auth.Options{Users: []auth.User{{Name: "alice", Password: "alice-pw"}}})
	e.p = New(Config{Logger: slog.New(slog.DiscardHandler), Methods: []Method{idp, &ModuleLogin{Module: mod}},
		Info: func(*http.Request) (edge.RequestInfo, bool) {
			return edge.RequestInfo{Remote: "192.0.2.1:4000", TLS: true, HTTPS: true, Listener: "test"}, true
		}, SystemGroups: func(string) []string { return nil }})
	e.p.Attach(e.px)
	b := e.browser()
	b.cookies[cookieName] = &http.Cookie{Name: cookieName, Value: "planted-by-an-attacker"}
	_, sessions := b.login("alice", "alice-pw")
	first := *b.cookies[cookieName]
	if first.Value == "planted-by-an-attacker" || len(first.Value) < 40 || !strings.Contains(sessions, `id="user">alice<`) {
		t.Fatalf("login cookie %q, page:\n%s", first.Value, sessions)
	}
	b.do("GET", "/login/idp", nil)
	if resp := b.do("GET", "/login/idp/callback?state=state-1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("second login: %s", resp.Status)
	}
	second := *b.cookies[cookieName]
	sessions2 := bodyOf(t, b.do("GET", "/", nil))
	if second.Value == first.Value || csrfOf(t, sessions2) == csrfOf(t, sessions) {
		t.Errorf("a second login kept the cookie or the CSRF token")
	}
	for _, v := range []string{first.Value, "planted-by-an-attacker"} {
		old := e.browser()
		old.cookies[cookieName] = &http.Cookie{Name: cookieName, Value: v}
		if page := bodyOf(t, old.do("GET", "/", nil)); !strings.Contains(page, `name="password"`) {
			t.Errorf("cookie %q is a login", v)
		}
	}
}
