package portal

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/router"
)

// Cookies. The __Host- prefix makes the browser insist on Secure, Path=/
// and no Domain.
const (
	cookieName     = "__Host-xpra-edge"      // the login
	csrfCookieName = "__Host-xpra-edge-csrf" // double-submit token of the login form
	flowCookieName = "__Host-xpra-edge-flow" // a redirect login in progress (SameSite=Lax)
)

// ContentSecurityPolicy is sent with every portal page: no inline script
// or style, nothing from elsewhere, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "unknown"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
}).ParseFS(templateFS, "templates/*.html"))

func (p *Portal) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", p.index)
	m.HandleFunc("HEAD /{$}", p.index)
	m.HandleFunc("GET /login", p.loginPage)
	m.HandleFunc("POST /login", p.loginForm)
	m.HandleFunc("GET /login/{method}", p.redirectBegin)
	m.HandleFunc("GET /login/{method}/callback", p.redirectCallback)
	m.HandleFunc("POST /logout", p.logout)
	m.HandleFunc("POST /open", p.open)
	m.HandleFunc("POST /start", p.start)
	m.HandleFunc("GET /admin/{$}", p.admin)
	m.HandleFunc("GET /admin/sessions.json", p.adminJSON)
	m.HandleFunc("POST /admin/stop", p.adminStop)
	sub, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /portal-static/", http.StripPrefix("/portal-static/", http.FileServerFS(sub)))
	p.mux = http.NewServeMux()
	p.mux.Handle("/", p.guard(m))
}

// guard applies what every portal request gets: TLS only, the CSP and
// caching headers, and a bounded body.
func (p *Portal) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		info, ok := p.cfg.Info(r)
		if !ok || !info.TLS {
			if ok && info.HTTPS && (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Host != "" {
				u := url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path}
				http.Redirect(w, r, u.String(), http.StatusMovedPermanently)
				return
			}
			http.Error(w, "the portal is served over https only", http.StatusForbidden)
			return
		}
		if p.proxy == nil {
			http.Error(w, "the portal is not ready", http.StatusServiceUnavailable)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int, lax bool) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
	if lax {
		c.SameSite = http.SameSiteLaxMode
	}
	http.SetCookie(w, c)
}

// current returns the request's live login, or nil.
func (p *Portal) current(r *http.Request) *login {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	return p.store.get(c.Value, p.cfg.LoginTTL, p.cfg.IdleTTL)
}

// checkCSRF compares the form's csrf field with want, in constant time.
func checkCSRF(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return want != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (p *Portal) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		p.log.Warn("render", "page", name, "err", err)
	}
}

type loginData struct {
	CSRF      string
	Error     string
	Forms     []Method
	Redirects []Method
	User      string
}

func (p *Portal) loginPage(w http.ResponseWriter, r *http.Request) {
	if p.current(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	p.showLogin(w, r, http.StatusOK, "", "")
}

func (p *Portal) showLogin(w http.ResponseWriter, r *http.Request, status int, msg, user string) {
	token := randomToken()
	setCookie(w, csrfCookieName, token, 3600, false)
	d := loginData{CSRF: token, Error: msg, User: user}
	for _, m := range p.cfg.Methods {
		switch m.(type) {
		case FormMethod:
			d.Forms = append(d.Forms, m)
		case RedirectMethod:
			d.Redirects = append(d.Redirects, m)
		}
	}
	p.render(w, status, "login.html", d)
}

// loginForm checks a password login: CSRF (double submit), bans, the
// module, and the failure delay and ban count on a failure.
func (p *Portal) loginForm(w http.ResponseWriter, r *http.Request) {
	info, _ := p.cfg.Info(r)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c, err := r.Cookie(csrfCookieName)
	if err != nil || !checkCSRF(r, c.Value) {
		http.Error(w, "invalid or missing CSRF token: reload the login page", http.StatusForbidden)
		return
	}
	if p.proxy.Banned(info.Remote) {
		p.log.Info("portal login refused", "remote", info.Remote, "reason", "address banned")
		http.Error(w, "too many failed logins from your address, try again later", http.StatusTooManyRequests)
		return
	}
	name := r.PostFormValue("method")
	var fm FormMethod
	for _, m := range p.cfg.Methods {
		if f, ok := m.(FormMethod); ok && (name == "" || m.Name() == name) {
			fm = f
			break
		}
	}
	if fm == nil {
		http.Error(w, "unknown login method", http.StatusBadRequest)
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	if len(username) > 256 || len(password) > 1024 {
		http.Error(w, "user name or password too long", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	res, err := fm.CheckPassword(ctx, r, username, password)
	if err != nil {
		p.loginFailed(w, r, info, fm.Name(), username, err)
		return
	}
	p.startLogin(w, r, res, fm.Name(), info, true)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// loginFailed answers a refused login: a credential failure counts toward
// the address's ban and waits the failure delay, as xpra logins do.
func (p *Portal) loginFailed(w http.ResponseWriter, r *http.Request, info edge.RequestInfo, method, username string, err error) {
	var re *auth.RefusedError
	msg := "authentication failed"
	status := http.StatusUnauthorized
	switch {
	case errors.As(err, &re):
		msg = re.Reason
		status = http.StatusForbidden
	case errors.Is(err, auth.ErrFailed):
		p.proxy.NoteLoginFailure(info.Remote, info.Listener)
		if d := p.proxy.AuthFailDelay(); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
	default:
		msg = "the authentication module failed, try again later"
		status = http.StatusServiceUnavailable
	}
	p.log.Info("portal login refused", "remote", info.Remote, "method", method, "user", username, "reason", msg, "err", err)
	p.showLogin(w, r, status, msg, username)
}

// startLogin records a successful login and sets the login cookie.
// The login's groups are the method's own (res.Groups: OIDC's group
// claim), those the module vouched for (res.Identity.Groups: ldap's
// directory groups) and, with withSystemGroups, the groups of the system
// user of that name (a password checked by the listener's module, or a
// redirect login whose names are system users'). They are gathered into a
// new slice of this login alone, so no login shares (or later sees
// appended to) another's.
func (p *Portal) startLogin(w http.ResponseWriter, r *http.Request, res Result, method string, info edge.RequestInfo, withSystemGroups bool) {
	if res.Identity.Username == "" {
		res.Identity.Username = "unknown"
	}
	groups := slices.Concat(res.Groups, res.Identity.Groups)
	if withSystemGroups {
		groups = append(groups, p.cfg.SystemGroups(systemName(res.Identity))...)
	}
	slices.Sort(groups)
	res.Groups = slices.Compact(groups)
	res.Identity.Groups = slices.Clone(res.Identity.Groups)
	admin := slices.Contains(p.cfg.AdminUsers, res.Identity.Username) ||
		(p.cfg.AdminGroup != "" && slices.Contains(res.Groups, p.cfg.AdminGroup))
	if old := p.current(r); old != nil {
		p.store.remove(old) // one login per browser: a new login replaces the old
	}
	cookie, _ := p.store.add(res, admin, method)
	setCookie(w, cookieName, cookie, int(p.cfg.LoginTTL/time.Second), false)
	setCookie(w, csrfCookieName, "", -1, false)
	p.proxy.NoteLoginOK("portal:" + res.Identity.Module)
	p.log.Info("portal login", "remote", info.Remote, "method", method, "user", res.Identity.Username, "module", res.Identity.Module, "admin", admin)
}

// systemName is the system user an identity's sessions belong to.
func systemName(id auth.Identity) string {
	if id.UID != "" {
		return id.UID
	}
	return id.Username
}

func systemGroups(name string) []string {
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return nil
		}
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil
	}
	var out []string
	for _, id := range ids {
		if g, err := user.LookupGroupId(id); err == nil {
			out = append(out, g.Name)
		}
	}
	return out
}

// sessionView is one row of the session list.
type sessionView struct {
	Index   int
	Display string
	Started time.Time
	Route   string
}

type indexData struct {
	User     string
	CSRF     string
	Admin    bool
	Sessions []sessionView
	Count    int
	CanStart bool
	Error    string
	Routes   bool // some session came from a named route
}

func (p *Portal) index(w http.ResponseWriter, r *http.Request) {
	l := p.current(r)
	if l == nil {
		p.showLogin(w, r, http.StatusOK, "", "")
		return
	}
	p.showSessions(w, r, l, http.StatusOK, "")
}

func (p *Portal) showSessions(w http.ResponseWriter, r *http.Request, l *login, status int, msg string) {
	info, _ := p.cfg.Info(r)
	ts, err := p.proxy.UserTargets(l.res.Identity, info.SNI)
	d := indexData{User: l.user, CSRF: l.csrf, Admin: l.admin, CanStart: p.proxy.CanStart(l.res.Identity), Error: msg}
	if err != nil {
		p.log.Info("portal: cannot list sessions", "user", l.user, "err", err)
		if d.Error == "" {
			d.Error = "cannot list your sessions"
		}
	}
	for i, t := range ts {
		d.Sessions = append(d.Sessions, sessionView{Index: i, Display: displayName(t), Started: startedAt(t), Route: t.Route})
		d.Routes = d.Routes || t.Route != ""
	}
	d.Count = len(d.Sessions)
	p.render(w, status, "sessions.html", d)
}

// displayName is what the user is shown of a target: its display name,
// never a backend's user, host or password.
func displayName(t router.Target) string {
	if strings.HasPrefix(t.Display, ":") || t.Scheme == "unix" && !strings.Contains(t.Display, "/") {
		return t.Display
	}
	if u, err := url.Parse(t.Display); err == nil {
		if d := router.NormalizeDisplay(u.Path); strings.HasPrefix(d, ":") {
			return d
		}
	}
	return "session"
}

// startedAt is when a local session started, as far as its socket tells.
func startedAt(t router.Target) time.Time {
	if t.Scheme != "unix" || t.Address == "" {
		return time.Time{}
	}
	fi, err := os.Stat(t.Address)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// What a handler requires of a request's login, beyond being one.
type need int

const (
	needCSRF  need = 1 << iota // its form carries the login's CSRF token (every POST)
	needAdmin                  // the login is an administrator's
)

// require returns the request's live login when it meets what the
// handler needs; it answers the request otherwise (401 without a login,
// 403 for a non-administrator or a missing or wrong CSRF token, 400 for a
// form it cannot parse).
func (p *Portal) require(w http.ResponseWriter, r *http.Request, n need) *login {
	l := p.current(r)
	if l == nil {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return nil
	}
	if n&needAdmin != 0 && !l.admin {
		http.Error(w, "forbidden: not an administrator", http.StatusForbidden)
		return nil
	}
	if n&needCSRF != 0 {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return nil
		}
		if !checkCSRF(r, l.csrf) {
			http.Error(w, "invalid or missing CSRF token", http.StatusForbidden)
			return nil
		}
	}
	return l
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	l := p.require(w, r, needCSRF)
	if l == nil {
		return
	}
	p.store.remove(l)
	setCookie(w, cookieName, "", -1, false)
	p.log.Info("portal logout", "user", l.user)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

type openData struct {
	User   string
	Ticket string
	Client string
}

// open mints a ticket for one of the user's sessions and shows the page
// that hands it to the HTML5 client (in sessionStorage, never in a URL).
func (p *Portal) open(w http.ResponseWriter, r *http.Request) {
	l := p.require(w, r, needCSRF)
	if l == nil {
		return
	}
	info, _ := p.cfg.Info(r)
	ts, err := p.proxy.UserTargets(l.res.Identity, info.SNI)
	i, perr := strconv.Atoi(r.PostFormValue("session"))
	want := r.PostFormValue("display")
	if err != nil || perr != nil || i < 0 || i >= len(ts) || displayName(ts[i]) != want {
		p.showSessions(w, r, l, http.StatusConflict, "that session is no longer available")
		return
	}
	p.handOff(w, l, ts[i])
}

func (p *Portal) handOff(w http.ResponseWriter, l *login, t router.Target) {
	secret := p.store.mint(l, t, p.cfg.TicketTTL)
	p.log.Info("ticket minted", "user", l.user, "display", displayName(t), "ttl", p.cfg.TicketTTL)
	p.render(w, http.StatusOK, "open.html", openData{User: l.user, Ticket: secret, Client: edge.ClientPrefix + "index.html"})
}

// start starts a new session (system-wide mode) and opens it.
func (p *Portal) start(w http.ResponseWriter, r *http.Request) {
	l := p.require(w, r, needCSRF)
	if l == nil {
		return
	}
	if !p.proxy.CanStart(l.res.Identity) {
		p.showSessions(w, r, l, http.StatusForbidden, "you may not start sessions here")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	t, err := p.proxy.StartSession(ctx, l.res.Identity)
	if err != nil {
		p.log.Warn("portal: start a session", "user", l.user, "err", err)
		p.showSessions(w, r, l, http.StatusInternalServerError, "failed to start a new session")
		return
	}
	p.log.Info("portal started a session", "user", l.user, "display", t.Display)
	p.handOff(w, l, t)
}

// StopReason is what both peers of a session an administrator stops are
// told (after "server shutdown").
const StopReason = "stopped by an administrator"

type adminData struct {
	User     string
	CSRF     string
	Sessions []adminRow
}

type adminRow struct {
	edge.SessionInfo
	Duration string `json:"duration"`
}

func (p *Portal) adminRows() []adminRow {
	now := p.cfg.Now()
	var rows []adminRow
	for _, s := range p.proxy.Sessions() {
		rows = append(rows, adminRow{SessionInfo: s, Duration: now.Sub(s.Started).Round(time.Second).String()})
	}
	return rows
}

func (p *Portal) admin(w http.ResponseWriter, r *http.Request) {
	l := p.require(w, r, needAdmin)
	if l == nil {
		return
	}
	p.render(w, http.StatusOK, "admin.html", adminData{User: l.user, CSRF: l.csrf, Sessions: p.adminRows()})
}

func (p *Portal) adminJSON(w http.ResponseWriter, r *http.Request) {
	if p.require(w, r, needAdmin) == nil {
		return
	}
	rows := p.adminRows()
	if rows == nil {
		rows = []adminRow{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"sessions": rows})
}

func (p *Portal) adminStop(w http.ResponseWriter, r *http.Request) {
	l := p.require(w, r, needAdmin|needCSRF)
	if l == nil {
		return
	}
	id, err := strconv.Atoi(r.PostFormValue("id"))
	if err != nil || !p.proxy.StopSessionID(id, StopReason) {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	p.log.Info("portal admin stopped a session", "admin", l.user, "session", id)
	http.Redirect(w, r, "/admin/", http.StatusSeeOther)
}

// redirectBegin starts a RedirectMethod's login.
func (p *Portal) redirectBegin(w http.ResponseWriter, r *http.Request) {
	m := p.redirectMethod(r.PathValue("method"))
	if m == nil {
		http.NotFound(w, r)
		return
	}
	info, _ := p.cfg.Info(r)
	if p.proxy.Banned(info.Remote) {
		http.Error(w, "too many failed logins from your address, try again later", http.StatusTooManyRequests)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	to, fl, err := m.Begin(ctx, callbackURL(r, m))
	if err != nil {
		p.log.Warn("portal: begin login", "method", m.Name(), "err", err)
		p.showLogin(w, r, http.StatusServiceUnavailable, "the identity provider cannot be reached, try again later", "")
		return
	}
	c := p.store.addFlow(m.Name(), fl, edge.ClientKey(info.Remote))
	if c == "" {
		http.Error(w, "too many logins in progress from your address, try again later", http.StatusTooManyRequests)
		return
	}
	setCookie(w, flowCookieName, c, int(FlowTTL/time.Second), true)
	http.Redirect(w, r, to, http.StatusFound)
}

// redirectCallback finishes a RedirectMethod's login.
func (p *Portal) redirectCallback(w http.ResponseWriter, r *http.Request) {
	m := p.redirectMethod(r.PathValue("method"))
	if m == nil {
		http.NotFound(w, r)
		return
	}
	info, _ := p.cfg.Info(r)
	if p.proxy.Banned(info.Remote) {
		http.Error(w, "too many failed logins from your address, try again later", http.StatusTooManyRequests)
		return
	}
	c, _ := r.Cookie(flowCookieName)
	setCookie(w, flowCookieName, "", -1, true)
	var fl Flow
	ok := false
	if c != nil {
		fl, ok = p.store.takeFlow(c.Value, m.Name())
	}
	if !ok {
		p.showLogin(w, r, http.StatusBadRequest, "this login has expired or was already used, sign in again", "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	res, err := m.Finish(ctx, r, callbackURL(r, m), fl)
	if err != nil {
		p.loginFailed(w, r, info, m.Name(), "", err)
		return
	}
	// An identity provider's name is a system user's only where the
	// method says so (local_sessions): only then do its system groups count.
	p.startLogin(w, r, res, m.Name(), info, res.Identity.LocalSessions || res.Identity.UID != "")
	// A same-site page moves on to "/": the Strict cookie just set is not
	// sent on a redirect that follows a cross-site navigation.
	p.render(w, http.StatusOK, "continue.html", nil)
}

func (p *Portal) redirectMethod(name string) RedirectMethod {
	for _, m := range p.cfg.Methods {
		if rm, ok := m.(RedirectMethod); ok && m.Name() == name {
			return rm
		}
	}
	return nil
}

// callbackURL is a redirect method's callback as the browser sees it.
func callbackURL(r *http.Request, m Method) string {
	return (&url.URL{Scheme: "https", Host: r.Host, Path: "/login/" + m.Name() + "/callback"}).String()
}
