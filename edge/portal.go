package edge

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/router"
)

// Portal is a web portal the edge mounts on every listener's HTTP side, as
// it is given a *tls.Config: the edge never imports it. With a portal, its
// Paths are served by it (any method: it checks its own) and xpra's HTML5
// client files are also served under ClientPrefix; every other path keeps
// serving the files as before.
type Portal interface {
	http.Handler
	// Paths are the ServeMux patterns the portal serves ("/{$}", "/login",
	// "/admin/").
	Paths() []string
	// TicketAuth is asked for every WebSocket upgrade request. When the
	// request carries a portal login that holds a pending ticket, it
	// returns the module that checks the ticket as that connection's
	// login, in place of the listener's; ok false leaves the listener's
	// module in charge. A Login the module begins may implement
	// BoundLogin: the connection then goes to that target, whatever the
	// client asks for.
	TicketAuth(r *http.Request) (a auth.Authenticator, ok bool)
}

// BoundLogin is a Login whose success also names the connection's target
// (a portal ticket is bound to one session).
type BoundLogin interface {
	auth.Login
	// Target is the bound session; valid after a successful Verify.
	Target() (router.Target, bool)
}

// ClientPrefix is where the HTML5 client files are served when a portal is
// mounted (they are served there without one too).
const ClientPrefix = "/client/"

// RequestInfo is what the edge knows of an HTTP request's connection.
type RequestInfo struct {
	Remote   string             // client address (PROXY protocol aware), host:port
	TLS      bool               // the request arrived over TLS
	HTTPS    bool               // the listener serves https (a plain-http request may be redirected)
	Listener string             // listener name
	Auth     auth.Authenticator // the listener's module
	SNI      string             // TLS server name, lower case
}

// RequestInfoOf returns what the edge knows of r's connection; ok is false
// for a request that did not come through an edge listener.
func RequestInfoOf(r *http.Request) (RequestInfo, bool) {
	meta, ok := r.Context().Value(metaKey{}).(connMeta)
	if !ok || meta.listener == nil {
		return RequestInfo{}, false
	}
	return RequestInfo{
		Remote: meta.remote, TLS: meta.tls, HTTPS: meta.listener.accepts("https"),
		Listener: meta.listener.Name, Auth: meta.listener.Auth, SNI: meta.sni,
	}, true
}

// ClientKey is the key a client address (host:port or host) is counted
// and banned by: an IPv4 address, an IPv6 /64 (one host owns a whole
// /64). Per-client bounds elsewhere (the portal's) count clients alike.
func ClientKey(remote string) string { return banKey(hostOf(remote)) }

// Banned reports whether a client address (host:port or host) is banned
// after repeated failed logins (xpra and portal logins count alike).
func (s *Server) Banned(remote string) bool { return s.banned(remote) }

// NoteLoginFailure counts a failed portal login of a client address
// toward its ban, as a failed xpra login counts.
func (s *Server) NoteLoginFailure(remote, listener string) {
	s.metrics.loginsFailed.WithLabelValues(listener).Inc()
	s.countFailure(remote, s.portalState().Bans)
}

// NoteLoginOK counts a successful portal login by module.
func (s *Server) NoteLoginOK(module string) { s.metrics.loginOK(module) }

// AuthFailDelay is how long a failed login waits before it is answered.
func (s *Server) AuthFailDelay() time.Duration { return s.portalState().Limits.AuthFailDelay }

// UserTargets lists the sessions an identity may reach, as the router
// sees them (sni: the request's TLS server name, for host routes).
func (s *Server) UserTargets(id auth.Identity, sni string) ([]router.Target, error) {
	req := router.Request{
		SNI: sni, User: id.Username, Declared: id.Displays,
		Local: id.LocalSessions && len(id.Displays) == 0, Options: id.SessionOptions,
	}
	needUID := req.Local
	for _, d := range id.Displays {
		if strings.HasPrefix(strings.TrimSpace(d), ":") {
			needUID = true
		}
	}
	if needUID {
		uid, err := s.resolveUID(id)
		if err != nil {
			return nil, err
		}
		req.UID = uid
	}
	return s.portalState().Router.Candidates(req)
}

// CanStart reports whether the proxy may start a new session for id
// (system-wide mode: a local-session module and a session starter).
func (s *Server) CanStart(id auth.Identity) bool {
	return s.portalState().Starter != nil && id.LocalSessions && len(id.Displays) == 0
}

// StartSession starts a new session as id's system user, as an xpra
// login that asks for one does.
func (s *Server) StartSession(ctx context.Context, id auth.Identity) (router.Target, error) {
	st := s.portalState().Starter
	if st == nil || !s.CanStart(id) {
		return router.Target{}, errors.New("this user may not start sessions")
	}
	if _, err := s.resolveUID(id); err != nil {
		return router.Target{}, err
	}
	name := id.UID
	if name == "" {
		name = id.Username
	}
	sess, err := st.StartSession(ctx, name, nil)
	if err != nil {
		return router.Target{}, err
	}
	return router.Target{Scheme: "unix", Address: sess.Socket, Display: sess.Display, Options: id.SessionOptions}, nil
}

// SessionInfo describes one live relayed session (the admin view).
type SessionInfo struct {
	ID         int       `json:"id"`
	Name       string    `json:"name"` // ":proxy-N", the control socket's display
	User       string    `json:"user"`
	Module     string    `json:"module"`
	Remote     string    `json:"remote"`
	Target     string    `json:"target"`  // without credentials
	Display    string    `json:"display"` // display name only
	Started    time.Time `json:"started"`
	FromClient int64     `json:"bytes_from_client"`
	FromServer int64     `json:"bytes_from_server"`
}

// Sessions lists the live relayed sessions, by id.
func (s *Server) Sessions() []SessionInfo {
	var out []SessionInfo
	for _, sess := range s.liveSessions() {
		out = append(out, SessionInfo{
			ID: sess.id, Name: ":proxy-" + strconv.Itoa(sess.id), User: sess.user, Module: sess.module, Remote: sess.remote,
			Target: sess.target.String(), Display: displayForClient(sess.target), Started: sess.started,
			FromClient: sess.c.bytesIn.Load(), FromServer: sess.b.bytesIn.Load(),
		})
	}
	return out
}

// StopSessionID ends a live session as `xpra-edge stop :proxy-N` does and
// waits (up to 5 s) until it has ended; false when there is no such session.
func (s *Server) StopSessionID(id int, reason string) bool {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return false
	}
	s.log.Info("session stopped", "session", id, "reason", reason)
	sess.stop(reason)
	select {
	case <-sess.done:
	case <-time.After(5 * time.Second):
	}
	return true
}

// portalState is the reloadable state a portal request runs under: each
// request is an arrival of its own, read once per call.
func (s *Server) portalState() *State { return s.snapshot() }
