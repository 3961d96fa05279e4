package xpratest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// userComment marks the accounts CreateUser makes, so a leftover of a
// crashed run can be recognised and replaced, and nobody else's account is
// ever deleted.
const userComment = "xpratest temporary user"

// User is a system account created for a test.
type User struct {
	Name     string
	UID, GID int
	Home     string
}

// CreateUser creates the system user name (useradd -m, shell /bin/sh) with
// password (chpasswd, so PAM accepts it) and removes it with its home
// (userdel -r) in t.Cleanup. Needs root. A leftover account of an earlier
// harness run with the same name is replaced; any other existing account
// fails the test.
func CreateUser(t testing.TB, name, password string) *User {
	t.Helper()
	RequirePeers(t, "root", "useradd", "userdel", "chpasswd")
	if u, err := user.Lookup(name); err == nil {
		if !strings.Contains(u.Name, userComment) {
			t.Fatalf("xpratest: user %q already exists and was not made by xpratest", name)
		}
		if out, err := sysCmd("userdel", "-r", "-f", name); err != nil {
			t.Fatalf("xpratest: remove leftover user %q: %v\n%s", name, err, out)
		}
	}
	if out, err := sysCmd("useradd", "-m", "-s", "/bin/sh", "-c", userComment, name); err != nil {
		t.Fatalf("xpratest: useradd %q: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := sysCmd("userdel", "-r", "-f", name); err != nil {
			t.Errorf("xpratest: userdel %q: %v\n%s", name, err, out)
		}
	})
	cmd := exec.Command("/usr/sbin/chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		// the output of chpasswd never contains the password
		t.Fatalf("xpratest: chpasswd %q: %v\n%s", name, err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("xpratest: look up new user %q: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &User{Name: name, UID: uid, GID: gid, Home: u.HomeDir}
}

func sysCmd(name string, args ...string) (string, error) {
	bin, err := lookPath(name)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + harnessPath, "LANG=C"}
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// WritePasswordFile writes password (no newline) to a new 0600 file in a
// private directory and returns its path, for --password-file or
// file-based auth modules. The directory is removed in t.Cleanup.
func WritePasswordFile(t testing.TB, password string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "xpratest-pw-")
	if err != nil {
		t.Fatalf("xpratest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := filepath.Join(dir, "password")
	if err := os.WriteFile(p, []byte(password), 0o600); err != nil {
		t.Fatalf("xpratest: write password file: %v", err)
	}
	return p
}

// Exit codes of the xpra 3.1.3 client tools (xpra/exit_codes.py).
const (
	ExitOK               = 0
	ExitConnectionLost   = 1
	ExitTimeout          = 2
	ExitPasswordRequired = 3
	ExitPasswordFile     = 4
	ExitFailure          = 7
	ExitConnectionFailed = 18
	ExitNoDisplay        = 20
)

// ExitName names an xpra exit code for messages.
func ExitName(code int) string {
	switch code {
	case ExitOK:
		return "ok"
	case ExitConnectionLost:
		return "connection lost"
	case ExitTimeout:
		return "timeout"
	case ExitPasswordRequired:
		return "password required"
	case ExitPasswordFile:
		return "password file error"
	case ExitFailure:
		return "failure"
	case ExitConnectionFailed:
		return "connection failed"
	case ExitNoDisplay:
		return "no display"
	case -1:
		return "killed"
	}
	return fmt.Sprintf("exit code %d", code)
}
