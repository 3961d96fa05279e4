// Package sessions starts new xpra sessions on behalf of an authenticated
// user when xpra-edge runs as root as a system service (system-wide mode):
// it looks users up in the password database, turns a client's
// "start-new-session" request into a validated Request, and runs
// `xpra start|start-desktop|shadow` as that user (own uid, gid and
// supplementary groups, own home, a whitelisted environment, the user's own
// xpra configuration honoured), then waits for the new session's live
// socket.
//
// It must not start anything as root, pass a client option that is not
// explicitly allowed, inherit the proxy's environment beyond the
// whitelist, or leave a process behind when a start fails. It does not
// relay, authenticate or choose sessions; it never logs or returns
// passwords. Socket naming and liveness come from internal/sockdir.
package sessions
