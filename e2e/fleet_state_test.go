package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
)

// stateNode is one xpra-edge process of a two-node fleet.
type stateNode struct {
	name, addr, admin, cfg string
	p                      *proxy
}

// fleetConfig is a node's configuration: one toml-users listener in front
// of backend, the shared database, a fast heartbeat and dead-node timeout
// so that the test is quick.
func fleetConfig(dir, name, addr, admin, dsn, backendA, backendB string, display int) string {
	return fmt.Sprintf(`display = ":%d"
socket_dir = %q

[[listener]]
bind = %q
auth = "toml"

[[user]]
name = "alice"
password = "alice-pw"
displays = [%q]

[[user]]
name = "bob"
password = "bob-pw"
displays = [%q]

[store]
postgres = %q
node = %q
address = %q
heartbeat = "250ms"
dead_after = "2s"

[bans]
max_failures = 4
window = "5m"
ban_time = "15m"

[admin]
bind = %q

[limits]
auth_fail_delay = "10ms"
max_sessions_per_user = 1

[log]
level = "debug"

[shutdown]
drain = "1s"
`, display, filepath.Join(dir, "ctl-"+name), addr, backendA, backendB, dsn, name, addr, admin)
}

func startFleetNode(t *testing.T, dir, name, ip, dsn, backendA, backendB string) *stateNode {
	t.Helper()
	port := portOf(t, xpratest.FreeTCPAddr(t))
	n := &stateNode{name: name, addr: fmt.Sprintf("%s:%d", ip, port), admin: xpratest.FreeTCPAddr(t)}
	n.cfg = writeFile(t, filepath.Join(dir, name+".toml"), fleetConfig(dir, name, n.addr, n.admin, dsn, backendA, backendB, xpratest.FreeDisplay(t)))
	if out, code := edgeCmd(t, "check-config", n.cfg); code != 0 {
		t.Fatalf("check-config: %s", out)
	}
	n.p = startProxy(t, n.addr, "--config="+n.cfg)
	return n
}

func healthz(t *testing.T, admin string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// loginFrom logs in from a chosen loopback address and returns the
// disconnect reasons (nil when it logged in).
func loginFrom(t *testing.T, local, addr, user, pw string) []string {
	t.Helper()
	c := dialFromAddr(t, local, addr)
	defer c.Close()
	_, err := goLogin(c, user, pw)
	if err == nil {
		return nil
	}
	if de, ok := err.(*xpraclient.DisconnectError); ok {
		return de.Reasons
	}
	return []string{err.Error()}
}

// bannedAt reports whether a new connection from local to addr is
// refused as banned (the proxy writes one text line and closes before
// reading anything).
func bannedAt(t *testing.T, local, addr string) bool {
	t.Helper()
	c := dialFromAddr(t, local, addr)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	b, _ := io.ReadAll(io.LimitReader(c, 512))
	return strings.Contains(string(b), "too many failed logins")
}

var fleetSessionRE = regexp.MustCompile(`(?m)^\t(.+?) :proxy-(\d+)@(\S+) uuid=([0-9a-f]{32}) user=(\S+)`)

type listedSession struct{ state, id, node, uuid, user string }

func listFleet(t *testing.T, cfg string, all bool) ([]listedSession, string) {
	t.Helper()
	args := []string{"list", "--fleet", "--config=" + cfg}
	if all {
		args = append(args, "--all")
	}
	out, code := edgeCmd(t, args...)
	if code != 0 {
		t.Fatalf("list --fleet: %d %s", code, out)
	}
	var ss []listedSession
	for _, m := range fleetSessionRE.FindAllStringSubmatch(out, -1) {
		ss = append(ss, listedSession{m[1], m[2], m[3], m[4], m[5]})
	}
	return ss, out
}

func waitListed(t *testing.T, cfg string, all bool, d time.Duration, cond func([]listedSession) bool) ([]listedSession, string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ss, out := listFleet(t, cfg, all)
		if cond(ss) {
			return ss, out
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet listing not as expected after %v:\n%s", d, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFleetTwoNodes runs two real xpra-edge processes (127.0.0.2 and
// 127.0.0.3) on one private PostgreSQL, in front of a real xpra 3.1.3
// server, with real xpra clients: failures spread over both nodes ban on
// both; `list --fleet` shows both nodes' sessions; `stop UUID` given to
// node A's configuration ends the session held by node B within 2 s;
// stopping PostgreSQL keeps the live sessions, refuses new logins with
// "authentication error" (and /healthz, xpra_edge_store_up say so) until
// it is back; a SIGKILLed node's sessions are marked ended after
// dead_after; max_sessions_per_user counts both nodes' sessions; a node
// stopped with SIGTERM records its sessions' ends and is listed STOPPED.
func TestFleetTwoNodes(t *testing.T) {
	xpratest.RequirePeers(t, "xpra", "Xvfb")
	pg := pgtest.Start(t)
	// alice's and bob's sessions (an xpra 3.1.3 session takes one client).
	srvA := xpratest.StartServer(t, xpratest.ServerOptions{BindTCP: xpratest.FreeTCPAddr(t)})
	srvB := xpratest.StartServer(t, xpratest.ServerOptions{BindTCP: xpratest.FreeTCPAddr(t)})
	dir := t.TempDir()
	a := startFleetNode(t, dir, "a", "127.0.0.2", pg.DSN(), srvA.TCPURL(), srvB.TCPURL())
	b := startFleetNode(t, dir, "b", "127.0.0.3", pg.DSN(), srvA.TCPURL(), srvB.TCPURL())
	for _, n := range []*stateNode{a, b} {
		if !n.p.waitLog("fleet store reachable", 10*time.Second) {
			t.Fatalf("node %s did not join:\n%s", n.name, n.p.log.String())
		}
	}

	t.Run("bans", func(t *testing.T) {
		const attacker, bystander = "127.0.0.9", "127.0.0.10"
		for i, n := range []*stateNode{a, b, a} {
			if r := loginFrom(t, attacker, n.addr, "alice", "wrong"); len(r) == 0 || r[0] != "authentication failed" {
				t.Fatalf("failure %d on %s: %v", i, n.name, r)
			}
		}
		if bannedAt(t, attacker, a.addr) || bannedAt(t, attacker, b.addr) {
			t.Fatal("banned after 3 failures of 4")
		}
		if r := loginFrom(t, attacker, b.addr, "alice", "wrong"); len(r) == 0 || r[0] != "authentication failed" {
			t.Fatalf("fourth failure on b: %v", r)
		}
		// The ban reaches the other node by NOTIFY, normally within
		// milliseconds; each probe that finds no ban costs its read
		// deadline, so a loaded machine gets several probes in 10 s.
		for _, n := range []*stateNode{a, b} {
			began := time.Now()
			for !bannedAt(t, attacker, n.addr) {
				if time.Since(began) > 10*time.Second {
					t.Fatalf("node %s does not enforce the fleet's ban", n.name)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("node %s enforces the ban %v after the fourth failure", n.name, time.Since(began).Round(time.Millisecond))
		}
		if r := loginFrom(t, bystander, a.addr, "alice", "alice-pw"); r != nil {
			t.Fatalf("another address was refused: %v", r)
		}
		if !a.p.waitLog("address banned after repeated failed logins", time.Second) && !b.p.waitLog("address banned after repeated failed logins", time.Second) {
			t.Fatal("no node logged the ban")
		}
	})

	// One real client on each node.
	ca := xpratest.Attach(t, "tcp://alice:alice-pw@"+a.addr+"/", xpratest.ClientOptions{})
	cb := xpratest.Attach(t, "tcp://bob:bob-pw@"+b.addr+"/", xpratest.ClientOptions{})
	for _, c := range []*xpratest.Client{ca, cb} {
		if err := c.WaitWindow("xterm", attachTimeout); err != nil {
			t.Fatalf("attach: %v\n%s", err, c.Output())
		}
	}
	var onB listedSession
	t.Run("list", func(t *testing.T) {
		ss, out := waitListed(t, a.cfg, false, 10*time.Second, func(ss []listedSession) bool {
			var seenA, seenB bool
			for _, s := range ss {
				seenA = seenA || s.node == "a" && s.user == "alice" && s.state == "LIVE"
				seenB = seenB || s.node == "b" && s.user == "bob" && s.state == "LIVE"
			}
			return seenA && seenB
		})
		for _, s := range ss {
			if s.node == "b" && s.user == "bob" {
				onB = s
			}
		}
		t.Logf("list --fleet:\n%s", out)
		if !strings.Contains(out, "LIVE a "+a.addr) || !strings.Contains(out, "LIVE b "+b.addr) {
			t.Fatalf("nodes not listed:\n%s", out)
		}
	})
	if onB.uuid == "" {
		t.Fatal("no session of b listed")
	}

	t.Run("per-user cap", func(t *testing.T) {
		// alice's one session (max_sessions_per_user = 1) is on a: b
		// refuses her a second one, before dialling her backend.
		r := loginFrom(t, "127.0.0.13", b.addr, "alice", "alice-pw")
		if len(r) < 2 || r[0] != "server error" || !strings.Contains(strings.Join(r, " "), "session limit reached") {
			t.Fatalf("alice's second session, on b: %v", r)
		}
		if ca.Exited() {
			t.Fatal("alice's session on a ended")
		}
	})

	t.Run("stop", func(t *testing.T) {
		start := time.Now()
		out, code := edgeCmd(t, "stop", onB.uuid, "--config="+a.cfg)
		cmdTook := time.Since(start)
		if code != 0 {
			t.Fatalf("stop: %d %s", code, out)
		}
		deadline := start.Add(10 * time.Second)
		for !cb.Exited() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		clientTook := time.Since(start)
		if !cb.Exited() {
			t.Fatalf("b's client still runs after the stop:\n%s", cb.Output())
		}
		t.Logf("stop UUID via node a's config: command returned in %v (%s); b's real client exited %v after the command started", cmdTook, strings.TrimSpace(out), clientTook)
		// The command's own time includes starting a -race binary and
		// opening the database; "in D" is from the request to the end
		// recorded by b.
		m := regexp.MustCompile(` in ([0-9.]+m?s): socket request`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("stop output: %q", out)
		}
		reqTook, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if reqTook > 2*time.Second {
			t.Fatalf("the session on b ended %v after the request, more than 2 s", reqTook)
		}
		if clientTook > cmdTook+time.Second {
			t.Fatalf("b's client exited %v after the command returned", clientTook-cmdTook)
		}
		if !b.p.waitLog("reason=\"socket request\"", 2*time.Second) {
			t.Fatalf("b did not end the session with \"socket request\":\n%s", b.p.log.String())
		}
		if ca.Exited() {
			t.Fatal("a's session ended too")
		}
	})

	t.Run("postgres down", func(t *testing.T) {
		pg.Stop()
		deadline := time.Now().Add(10 * time.Second)
		for healthz(t, a.admin) != http.StatusServiceUnavailable {
			if time.Now().After(deadline) {
				t.Fatal("healthz does not report the store down")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if v := metric(t, a.admin, "xpra_edge_store_up"); v != 0 {
			t.Fatalf("xpra_edge_store_up = %v while PostgreSQL is down", v)
		}
		if !a.p.waitLog("fleet store unreachable", 5*time.Second) {
			t.Fatal("the outage was not logged")
		}
		for i := 0; i < 5; i++ { // more than max_failures: none may count
			r := loginFrom(t, "127.0.0.11", a.addr, "alice", "wrong")
			if len(r) == 0 || r[0] != "authentication error" {
				t.Fatalf("login while PostgreSQL is down: %v", r)
			}
		}
		if r := loginFrom(t, "127.0.0.12", a.addr, "alice", "alice-pw"); len(r) == 0 || r[0] != "authentication error" {
			t.Fatalf("right password while PostgreSQL is down: %v", r)
		}
		// The live session on a still runs: its client is attached and
		// the xterm window is there.
		time.Sleep(time.Second)
		if ca.Exited() {
			t.Fatalf("a's live session ended with PostgreSQL:\n%s", ca.Output())
		}
		if err := ca.WaitWindow("xterm", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		pg.Start()
		start := time.Now()
		for healthz(t, a.admin) != http.StatusOK {
			if time.Since(start) > 15*time.Second {
				t.Fatal("healthz does not report the store back")
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("node a healthy again %v after PostgreSQL restarted", time.Since(start))
		if !a.p.waitLog("fleet store reachable", 5*time.Second) {
			t.Fatal("the recovery was not logged")
		}
		if v := metric(t, a.admin, "xpra_edge_store_up"); v != 1 {
			t.Fatalf("xpra_edge_store_up = %v after recovery", v)
		}
		// bob's session has no client now (its client was stopped above);
		// alice's would take ca's place.
		if r := loginFrom(t, "127.0.0.11", a.addr, "bob", "bob-pw"); r != nil {
			t.Fatalf("login after recovery (from the address that failed while down: no ban): %v", r)
		}
		if ca.Exited() {
			t.Fatal("a's session ended")
		}
	})

	t.Run("killed node", func(t *testing.T) {
		deadline := time.Now().Add(15 * time.Second)
		for healthz(t, b.admin) != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatal("b not healthy")
			}
			time.Sleep(50 * time.Millisecond)
		}
		cb2 := xpratest.Attach(t, "tcp://bob:bob-pw@"+b.addr+"/", xpratest.ClientOptions{})
		if err := cb2.WaitWindow("xterm", attachTimeout); err != nil {
			t.Fatalf("attach: %v\n%s", err, cb2.Output())
		}
		waitListed(t, a.cfg, false, 10*time.Second, func(ss []listedSession) bool {
			for _, s := range ss {
				if s.node == "b" && s.state == "LIVE" {
					return true
				}
			}
			return false
		})
		_ = b.p.cmd.Process.Signal(syscall.SIGKILL)
		<-b.p.done
		b.p.done <- nil
		killed := time.Now()
		ss, out := waitListed(t, a.cfg, true, 15*time.Second, func(ss []listedSession) bool {
			for _, s := range ss {
				if s.node == "b" && s.state == "LIVE" {
					return false
				}
			}
			return true
		})
		took := time.Since(killed)
		// Not before dead_after from b's last heartbeat, both by the
		// database's clock (the test's clock from the kill would also
		// count how late b's last heartbeat was on a loaded machine).
		var afterBeat int64
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(ctx, `SELECT (extract(epoch FROM min(s.ended_at - n.heartbeat_at)) * 1000)::bigint
			FROM edge_sessions s JOIN edge_nodes n ON n.name = s.node WHERE s.node = 'b' AND s.end_reason = 'node lost'`).Scan(&afterBeat); err != nil {
			t.Fatal(err)
		}
		t.Logf("b's sessions marked ended %v after SIGKILL, %v after b's last heartbeat (dead_after 2s, heartbeat 250ms):\n%s",
			took, time.Duration(afterBeat)*time.Millisecond, out)
		if afterBeat < 2000 {
			t.Fatalf("marked ended %v after b's last heartbeat, before dead_after", time.Duration(afterBeat)*time.Millisecond)
		}
		lost := 0
		for _, s := range ss {
			if s.node == "b" && s.state == "ENDED(node lost)" {
				lost++
			}
		}
		if lost != 1 || !strings.Contains(out, "LOST b") {
			t.Fatalf("b's live session not marked lost (%d):\n%s", lost, out)
		}
		if ca.Exited() {
			t.Fatal("a's session ended")
		}
	})

	t.Run("clean stop", func(t *testing.T) {
		// SIGTERM: after the drain, a's session ends ("proxy shutdown")
		// and is recorded so before the process exits; a is STOPPED.
		if err := a.p.stop(syscall.SIGTERM, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		_, out := listFleet(t, b.cfg, true)
		if !strings.Contains(out, "STOPPED a") {
			t.Fatalf("a not listed stopped:\n%s", out)
		}
		ss, _ := listFleet(t, b.cfg, false)
		for _, s := range ss {
			if s.node == "a" {
				t.Fatalf("a session of the stopped node is still live:\n%s", out)
			}
		}
		all, out := listFleet(t, b.cfg, true)
		shut := 0
		for _, s := range all {
			if s.node == "a" && s.user == "alice" && s.state == "ENDED(proxy shutdown)" {
				shut++
			}
		}
		if shut != 1 {
			t.Fatalf("alice's session on a not recorded ended by the shutdown (%d):\n%s", shut, out)
		}
	})
}

// TestFleetNodeNameUnique: a second xpra-edge configured with the name of
// a live node refuses to start, saying which process holds the name, and
// leaves that node running; once that node is SIGKILLed a node of the
// same name on this machine takes the name over at once (its process is
// gone), without waiting out dead_after.
func TestFleetNodeNameUnique(t *testing.T) {
	pg := pgtest.Start(t)
	dir := t.TempDir()
	a := startFleetNode(t, dir, "a", "127.0.0.2", pg.DSN(), "tcp://127.0.0.1:1/", "tcp://127.0.0.1:2/")
	if !a.p.waitLog("fleet store reachable", 10*time.Second) {
		t.Fatalf("node a did not join:\n%s", a.p.log.String())
	}
	dup := filepath.Join(dir, "dup")
	if err := os.Mkdir(dup, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.3:%d", portOf(t, xpratest.FreeTCPAddr(t)))
	cfg := writeFile(t, filepath.Join(dup, "a.toml"), fleetConfig(dup, "a", addr, xpratest.FreeTCPAddr(t), pg.DSN(), "tcp://127.0.0.1:1/", "tcp://127.0.0.1:2/", xpratest.FreeDisplay(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, edgeBin, "proxy", "--config="+cfg).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the second node of name a did not refuse to start within 30 s:\n%s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("the second node of name a: %v\n%s", err, out)
	}
	if want := fmt.Sprintf(`is held by another live run (pid %d on host`, a.p.cmd.Process.Pid); !strings.Contains(string(out), want) {
		t.Fatalf("the refusal does not say %q:\n%s", want, out)
	}
	if strings.Contains(string(out), pg.Password) {
		t.Fatal("the refusal shows the database password")
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("refused in %v: %s", time.Since(start), lines[len(lines)-1])
	if code := healthz(t, a.admin); code != 200 {
		t.Fatalf("node a after the refused start: /healthz %d", code)
	}
	_, listed := listFleet(t, a.cfg, false)
	if !strings.Contains(listed, "LIVE a") {
		t.Fatalf("a not listed live:\n%s", listed)
	}

	_ = a.p.cmd.Process.Signal(syscall.SIGKILL)
	<-a.p.done
	a.p.done <- nil
	again := startProxy(t, addr, "--config="+cfg)
	if !again.waitLog("taking the name over", 10*time.Second) || !again.waitLog("fleet store reachable", 10*time.Second) {
		t.Fatalf("the node of name a after the SIGKILL:\n%s", again.log.String())
	}
}
