// Package e2e proves xpra-edge against real peers: the xpra-edge binary,
// built once by the tests, runs as a subprocess in front of the real
// xpra 3.1.3 (Debian's) and 6.x (scripts/install-xpra6.sh) servers and
// clients, browsers, PostgreSQL and slapd (and synthetic peers where the
// property tested is the proxy's own, like reloads). It has no non-test
// code.
package e2e
