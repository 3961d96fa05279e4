// Package xpratest is the test harness that runs the real xpra peers
// (Debian's /usr/bin/xpra 3.1.3 server and client, the xpra 6.x server and
// client of /usr/local/bin/xpra6 that scripts/install-xpra6.sh builds, Xvfb,
// xterm, chromium) for end-to-end tests of xpra-edge and for proving facts
// about xpra itself.
//
// Its job: start and stop real processes with a bounded lifetime, keep them
// off the invoking user's real configuration, sockets and displays (every
// process gets a temporary HOME, XDG_RUNTIME_DIR, XAUTHORITY and socket
// directory, and every client its own Xvfb), observe them (output, exit
// codes, mapped X11 windows, screenshots), and leave nothing running after a
// test: every process is killed with its whole process tree in t.Cleanup.
//
// What it must not do: it is imported only by _test.go files; it never
// touches processes it did not start, never uses the user's ~/.xpra,
// /run/user/UID or DISPLAY, never opens non-loopback network addresses and
// never logs passwords (password files are written 0600 and only their path
// appears in command lines).
//
// Peers are declared with RequirePeers: when XPRA_EDGE_REQUIRE_PEERS=1 (set
// by `make test` and CI) a missing peer fails the test, otherwise it skips.
// scripts/install-test-deps.sh installs every peer on Debian 12.
//
// # Facts about xpra 3.1.3 learnt with this harness (2 cores, loaded)
//
// Start-up: `xpra start :N --daemon=no` with ServerQuietArgs prints
// ReadyLine ("xpra is ready.") 0.7–2.5 s after exec (its unix socket exists
// ~0.5 s before that); `xpra attach` prints "Attached to URL" 0.6–3 s after
// exec and the remote xterm is mapped and painted on the client's Xvfb
// within 0.2 s more. Debian's xpra package only Recommends two modules that
// a working session needs: python3-pil (without it the server drops every
// client right after the hello with "server error (error accepting new
// connection)") and python3-gi-cairo (without it the GTK3 client maps
// windows but never paints them: "Couldn't find foreign struct converter
// for 'cairo.Context'"). Debian's /etc/xpra sets `start = /etc/X11/Xsession
// true`, which in a container only pops an xmessage window; the harness
// empties it (see harnessConf).
//
// Exit codes (xpra/exit_codes.py, constants Exit* here), measured against
// `--tcp-auth=password:value=SECRET`:
//   - xpra attach, right password (URL tcp://user:SECRET@host:port/ or
//     --password-file): attaches; a later SIGINT detaches with exit 130.
//   - xpra attach, wrong password (URL or file): 18 (ExitConnectionFailed),
//     "Connection Failed: disconnected before the session could be
//     established" / "authentication failed"; the server waits ~1 s before
//     it disconnects a failed client.
//   - xpra attach, no password or an unreadable --password-file: 3
//     (ExitPasswordRequired), "failed to connect, authentication required",
//     but only because the harness leaves out the "prompt" challenge
//     handler: with xpra's default handlers the client opens a password
//     dialog on its display and waits forever.
//   - xpra info: right password 0, wrong password 7 (ExitFailure), none 3.
//   - `xpra stop`: the server exits 0; an attached client prints "server
//     shutdown" and exits 0. SIGTERM: the server exits 143 (128+15).
//   - server SIGKILLed mid-session (Server.Kill): the client prints
//     "Connection lost" and exits 1 (ExitConnectionLost) about 1 s later.
//
// Sockets: a server started with --socket-dir=DIR creates DIR/HOSTNAME-N
// (mode 0600; group "xpra" for root, else the user's group) owned by the uid the
// server runs as; `xpra list --socket-dirs=DIR` prints
//
//	Found the following xpra sessions:
//	DIR:
//		LIVE session at :N
//
// (exit 0). For the socket of a SIGKILLed server it prints "UNKNOWN session
// at :N", re-probes for ~10 s and deletes the socket ("(cleaned up)").
//
// Without --socket-dirs xpra looks in $XDG_RUNTIME_DIR/xpra, /run/xpra and
// ~/.xpra. runuser, setpriv and su set HOME and USER but not
// XDG_RUNTIME_DIR (only a pam_systemd login does); xpra then falls back to
// /run/user/$UID/xpra (measured: `runuser -u U -- xpra showconfig` lists
// socket-dirs '/run/user/$UID/xpra', '/run/xpra', '~/.xpra'), a directory
// nobody created for U. So a server run as another user must be given an
// XDG_RUNTIME_DIR it owns (StartServer makes a private 0700 one) or an
// explicit --socket-dir.
//
// A client (xpra attach) creates no listening socket (TestAttachTCP checks
// its socket dir, HOME and XDG_RUNTIME_DIR); it would put an mmap file in
// $XDG_RUNTIME_DIR/xpra, which is why Attach gives it a private one (and
// --mmap=no).
package xpratest
