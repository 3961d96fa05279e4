// Package e2e proves xpra-edge against real peers: the xpra-edge binary,
// built once by the tests, runs as a subprocess in front of the real
// Debian xpra 3.1.3 server and client (and synthetic peers where the
// property tested is the proxy's own, like reloads). It has no non-test
// code.
package e2e
