package sessions

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/sockdir"
)

const xpraBin = "/usr/bin/xpra"

// requirePeers skips (or fails under XPRA_EDGE_REQUIRE_PEERS=1) when the
// test cannot run for real: it needs root, useradd and, if needXpra, xpra.
func requirePeers(t *testing.T, needXpra bool) {
	t.Helper()
	missing := ""
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case needXpra && !executable(xpraBin):
		missing = xpraBin
	}
	if missing == "" {
		for _, tool := range []string{"useradd", "userdel"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = tool
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" {
		t.Fatalf("XPRA_EDGE_REQUIRE_PEERS=1 but %s is missing", missing)
	}
	t.Skipf("needs %s", missing)
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// newTestUser creates a unique user with a home directory (member of the
// group "users" when it exists) and removes it, its processes and its
// runtime directory in cleanup.
func newTestUser(t *testing.T) User {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "xet" + hex.EncodeToString(b)
	args := []string{"-m", "-s", "/bin/sh"}
	if _, err := exec.Command("getent", "group", "users").Output(); err == nil {
		args = append(args, "-G", "users")
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	u, err := LookupUser(name)
	if err != nil {
		_ = exec.Command("userdel", "-r", name).Run()
		t.Fatalf("LookupUser(%s): %v", name, err)
	}
	t.Cleanup(func() {
		killUID(t, u.UID)
		if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil &&
			!bytes.Contains(out, []byte("mail spool")) {
			t.Errorf("userdel: %v: %s", err, out)
		}
		_ = os.RemoveAll(runtimeDir(u))
	})
	return u
}

// pidsOfUID lists the live (non-zombie) processes running as uid.
func pidsOfUID(uid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStatus(pid)
		if err != nil || st["State"] != "" && strings.HasPrefix(st["State"], "Z") {
			continue
		}
		if f := strings.Fields(st["Uid"]); len(f) > 0 && f[0] == strconv.Itoa(uid) {
			out = append(out, pid)
		}
	}
	return out
}

// killUID SIGKILLs every process of uid, bounded in time.
func killUID(t *testing.T, uid int) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		pids := pidsOfUID(uid)
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("processes of uid %d survive: %v", uid, pidsOfUID(uid))
}

func readStatus(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

func readEnviron(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatalf("environ of %d: %v", pid, err)
	}
	m := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			m[k] = v
		}
	}
	return m
}

// stopSession stops a started session: `xpra stop`, then SIGKILL to the
// server's process group.
func stopSession(t *testing.T, st Started) {
	t.Helper()
	t0 := time.Now()
	defer func() { t.Logf("stopped %s in %s", st.Display, time.Since(t0).Round(time.Millisecond)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, xpraBin, "stop", "socket://"+st.Socket).Run()
	if st.PID > 0 {
		if pgid, err := syscall.Getpgid(st.PID); err == nil && pgid > 1 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
}

func xpraID(t *testing.T, socket string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, xpraBin, "id", "socket://"+socket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xpra id socket://%s: %v\n%s", socket, err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func TestStartAsUser(t *testing.T) {
	requirePeers(t, true)
	u := newTestUser(t)

	// The user's own config must be honoured: a session name set there.
	cfgDir := filepath.Join(u.Home, ".config", "xpra")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "xpra.conf"), []byte("session-name = from-user-config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(u.Home, ".config"), cfgDir, filepath.Join(cfgDir, "xpra.conf")} {
		if err := os.Chown(p, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("LC_PAPER", "C")
	t.Setenv("XPRA_EDGE_TEST_NOT_WHITELISTED", "leak")
	t.Setenv("DISPLAY", ":4242")

	s := &Starter{Timeout: 30 * time.Second}
	req, err := RequestFromCaps(map[string]any{"mode": []byte("start"), "dpi": int64(123), "chdir": "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	st, err := s.Start(context.Background(), u, req)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { stopSession(t, st) })
	t.Logf("started %+v in %s", st, time.Since(t0).Round(time.Millisecond))

	wantDir := fmt.Sprintf("/run/user/%d/xpra", u.UID)
	if filepath.Dir(st.Socket) != wantDir {
		t.Errorf("socket %s, want it in %s", st.Socket, wantDir)
	}
	if want := filepath.Join(wantDir, sockdir.SocketName(st.Display)); st.Socket != want {
		t.Errorf("socket %s for display %s, want %s", st.Socket, st.Display, want)
	}
	for _, d := range []string{runtimeDir(u), wantDir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 || int(fi.Sys().(*syscall.Stat_t).Uid) != u.UID {
			t.Errorf("%s: mode %v owner %d, want 0700 owned by %d", d, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, u.UID)
		}
	}

	// The socket: owned by the user, LIVE, listed for the uid.
	fi, err := os.Lstat(st.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if uid := int(fi.Sys().(*syscall.Stat_t).Uid); uid != u.UID {
		t.Errorf("socket owner %d, want %d", uid, u.UID)
	}
	if p := sockdir.Probe(st.Socket, time.Second); p != sockdir.StateLive {
		t.Errorf("probe %s = %v, want LIVE", st.Socket, p)
	}
	l := &sockdir.Lister{Dirs: []string{wantDir}}
	live, err := l.LiveSessions(u.UID)
	if err != nil || len(live) != 1 || live[0].Display != st.Display {
		t.Errorf("LiveSessions(%d) = %v, %v; want the one display %s", u.UID, live, err, st.Display)
	}

	// The server process: the user's uid, gid and groups.
	if st.PID <= 1 {
		t.Fatalf("pid %d", st.PID)
	}
	status, err := readStatus(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Uid", "Gid"} {
		want := u.UID
		if k == "Gid" {
			want = u.GID
		}
		for _, f := range strings.Fields(status[k]) {
			if f != strconv.Itoa(want) {
				t.Errorf("%s of %d: %q, want all %d", k, st.PID, status[k], want)
				break
			}
		}
	}
	for _, g := range u.Groups {
		if !containsField(status["Groups"], strconv.Itoa(g)) {
			t.Errorf("Groups of %d: %q, missing %d", st.PID, status["Groups"], g)
		}
	}
	if containsField(status["Groups"], "0") {
		t.Errorf("Groups of %d: %q include root", st.PID, status["Groups"])
	}

	// Its environment: the user's identity, the whitelist only.
	env := readEnviron(t, st.PID)
	want := map[string]string{
		"HOME": u.Home, "USER": u.Name, "LOGNAME": u.Name, "SHELL": "/bin/sh",
		"XDG_RUNTIME_DIR": runtimeDir(u), "PATH": DefaultPath, "LC_PAPER": "C",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("environ %s=%q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"XPRA_EDGE_TEST_NOT_WHITELISTED", "DISPLAY_WAS_SET"} {
		if _, ok := env[k]; ok {
			t.Errorf("environ has %s", k)
		}
	}
	if env["DISPLAY"] == ":4242" {
		t.Errorf("proxy's DISPLAY leaked into the session")
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", st.PID))
	if err == nil && cwd != u.Home && cwd != "/" {
		t.Logf("server cwd %s (xpra may chdir itself)", cwd)
	}

	// Its command line: the container defaults and the client's option.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(string(cmdline), "\x00")
	for _, a := range []string{"--mdns=no", "--pulseaudio=no", "--dpi=123", "--daemon=yes", "--systemd-run=no", "--start-via-proxy=no"} {
		if !contains(args, a) {
			t.Errorf("server argv %q lacks %s", args, a)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--chdir") || strings.HasPrefix(a, "--no-") {
			t.Errorf("server argv has %s", a)
		}
	}

	// `xpra id` against the socket works and shows the user's config.
	id := xpraID(t, st.Socket)
	if id["display"] != st.Display {
		t.Errorf("xpra id display=%q, want %q (%v)", id["display"], st.Display, id)
	}
	if id["session-name"] != "from-user-config" {
		t.Errorf("xpra id session-name=%q, want the user's config value (%v)", id["session-name"], id)
	}
	if id["pid"] != "" && id["pid"] != strconv.Itoa(st.PID) {
		t.Errorf("xpra id pid=%s, Started.PID=%d", id["pid"], st.PID)
	}

	// The same display again is refused before anything runs.
	_, err = s.Start(context.Background(), u, Request{Display: st.Display})
	if !errors.Is(err, ErrDisplayInUse) || !errors.Is(err, ErrStartFailed) {
		t.Errorf("second start on %s: %v, want ErrDisplayInUse", st.Display, err)
	}
}

func TestStartDesktopOnGivenDisplay(t *testing.T) {
	requirePeers(t, true)
	u := newTestUser(t)
	display := fmt.Sprintf(":%d", 3000+os.Getpid()%20000)
	dir := userDir(t)
	sdir := filepath.Join(dir, "sock")
	s := &Starter{SocketDir: func(User) string { return sdir }, Timeout: 30 * time.Second}
	t0 := time.Now()
	req := Request{Mode: ModeStartDesktop, Display: display, Options: map[string]string{"start-child": "sleep 4321"}}
	st, err := s.Start(context.Background(), u, req)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("started %+v in %s", st, time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() { stopSession(t, st) })
	if st.Display != display || st.Socket != filepath.Join(sdir, sockdir.SocketName(display)) {
		t.Errorf("started %+v, want display %s in %s", st, display, sdir)
	}
	fi, err := os.Stat(sdir)
	if err != nil || fi.Mode().Perm() != 0o700 || int(fi.Sys().(*syscall.Stat_t).Uid) != u.UID {
		t.Errorf("socket dir %s: %v %v", sdir, fi, err)
	}
	id := xpraID(t, st.Socket)
	if id["display"] != display {
		t.Errorf("xpra id display=%q, want %s", id["display"], display)
	}
	if !strings.Contains(id["session-type"], "desktop") {
		t.Errorf("xpra id session-type=%q, want a desktop session", id["session-type"])
	}
	// The client's start-child runs inside the session, as the user.
	var child int
	for i := 0; i < 100 && child == 0; i++ {
		for _, p := range pidsOfUID(u.UID) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); string(b) == "sleep\x004321\x00" {
				child = p
			}
		}
		if child == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if child == 0 {
		t.Fatalf("start-child 'sleep 4321' not running as uid %d", u.UID)
	}
	if env := readEnviron(t, child); env["DISPLAY"] != display {
		t.Errorf("start-child DISPLAY=%q, want %s", env["DISPLAY"], display)
	}
}

func TestStartFailures(t *testing.T) {
	requirePeers(t, false)
	u := newTestUser(t)
	dir := userDir(t)
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name    string
		xpra    string
		timeout time.Duration
		is      error
		msg     string
	}{
		{"false", "/bin/false", 5 * time.Second, ErrStartFailed, "exited with status 1"},
		{"prints-and-fails", script("fail", "echo 'Error: no X server here' >&2; exit 3"), 5 * time.Second,
			ErrStartFailed, "Error: no X server here"},
		{"exits-without-daemon", "/bin/true", 5 * time.Second, ErrStartFailed, "without leaving a server"},
		// A daemon that never creates a socket: the timeout fires and the
		// detached sleeper is killed.
		{"daemon-without-socket", script("hang", "setsid sleep 300 </dev/null >/dev/null 2>&1 &\nexit 0"),
			1500 * time.Millisecond, ErrTimeout, "timed out"},
		{"relative-path", "xpra", time.Second, ErrStartFailed, "not absolute"},
		{"missing-binary", filepath.Join(dir, "nope"), time.Second, ErrStartFailed, "exec"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Starter{XpraPath: c.xpra, Timeout: c.timeout}
			t0 := time.Now()
			_, err := s.Start(context.Background(), u, Request{})
			took := time.Since(t0)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			t.Logf("%v (%s)", err, took.Round(time.Millisecond))
			if !errors.Is(err, c.is) || !errors.Is(err, ErrStartFailed) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			var se *StartError
			if !errors.As(err, &se) || se.UID != u.UID {
				t.Errorf("error %#v is not a *StartError for uid %d", err, u.UID)
			}
			if took > c.timeout+5*time.Second {
				t.Errorf("took %s with timeout %s", took, c.timeout)
			}
			if left := pidsOfUID(u.UID); len(left) > 0 {
				t.Errorf("processes left for uid %d: %v", u.UID, left)
			}
		})
	}
}

func TestStartContextCancel(t *testing.T) {
	requirePeers(t, false)
	u := newTestUser(t)
	dir := userDir(t)
	p := filepath.Join(dir, "slow")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s := &Starter{XpraPath: p, Timeout: 30 * time.Second}
	_, err := s.Start(ctx, u, Request{})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrStartFailed) {
		t.Errorf("Start with a cancelled context: %v", err)
	}
	if left := pidsOfUID(u.UID); len(left) > 0 {
		t.Errorf("processes left for uid %d: %v", u.UID, left)
	}
}

func TestRefusals(t *testing.T) {
	// Root and unknown users, without starting anything.
	for _, k := range []string{"root", "0"} {
		if _, err := LookupUser(k); !errors.Is(err, ErrRoot) {
			t.Errorf("LookupUser(%q) = %v, want ErrRoot", k, err)
		}
	}
	for _, k := range []string{"", "no-such-user-xpra-edge", "4000000001", "a:b", "x\x00y"} {
		if _, err := LookupUser(k); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("LookupUser(%q) = %v, want ErrUnknownUser", k, err)
		}
	}
	s := &Starter{XpraPath: "/bin/false"}
	for _, u := range []User{
		{Name: "root", UID: 0, GID: 0, Home: "/root"},
		{Name: "x", UID: 1000, GID: 0, Home: "/home/x"},
		{Name: "x", UID: 0, GID: 1000, Home: "/home/x"},
	} {
		if _, err := s.Start(context.Background(), u, Request{}); !errors.Is(err, ErrRoot) {
			t.Errorf("Start(%+v) = %v, want ErrRoot", u, err)
		}
	}
	nobody := User{Name: "nobody", UID: 65534, GID: 65534, Home: "/nonexistent"}
	_, err := s.Start(context.Background(), nobody, Request{Options: map[string]string{"xvfb": "Xvfb :9"}})
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Name != "xvfb" || !strings.Contains(err.Error(), `"xvfb"`) {
		t.Errorf("Start with xvfb: %v, want an OptionError naming xvfb", err)
	}
	// Reserved options stay refused even when an operator allows them.
	s.AllowedOptions = map[string]bool{"daemon": true, "socket-dir": true, "dpi": true}
	for _, k := range []string{"daemon", "socket-dir"} {
		_, err := s.Start(context.Background(), nobody, Request{Options: map[string]string{k: "x"}})
		if !errors.As(err, &oe) || oe.Name != k {
			t.Errorf("Start with reserved %s: %v", k, err)
		}
	}
}

func TestLookupUser(t *testing.T) {
	requirePeers(t, false)
	u := newTestUser(t)
	byID, err := LookupUser(strconv.Itoa(u.UID))
	if err != nil {
		t.Fatal(err)
	}
	if byID.Name != u.Name || byID.UID != u.UID || byID.GID != u.GID || byID.Home != "/home/"+u.Name || byID.Shell != "/bin/sh" {
		t.Errorf("by uid %+v, by name %+v", byID, u)
	}
	if len(u.Groups) == 0 {
		t.Errorf("no groups for %+v", u)
	}
}

// userDir makes a directory the test users can reach (t.TempDir's parent
// is private to root).
func userDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "xpra-edge-sessions-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func containsField(s, f string) bool { return contains(strings.Fields(s), f) }

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Two clients of the same user asking at once get two sessions.
func TestStartConcurrent(t *testing.T) {
	requirePeers(t, true)
	u := newTestUser(t)
	s := &Starter{Timeout: 30 * time.Second}
	type res struct {
		st  Started
		err error
	}
	ch := make(chan res, 2)
	for i := 0; i < 2; i++ {
		go func() {
			st, err := s.StartUser(context.Background(), u.Name, map[string]any{"mode": "start", "chdir": "/x"})
			ch <- res{st, err}
		}()
	}
	var got []Started
	for i := 0; i < 2; i++ {
		r := <-ch
		if r.err != nil {
			t.Errorf("StartUser: %v", r.err)
			continue
		}
		st := r.st
		t.Cleanup(func() { stopSession(t, st) })
		got = append(got, st)
	}
	if len(got) == 2 && (got[0].Display == got[1].Display || got[0].PID == got[1].PID) {
		t.Errorf("two starts gave the same session: %+v", got)
	}
	for _, st := range got {
		if id := xpraID(t, st.Socket); id["display"] != st.Display {
			t.Errorf("xpra id on %s: display %q, want %s", st.Socket, id["display"], st.Display)
		}
	}
	if _, err := s.StartUser(context.Background(), "root", nil); !errors.Is(err, ErrRoot) {
		t.Errorf("StartUser(root) = %v", err)
	}
	if _, err := s.StartUser(context.Background(), u.Name, map[string]any{"xvfb": "x"}); !errors.Is(err, ErrOptionNotAllowed) {
		t.Errorf("StartUser with xvfb = %v", err)
	}
}

// Shadow mode attaches to an X server the user already runs.
func TestStartShadow(t *testing.T) {
	requirePeers(t, true)
	xvfb, err := exec.LookPath("Xvfb")
	if err != nil {
		if os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" {
			t.Fatal("XPRA_EDGE_REQUIRE_PEERS=1 but Xvfb is missing")
		}
		t.Skip("needs Xvfb")
	}
	u := newTestUser(t)
	n := 20000 + os.Getpid()%20000
	display := fmt.Sprintf(":%d", n)
	x := exec.Command(xvfb, display, "-nolisten", "tcp", "-screen", "0", "640x480x24")
	x.Env = []string{"HOME=" + u.Home}
	x.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}}
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Process.Kill(); _ = x.Wait() })
	xsock := fmt.Sprintf("/tmp/.X11-unix/X%d", n)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(xsock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := &Starter{Timeout: 30 * time.Second}
	t0 := time.Now()
	st, err := s.Start(context.Background(), u, Request{Mode: ModeShadow, Display: display})
	if err != nil {
		t.Fatalf("Start shadow: %v", err)
	}
	t.Logf("started %+v in %s", st, time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() { stopSession(t, st) })
	id := xpraID(t, st.Socket)
	if id["display"] != display || !strings.Contains(id["session-type"], "shadow") {
		t.Errorf("xpra id = %v, want a shadow of %s", id, display)
	}
}
