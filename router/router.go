// Package router decides where an authenticated xpra connection goes: from
// the request (SNI host, WebSocket path, user, requested display) and the
// identity the auth module returned, to one backend target.
//
// It is pure decision logic: it opens no sockets and starts no processes.
// Live local sessions come in through the SessionLister interface declared
// here; the caller (edge) supplies the implementation.
package router

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Reasons sent to the client in the disconnect packet, as xpra sends them.
const (
	ReasonSessionNotFound = "session not found error"
	ReasonAuthError       = "authentication error"
	ReasonServerError     = "server error"
)

// Refusal is a routing failure that the client is told about:
// ["disconnect", Reason, Detail].
type Refusal struct {
	Reason string
	Detail string
}

func (r *Refusal) Error() string {
	if r.Detail == "" {
		return r.Reason
	}
	return r.Reason + ": " + r.Detail
}

func refuse(reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Session is one live local xpra session.
type Session struct {
	Display string // ":100"
	Socket  string // absolute path of its unix socket
}

// SessionLister finds the live local sessions of a system user (uid), or
// with AnyOwner those in the proxy's own socket directories.
type SessionLister interface {
	LiveSessions(uid int) ([]Session, error)
}

// Request is what the router knows about one authenticated connection.
type Request struct {
	SNI  string // TLS server name, lower case, "" without TLS
	Path string // WebSocket request path, "" for plain xpra

	User    string // authenticated user name
	Display string // display the client asked for ("" = none named)

	// Declared are the sessions the auth module declares for this user
	// (sqlite, multifile, toml users): ":N", "socket:///path" or URLs.
	Declared []string
	// Local says the user's sessions are their live local sessions; UID is
	// then the resolved system uid whose sockets are searched.
	Local bool
	UID   int

	// Options are the per-user session options from the auth module.
	Options map[string]string
}

// Target is where a connection is relayed to.
type Target struct {
	// Scheme is one of tcp, ssl, ws, wss, unix.
	Scheme string
	// Address is host:port for network schemes, the socket path for unix.
	Address string
	// Path is the WebSocket request path for ws/wss ("/" when empty).
	Path string
	// Display is the display name the target was chosen by (for logs,
	// xpra info and control sockets): ":100" or the entry as declared.
	Display string
	// Username and Password are credentials for the backend's own
	// challenge, from the declared URL or the password= session option.
	Username string
	Password string
	// HasPassword distinguishes an empty password from none.
	HasPassword bool
	// Options are the session options to apply toward the backend.
	Options map[string]string
	// Route names the route table entry that matched ("" for none).
	Route string
}

// String is the target without its password, for logs.
func (t Target) String() string {
	switch t.Scheme {
	case "unix":
		return "socket://" + t.Address
	case "ws", "wss":
		return t.Scheme + "://" + t.Address + t.Path
	default:
		return t.Scheme + "://" + t.Address
	}
}

// ErrNoRoute is returned by a route table when no route matches the host
// and path of a request (and the table is configured to refuse).
var ErrNoRoute = errors.New("no route for this host or path")

// Router picks targets.
type Router struct {
	// Routes are matched first (by SNI host and WebSocket path).
	Routes *Table
	// Sessions lists local sessions; required for Local requests.
	Sessions SessionLister
	// Exclude are display names never offered (the proxy's own display).
	Exclude []string
	// DefaultPort is used for URLs without a port (xpra 3.1: 14500).
	DefaultPort int
}

// Route returns the target for req, or a *Refusal.
func (r *Router) Route(req Request) (Target, error) {
	if r.Routes != nil {
		rt, ok, err := r.Routes.Match(req.SNI, req.Path, req.User)
		if err != nil {
			return Target{}, err
		}
		if ok {
			return r.fromRoute(rt, req)
		}
	}
	if len(req.Declared) > 0 {
		return r.fromDeclared(req.Declared, req)
	}
	if req.Local {
		return r.fromLocal(req)
	}
	return Target{}, refuse(ReasonSessionNotFound, "no sessions found")
}

func (r *Router) fromRoute(rt Route, req Request) (Target, error) {
	if rt.PathPrefix != "" && displayIsPath(req.Display, req.Path) {
		// xpra's Python client sends the URL path as its display too
		// (wss://host/desk -> display "desk"): the path chose the route,
		// it names no session.
		req.Display = ""
	}
	if len(rt.Targets) == 0 {
		// A route that only selects the user's own sessions.
		if len(req.Declared) > 0 {
			return r.fromDeclared(req.Declared, req)
		}
		if req.Local {
			return r.fromLocal(req)
		}
		return Target{}, refuse(ReasonSessionNotFound, "no sessions found")
	}
	t, err := r.fromDeclared(rt.Targets, req)
	if err != nil {
		return Target{}, err
	}
	t.Route = rt.Name
	t.Options = mergeOptions(req.Options, rt.Options)
	t.applyPasswordOption()
	return t, nil
}

func (r *Router) excluded(display string) bool {
	for _, e := range r.Exclude {
		if e == display {
			return true
		}
	}
	return strings.HasPrefix(display, ":proxy-")
}

// fromDeclared picks among declared entries by the xpra rules: exact
// match, then ":"+display, then the display part of a URL entry; the single
// entry when none is named.
func (r *Router) fromDeclared(entries []string, req Request) (Target, error) {
	var list []string
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e != "" && !r.excluded(e) {
			list = append(list, e)
		}
	}
	if len(list) == 0 {
		return Target{}, refuse(ReasonSessionNotFound, "no displays found")
	}
	entry, err := choose(list, req.Display, entryDisplay)
	if err != nil {
		return Target{}, err
	}
	t, err := r.ParseTarget(entry)
	if err != nil {
		return Target{}, refuse(ReasonSessionNotFound, "invalid display string")
	}
	if t.Scheme == "unix" && t.Address == "" {
		// ":N" declared: a local session, found by display among the
		// sessions of the user's uid when known, else by name.
		return r.localByDisplay(t.Display, req)
	}
	t.Options = mergeOptions(req.Options, nil)
	t.applyPasswordOption()
	return t, nil
}

func (r *Router) fromLocal(req Request) (Target, error) {
	if r.Sessions == nil {
		return Target{}, refuse(ReasonSessionNotFound, "no sessions found")
	}
	sessions, err := r.Sessions.LiveSessions(req.UID)
	if err != nil {
		return Target{}, refuse(ReasonAuthError, "cannot access sessions")
	}
	var names []string
	byName := map[string]Session{}
	for _, s := range sessions {
		if r.excluded(s.Display) {
			continue
		}
		names = append(names, s.Display)
		byName[s.Display] = s
	}
	if len(names) == 0 {
		return Target{}, refuse(ReasonSessionNotFound, "no displays found")
	}
	name, err := choose(names, req.Display, func(s string) string { return s })
	if err != nil {
		return Target{}, err
	}
	s := byName[name]
	t := Target{Scheme: "unix", Address: s.Socket, Display: s.Display, Options: mergeOptions(req.Options, nil)}
	t.applyPasswordOption()
	return t, nil
}

func (r *Router) localByDisplay(display string, req Request) (Target, error) {
	if r.Sessions == nil {
		return Target{}, refuse(ReasonSessionNotFound, "display '%s' not found", display)
	}
	sessions, err := r.Sessions.LiveSessions(req.UID)
	if err != nil {
		return Target{}, refuse(ReasonAuthError, "cannot access sessions")
	}
	if t, ok := sessionByDisplay(sessions, display, req); ok {
		return t, nil
	}
	// A display the auth module declares may belong to another uid (a
	// session an admin started for a shared account): as xpra's proxy does,
	// look for it in the proxy's own socket directories, whoever owns it.
	if any, err := r.Sessions.LiveSessions(AnyOwner); err == nil {
		if t, ok := sessionByDisplay(any, display, req); ok {
			return t, nil
		}
	}
	return Target{}, refuse(ReasonSessionNotFound, "display '%s' not found", display)
}

// AnyOwner asks a SessionLister for the sessions in the proxy's own socket
// directories, whoever owns them (the per-user directories are not read).
const AnyOwner = -1

func sessionByDisplay(sessions []Session, display string, req Request) (Target, bool) {
	for _, s := range sessions {
		if s.Display == display {
			t := Target{Scheme: "unix", Address: s.Socket, Display: display, Options: mergeOptions(req.Options, nil)}
			t.applyPasswordOption()
			return t, true
		}
	}
	return Target{}, false
}

// choose applies the display rules to a list of candidates.
func choose(list []string, want string, displayOf func(string) string) (string, error) {
	want = strings.TrimSpace(want)
	if want == "" {
		if len(list) == 1 {
			return list[0], nil
		}
		return "", refuse(ReasonSessionNotFound, "please specify a display, more than one is available: %s", strings.Join(displayNames(list, displayOf), ", "))
	}
	for _, e := range list {
		if e == want {
			return e, nil
		}
	}
	norm := NormalizeDisplay(want)
	for _, e := range list {
		if e == norm || displayOf(e) == norm {
			return e, nil
		}
	}
	return "", refuse(ReasonSessionNotFound, "display '%s' not found", norm)
}

// displayNames lists what a client (and the log) may be told of its
// candidates: display names only ("tcp://u:p@h:1/200" gives ":200").
// Entries that name no display (a bare backend address, a URL path, an
// entry that does not parse) are counted, never shown: their user, host
// and password are the proxy's business.
func displayNames(list []string, displayOf func(string) string) []string {
	var out []string
	unnamed := 0
	for _, e := range list {
		if d := displayOf(e); d != "" && !strings.ContainsAny(d, "/@?#") {
			out = append(out, d)
		} else {
			unnamed++
		}
	}
	if unnamed > 0 {
		out = append(out, fmt.Sprintf("%d without a display name", unnamed))
	}
	return out
}

// NormalizeDisplay turns "100" or "/100" into ":100"; other names are kept.
func NormalizeDisplay(d string) string {
	d = strings.TrimPrefix(strings.TrimSpace(d), "/")
	if d == "" {
		return ""
	}
	if _, err := strconv.ParseUint(d, 10, 32); err == nil {
		return ":" + d
	}
	return d
}

// entryDisplay is the display an entry stands for: ":N" itself, or the
// path of a URL entry ("tcp://h:1/200" → ":200"), "" when it names none.
func entryDisplay(e string) string {
	if strings.HasPrefix(e, ":") {
		return e
	}
	u, err := url.Parse(e)
	if err != nil || u.Scheme == "" {
		return ""
	}
	if u.Scheme == "socket" {
		return ""
	}
	return NormalizeDisplay(u.Path)
}

// redactURL hides a password in an entry shown to the client.
func redactURL(e string) string {
	u, err := url.Parse(e)
	if err != nil || u.User == nil {
		return e
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// ParseTarget parses one display entry: ":N" (a local session, resolved
// later), "socket:///path", "/path", or scheme://[user[:pass]@]host[:port][/display]
// with scheme tcp, ssl, ws, wss.
func (r *Router) ParseTarget(e string) (Target, error) {
	e = strings.TrimSpace(e)
	switch {
	case strings.HasPrefix(e, ":"):
		if _, err := strconv.ParseUint(e[1:], 10, 32); err != nil {
			return Target{}, fmt.Errorf("invalid display %q", e)
		}
		return Target{Scheme: "unix", Display: e}, nil
	case strings.HasPrefix(e, "/"):
		return Target{Scheme: "unix", Address: e, Display: e}, nil
	}
	u, err := url.Parse(e)
	if err != nil {
		return Target{}, fmt.Errorf("invalid target: %w", err)
	}
	t := Target{Scheme: strings.ToLower(u.Scheme), Display: redactURL(e)}
	if u.User != nil {
		t.Username = u.User.Username()
		t.Password, t.HasPassword = u.User.Password()
	}
	switch t.Scheme {
	case "socket", "unix":
		p := u.Path
		if u.Host != "" {
			p = "/" + u.Host + u.Path
		}
		if p == "" {
			return Target{}, fmt.Errorf("invalid target %q: no socket path", redactURL(e))
		}
		t.Scheme, t.Address = "unix", p
		return t, nil
	case "tcp", "ssl", "ws", "wss":
	default:
		return Target{}, fmt.Errorf("invalid target %q: unsupported scheme %q", redactURL(e), u.Scheme)
	}
	if u.Hostname() == "" {
		return Target{}, fmt.Errorf("invalid target %q: no host", redactURL(e))
	}
	port := u.Port()
	if port == "" {
		p := r.DefaultPort
		if p == 0 {
			p = 14500
		}
		port = strconv.Itoa(p)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return Target{}, fmt.Errorf("invalid target %q: bad port", redactURL(e))
	}
	t.Address = joinHostPort(u.Hostname(), port)
	if t.Scheme == "ws" || t.Scheme == "wss" {
		t.Path = u.EscapedPath()
		if t.Path == "" {
			t.Path = "/"
		}
	}
	return t, nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

func (t *Target) applyPasswordOption() {
	if t.HasPassword {
		return
	}
	if p, ok := t.Options["password"]; ok {
		t.Password, t.HasPassword = p, true
	}
}

func mergeOptions(base, over map[string]string) map[string]string {
	if len(base) == 0 && len(over) == 0 {
		return nil
	}
	m := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		m[k] = v
	}
	return m
}

// displayIsPath reports whether a requested display is just the WebSocket
// path it arrived on ("desk" for "/desk?x=1").
func displayIsPath(display, path string) bool {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	d := strings.Trim(display, "/")
	return d != "" && d == strings.Trim(path, "/")
}
