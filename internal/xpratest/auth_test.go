package xpratest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillMidSession: a backend that dies without a goodbye makes an
// attached client exit with "connection lost" within a bounded time, and
// `xpra list` then finds no live session.
func TestKillMidSession(t *testing.T) {
	RequirePeers(t, "xpra", "Xvfb", "xterm", "xwininfo")
	t.Parallel()
	s := StartServer(t, ServerOptions{BindTCP: FreeTCPAddr(t)})
	c := Attach(t, s.TCPURL(), ClientOptions{})
	if err := c.WaitWindow("xterm", 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.Output())
	}
	began := time.Now()
	s.Kill()
	if p := s.Processes(); len(p) != 0 {
		t.Errorf("server processes alive after Kill: %v", p)
	}
	code, err := c.Wait(30 * time.Second)
	if err != nil {
		t.Fatalf("client still running 30s after the server was killed: %v\n%s", err, c.Output())
	}
	t.Logf("client exited %d (%s) %s after the kill", code, ExitName(code), time.Since(began))
	if code != ExitConnectionLost {
		t.Errorf("client exit code %d (%s), want %d (connection lost)", code, ExitName(code), ExitConnectionLost)
	}
	if !strings.Contains(c.Output(), "Connection lost") {
		t.Errorf("client output lacks %q:\n%s", "Connection lost", tail(c.Output(), 15))
	}
	began = time.Now()
	out, _ := Run(t, 20*time.Second, "list", "--socket-dirs="+s.SocketDir)
	t.Logf("xpra list took %s:\n%s", time.Since(began), out)
	if strings.Contains(out, "LIVE") {
		t.Errorf("xpra list still reports a live session:\n%s", out)
	}
}

// TestServerAsUser: a server started for a user created by CreateUser runs
// with that uid and its socket is owned by it; root's tools still reach it.
func TestServerAsUser(t *testing.T) {
	RequirePeers(t, "root", "xpra", "Xvfb", "useradd")
	t.Parallel()
	u := CreateUser(t, "xpratest-u1", "pw-Unused-1")
	s := StartServer(t, ServerOptions{User: u.Name})
	fi, err := os.Stat(s.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != u.UID {
		t.Errorf("socket %s owned by uid %d, want %d (%s)", s.SocketPath, st.Uid, u.UID, u.Name)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is not a socket: %v", s.SocketPath, fi.Mode())
	}
	t.Logf("socket %s mode %v uid %d gid %d; started in %s", s.SocketPath, fi.Mode(), st.Uid, st.Gid, s.Started)
	status, err := os.ReadFile("/proc/" + itoa(s.PID) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nUid:\t"+itoa(u.UID)+"\t") {
		t.Errorf("server process does not run as uid %d:\n%s", u.UID, status)
	}
	out, code := s.Xpra(t, 20*time.Second, "id")
	if code != 0 || !strings.Contains(out, "display="+s.Display) {
		t.Errorf("xpra id as root against %s's server: exit %d\n%s", u.Name, code, out)
	}
	// a client reaches the user's session through its unix socket alone
	c := Attach(t, s.SocketURL(), ClientOptions{})
	if err := c.WaitWindow("xterm", 30*time.Second); err != nil {
		t.Fatalf("attach %s: %v\n%s", s.SocketURL(), err, tail(c.Output(), 20))
	}
	if !strings.Contains(s.Log(), "uid="+itoa(u.UID)) {
		t.Errorf("server log does not show uid=%d", u.UID)
	}
	c.Stop()
	s.Stop()
	// SIGTERM: xpra removes its socket, kills its Xvfb, and exits 128+15
	if code, err := s.Wait(time.Second); err != nil || code != 143 {
		t.Errorf("server stop: exit %d, %v\n%s", code, err, tail(s.Log(), 40))
	}
}

// TestPasswordAuth: `--tcp-auth=password:value=...` accepts the right
// password from the URL or a --password-file, and refuses the rest with
// xpra 3.1.3's documented exit codes.
func TestPasswordAuth(t *testing.T) {
	RequirePeers(t, "xpra", "Xvfb", "xterm", "xwininfo")
	t.Parallel()
	const secret = "s3cret-Pw"
	s := StartServer(t, ServerOptions{BindTCP: FreeTCPAddr(t), Args: []string{"--tcp-auth=password:value=" + secret}})
	hostPort := s.TCPAddr + "/"
	cases := []struct {
		name     string
		url      string
		pwFile   string
		attached bool
		code     int // exit code when not attached
		output   string
	}{
		{"url", "tcp://alice:" + secret + "@" + hostPort, "", true, 0, ""},
		{"file", s.TCPURL(), WritePasswordFile(t, secret), true, 0, ""},
		{"wrong-url", "tcp://alice:wrong@" + hostPort, "", false, ExitConnectionFailed, "authentication failed"},
		{"wrong-file", s.TCPURL(), WritePasswordFile(t, "wrong"), false, ExitConnectionFailed, "authentication failed"},
		{"none", s.TCPURL(), "", false, ExitPasswordRequired, "authentication required"},
		{"missing-file", s.TCPURL(), "/nonexistent/xpratest-password", false, ExitPasswordRequired, "authentication required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Attach(t, tc.url, ClientOptions{PasswordFile: tc.pwFile})
			if tc.attached {
				if err := c.WaitWindow("xterm", 30*time.Second); err != nil {
					t.Fatalf("%v\n%s", err, tail(c.Output(), 20))
				}
				return
			}
			code, err := c.Wait(30 * time.Second)
			if err != nil {
				t.Fatalf("client still running: %v\n%s", err, tail(c.Output(), 20))
			}
			if code != tc.code {
				t.Errorf("exit code %d (%s), want %d (%s)", code, ExitName(code), tc.code, ExitName(tc.code))
			}
			if out := c.Output(); !strings.Contains(out, tc.output) || strings.Contains(out, AttachedLine) {
				t.Errorf("output lacks %q or shows an attach:\n%s", tc.output, tail(out, 20))
			}
			if strings.Contains(c.Output(), secret) {
				t.Errorf("client output contains the password")
			}
		})
	}
	t.Run("info", func(t *testing.T) {
		t.Parallel()
		for _, ic := range []struct {
			url  string
			code int
		}{
			{"tcp://alice:" + secret + "@" + hostPort, ExitOK},
			{"tcp://alice:wrong@" + hostPort, ExitFailure},
			{s.TCPURL(), ExitPasswordRequired},
		} {
			out, code := Run(t, 30*time.Second, "info", ic.url)
			if code != ic.code {
				t.Errorf("xpra info: exit %d (%s), want %d (%s)\n%s", code, ExitName(code), ic.code, ExitName(ic.code), tail(out, 10))
			}
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
