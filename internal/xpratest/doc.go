// Package xpratest is the test harness that runs the real xpra 3.1.3 peers
// (Debian's /usr/bin/xpra server and client, Xvfb, xterm, chromium) for
// end-to-end tests of xpra-edge and for proving facts about xpra itself.
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
// # Facts about xpra 3.1.3 learnt with this harness
//
// Start-up: `xpra start :N --daemon=no` with the quiet options of
// StartServer prints "xpra is ready." about 1.0–1.5 s after exec on 2 cores
// (its unix socket exists ~0.4 s before that); `xpra attach` prints
// "Attached to URL" about 1.2 s after exec. The server needs python3-pil
// (only a Recommends of the Debian package): without it every connection
// fails after the hello with "server error (error accepting new
// connection)".
//
// Exit codes (xpra/exit_codes.py): 0 ok, 1 connection lost, 2 timeout,
// 3 password required, 4 password file error, 7 failure, 18 connection
// failed, 20 no display. See the ExitCode constants and the tests of this
// package for which one each authentication failure produces.
//
// Sockets: a server started with --socket-dir=DIR creates DIR/HOSTNAME-N
// (mode 0600, group "xpra" when that group exists) owned by the uid the
// server runs as; `xpra list --socket-dirs=DIR` prints
//
//	Found the following xpra sessions:
//	DIR:
//		LIVE session at :N
//
// (DEAD for a socket nobody answers on, UNKNOWN when it cannot tell).
// Without --socket-dirs xpra looks in $XDG_RUNTIME_DIR/xpra, /run/xpra and
// ~/.xpra; when XDG_RUNTIME_DIR is unset it uses /run/user/$UID/xpra, which
// runuser, setpriv and su do not create (only a pam_systemd login does), so a
// server run as another user must be given XDG_RUNTIME_DIR (the harness
// makes a private one) or an explicit --socket-dir. A client (xpra attach)
// creates no listening socket; it puts its mmap file in
// $XDG_RUNTIME_DIR/xpra, which is why Attach gives it a private one.
package xpratest
