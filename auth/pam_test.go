package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"testing"
	"time"
)

// TestPAMRealUser creates a system user with a password, logs in through
// PAM (service login, with the account check), and removes the user.
func TestPAMRealUser(t *testing.T) {
	if !pamAvailable {
		requirePeer(t, "pam (cgo)", errors.New("built without cgo"))
	}
	if os.Geteuid() != 0 {
		requirePeer(t, "root (to create a test user)", errors.New("not root"))
	}
	for _, tool := range []string{"useradd", "userdel", "chpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			requirePeer(t, tool, err)
		}
	}
	name := "xeauth" + hex.EncodeToString(randomBytes(4))
	password := "Pw-" + hex.EncodeToString(randomBytes(8))
	run := func(stdin string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("", "useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	run(name+":"+password+"\n", "chpasswd")
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}

	a := mustNew(t, "pam", Options{PAMService: "login"})
	if a.Name() != "pam" {
		t.Fatal(a.Name())
	}
	unix := Transport{Kind: "unix", Encrypted: true}
	for _, tr := range []Transport{tlsTCP, unix} {
		l := a.Begin(name, tr)
		ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
		if err != nil || ch.Digest != "xor" || ch.SaltDigest != "hmac+sha512" {
			t.Fatalf("challenge on %s: %+v %v", tr.Kind, ch, err)
		}
		resp, cs, err := Respond([]byte(password), *ch, true)
		if err != nil {
			t.Fatal(err)
		}
		id, err := l.Verify(context.Background(), resp, cs)
		if err != nil {
			t.Fatalf("pam login on %s: %v", tr.Kind, err)
		}
		if id.Username != name || id.UID != u.Uid || id.GID != u.Gid || !id.LocalSessions || id.Module != "pam" {
			t.Fatalf("identity %+v, want uid %s gid %s", id, u.Uid, u.Gid)
		}
	}
	// A wrong password fails (after PAM's fail delay), without the password in the error.
	if _, err := doLogin(t, a, name, password+"x", tlsTCP); !errors.Is(err, ErrFailed) || strings.Contains(err.Error(), password) {
		t.Fatalf("wrong password: %v", err)
	}
	// An unknown user fails.
	if _, err := doLogin(t, a, name+"zz", password, tlsTCP); !errors.Is(err, ErrFailed) {
		t.Fatalf("unknown user: %v", err)
	}
	// Plain transports are refused with a reason; clients without xor too.
	_, err = a.Begin(name, plainTCP).Challenge(xpraDigests, xpraSaltDigests)
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != "pam authentication requires an encrypted connection (TLS or wss)" {
		t.Fatalf("plain tcp: %v", err)
	}
	if _, err = a.Begin(name, tlsTCP).Challenge([]string{"hmac+sha256"}, xpraSaltDigests); !errors.As(err, &re) {
		t.Fatalf("no xor: %v", err)
	}
	// A cancelled context stops the wait.
	l := a.Begin(name, tlsTCP)
	ch, _ := l.Challenge(xpraDigests, xpraSaltDigests)
	resp, cs, _ := Respond([]byte(password+"x"), *ch, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Verify(ctx, resp, cs); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled verify: %v", err)
	}
}
