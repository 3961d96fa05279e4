package auth

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

const systemPython = "/usr/bin/python3"

// requirePeer skips (or fails under XPRA_EDGE_REQUIRE_PEERS=1) when an
// external peer is missing.
func requirePeer(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" {
		t.Fatalf("required peer %s is missing: %v", what, err)
	}
	t.Skipf("peer %s is missing: %v", what, err)
}

// needXpraPython makes sure /usr/bin/python3 can import xpra.
func needXpraPython(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, systemPython, "-c", "import xpra.net.digest, xpra.server.auth.sqlite_auth").CombinedOutput()
	if err != nil {
		err = &peerError{err: err, out: string(out)}
	}
	requirePeer(t, "python3 with xpra", err)
}

type peerError struct {
	err error
	out string
}

func (e *peerError) Error() string { return e.err.Error() + ": " + e.out }

// runPython runs a python script with the system python and stdin.
func runPython(t testing.TB, script string, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, systemPython, append([]string{"-c", script}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytesReader(stdin)
	}
	cmd.Env = append(os.Environ(), "XPRA_LOG_DIR=/tmp")
	return cmd.CombinedOutput()
}

var plainTCP = Transport{Kind: "tcp", Remote: "127.0.0.1:1"}
var tlsTCP = Transport{Kind: "ssl", Encrypted: true, Remote: "127.0.0.1:1"}

// xpraDigests is what a 3.1.3 client offers (observed on the wire, abridged).
var xpraDigests = []string{"xor", "hmac", "hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5", "des"}
var xpraSaltDigests = []string{"hmac", "hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5"}

// login runs one whole login with password; it returns the identity or
// the error of the step that failed.
func doLogin(t testing.TB, a Authenticator, user, password string, tr Transport) (Identity, error) {
	t.Helper()
	l := a.Begin(user, tr)
	ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
	if err != nil {
		return Identity{}, err
	}
	if ch == nil {
		return l.Verify(context.Background(), nil, nil)
	}
	if len(ch.Salt) != SaltSize {
		t.Fatalf("salt is %d bytes, want %d", len(ch.Salt), SaltSize)
	}
	resp, cs, err := Respond([]byte(password), *ch, tr.Encrypted)
	if err != nil {
		t.Fatalf("respond: %v", err)
	}
	return l.Verify(context.Background(), resp, cs)
}
