package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xpratest"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// opsConfig is a config with a sqlite listener, a toml-users listener
// and the admin listener; extraUsers are added as [[user]] entries.
func opsConfig(dir, backend, sqlAddr, tomlAddr, adminAddr string, extraUsers ...string) string {
	users := ""
	for _, u := range append([]string{"alice"}, extraUsers...) {
		users += fmt.Sprintf("[[user]]\nname = %q\npassword = %q\ndisplays = [\"tcp://%s/\"]\n\n", u, u+"-pw", backend)
	}
	return fmt.Sprintf(`display = ":%d"
socket_dir = %q
auth = "sqlite,filename=%s"

[[listener]]
bind = %q

[[listener]]
bind = %q
auth = "toml"

%s
[admin]
bind = %q

[limits]
auth_fail_delay = "10ms"

[log]
level = "debug"

[shutdown]
drain = "2s"
`, 30000+os.Getpid()%20000, filepath.Join(dir, "ctl"), filepath.Join(dir, "users.sdb"), sqlAddr, tomlAddr, users, adminAddr)
}

func startSyntheticBackend(t *testing.T) (string, *benchpeer.Pool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pool := benchpeer.NewPool()
	s := benchpeer.NewServer(pool)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close(); ln.Close() })
	return ln.Addr().String(), pool
}

func benchLogin(t *testing.T, addr, user, pw string, pool *benchpeer.Pool, w benchpeer.Workload) (*benchpeer.Session, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return benchpeer.Login(c, pool, benchpeer.LoginOptions{Username: user, Password: pw, Workload: w, Timeout: 10 * time.Second})
}

func metric(t *testing.T, adminAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? ([0-9.e+-]+)$`)
	total := 0.0
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		total += v
	}
	return total
}

// TestReloadMetricsAndDrain: SIGHUP swaps users while relayed sessions keep
// moving data; a broken config is rejected while the old one serves; sqlite
// users are read live; /metrics counts; SIGTERM drains and exits 0.
func TestReloadMetricsAndDrain(t *testing.T) {
	dir := t.TempDir()
	backend, pool := startSyntheticBackend(t)
	sqlAddr, tomlAddr, adminAddr := xpratest.FreeTCPAddr(t), xpratest.FreeTCPAddr(t), xpratest.FreeTCPAddr(t)
	db := filepath.Join(dir, "users.sdb")
	if out, code := edgeCmd(t, "sqlite", db, "create"); code != 0 {
		t.Fatal(out)
	}
	cfgPath := writeFile(t, filepath.Join(dir, "config.toml"), opsConfig(dir, backend, sqlAddr, tomlAddr, adminAddr))
	if out, code := edgeCmd(t, "check-config", cfgPath); code != 0 {
		t.Fatalf("check-config: %s", out)
	}
	p := startProxy(t, sqlAddr, "--config="+cfgPath)

	// A session streaming across the reload.
	long, err := benchLogin(t, tomlAddr, "alice", "alice-pw", pool, benchpeer.Workload{Mode: benchpeer.ModeStream, Seed: 3, Draws: 400, Small: true, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	streamed := make(chan error, 1)
	go func() {
		st, err := long.Stream(time.Now().Add(60 * time.Second))
		if err == nil && st.Draws != 400 {
			err = fmt.Errorf("draws = %d", st.Draws)
		}
		streamed <- err
	}()

	// bob does not exist yet.
	if _, err := benchLogin(t, tomlAddr, "bob", "bob-pw", pool, benchpeer.Workload{Mode: benchpeer.ModeIdle}); err == nil {
		t.Fatal("bob logged in before he was added")
	}
	writeFile(t, cfgPath, opsConfig(dir, backend, sqlAddr, tomlAddr, adminAddr, "bob"))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	if !p.waitLog("configuration reloaded", 10*time.Second) {
		t.Fatalf("no reload:\n%s", p.log.String())
	}
	s, err := benchLogin(t, tomlAddr, "bob", "bob-pw", pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatalf("bob after the reload: %v", err)
	}
	s.Close()

	// A broken config is rejected, named, and the old one serves on.
	writeFile(t, cfgPath, opsConfig(dir, backend, sqlAddr, tomlAddr, adminAddr, "bob")+"\nno_such_key = 1\n")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	if !p.waitLog("reload rejected", 10*time.Second) || !strings.Contains(p.log.String(), "no_such_key") {
		t.Fatalf("broken config not rejected with its problem:\n%s", p.log.String())
	}
	s, err = benchLogin(t, tomlAddr, "bob", "bob-pw", pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatalf("bob after a rejected reload: %v", err)
	}
	s.Close()

	// sqlite is read at every login: a user added now logs in at once.
	if out, code := edgeCmd(t, "sqlite", db, "add", "carol", "carol-pw", "nobody", "nogroup", "tcp://"+backend+"/"); code != 0 {
		t.Fatal(out)
	}
	s, err = benchLogin(t, sqlAddr, "carol", "carol-pw", pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatalf("carol: %v", err)
	}
	s.Close()
	if _, err := benchLogin(t, sqlAddr, "carol", "wrong", pool, benchpeer.Workload{Mode: benchpeer.ModeIdle}); err == nil {
		t.Fatal("wrong password accepted")
	}

	if err := <-streamed; err != nil {
		t.Fatalf("the session relayed across reloads: %v", err)
	}
	long.Close()

	// Metrics moved.
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, adminAddr, "xpra_edge_relayed_bytes_total") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for name, min := range map[string]float64{
		"xpra_edge_sessions_total":             4,
		"xpra_edge_logins_total":               4,
		"xpra_edge_login_failures_total":       2,
		"xpra_edge_relayed_bytes_total":        1e5,
		"xpra_edge_backend_dial_seconds_count": 4,
		"xpra_edge_handshake_seconds_count":    4,
	} {
		if v := metric(t, adminAddr, name); v < min {
			t.Errorf("%s = %v, want >= %v", name, v, min)
		}
	}

	// SIGTERM with a live session: the client is told "server shutdown"
	// after the drain period, and the process exits 0.
	c, err := net.DialTimeout("tcp", tomlAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	xc := xpraclient.New(c, xprawire.Rencode)
	caps := xpraclient.BaseCaps("alice")
	caps.Set("bench.mode", "idle")
	if _, err := xc.Hello(caps, []byte("alice-pw"), true, false, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var reasons []string
	for reasons == nil {
		pk, err := xc.Read(time.Now().Add(10 * time.Second))
		if err != nil {
			t.Fatalf("no disconnect on shutdown: %v", err)
		}
		if pk.Type() == "disconnect" {
			reasons = xpraclient.Reasons(pk)
		}
	}
	if len(reasons) == 0 || reasons[0] != "server shutdown" {
		t.Fatalf("told %q", reasons)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("told after %v, before the 2s drain", d)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit after the drain")
	}
	// New connections were refused while draining.
	if c, err := net.DialTimeout("tcp", sqlAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting after SIGTERM")
	}
}

// TestCheckConfig: the example config is valid; a broken one has every
// problem printed with its path.
func TestCheckConfig(t *testing.T) {
	out, code := edgeCmd(t, "check-config", "../config.example.toml")
	if code != 0 {
		t.Fatalf("config.example.toml: %s", out)
	}
	bad := writeFile(t, filepath.Join(t.TempDir(), "bad.toml"), `
display = "100"
[[listener]]
bind = "nowhere"
[tls]
mode = "acme"
[[user]]
name = "x"
[log]
level = "loud"
`)
	out, code = edgeCmd(t, "check-config", bad)
	if code == 0 {
		t.Fatal("a broken config passed")
	}
	for _, want := range []string{"display", "listener[0].bind", "listener[0].auth", "tls", "user[0]", "log.level"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config does not name %q:\n%s", want, out)
		}
	}
	out, code = edgeCmd(t, "check-config", writeFile(t, filepath.Join(t.TempDir(), "typo.toml"), "dispaly = \":1\"\n"))
	if code == 0 || !strings.Contains(out, "dispaly") {
		t.Fatalf("unknown key: %d %s", code, out)
	}
}

// TestDevDefaults is what `make run` does: the proxy on embedded defaults
// creates its sqlite file, prints how to add a user and connect, and
// answers on loopback with TLS and plain xpra.
func TestDevDefaults(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(edgeBin, "proxy", "--dev")
	cmd.Dir = dir
	log := &logBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "xpra-edge serving") {
		if time.Now().After(deadline) {
			t.Fatalf("not serving:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"sqlite .run/users.sdb add", "xpra attach tcp://", "--ssl-ca-certs="} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("instructions lack %q:\n%s", want, log.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".run", "users.sdb")); err != nil {
		t.Fatalf("users database: %v", err)
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:14500", 5*time.Second)
	if err != nil {
		t.Fatalf("dev port: %v", err)
	}
	defer c.Close()
	caps, err := xpraclient.New(c, xprawire.Rencode).Request("version", 5*time.Second)
	if err != nil || !caps.Has("xpra-edge.version") {
		t.Fatalf("version over plain xpra: %v %v", caps, err)
	}
	// The portal answers at / over https, with a certificate of the
	// development CA, and the HTML5 client's files at /client/.
	caPEM, err := os.ReadFile(filepath.Join(dir, ".run", "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in the development CA file")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for path, want := range map[string]string{"/": `action="/login"`, "/client/index.html": "<html"} {
		resp, err := hc.Get("https://127.0.0.1:14500" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %s, body lacks %q", path, resp.Status, want)
		}
	}
}

// TestEdgeControlCommands: xpra-edge's own list, info, stop and reload
// work against the proxy and its sessions, without xpra installed.
func TestEdgeControlCommands(t *testing.T) {
	dir := t.TempDir()
	backend, pool := startSyntheticBackend(t)
	sqlAddr, tomlAddr, adminAddr := xpratest.FreeTCPAddr(t), xpratest.FreeTCPAddr(t), xpratest.FreeTCPAddr(t)
	if out, code := edgeCmd(t, "sqlite", filepath.Join(dir, "users.sdb"), "create"); code != 0 {
		t.Fatal(out)
	}
	cfgPath := writeFile(t, filepath.Join(dir, "config.toml"), opsConfig(dir, backend, sqlAddr, tomlAddr, adminAddr))
	p := startProxy(t, sqlAddr, "--config="+cfgPath)
	display := fmt.Sprintf(":%d", 30000+os.Getpid()%20000)
	ctl := "--socket-dir=" + filepath.Join(dir, "ctl")

	s, err := benchLogin(t, tomlAddr, "alice", "alice-pw", pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := edgeCmd(t, "list", ctl)
	for _, want := range []string{"LIVE session at " + display, "LIVE session at :proxy-1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list lacks %q:\n%s", want, out)
		}
	}
	out, code := edgeCmd(t, "info", ctl, ":proxy-1")
	if code != 0 || !strings.Contains(out, "proxy.user=alice") || !strings.Contains(out, "proxy.target=tcp://"+backend) {
		t.Fatalf("info :proxy-1: %d\n%s", code, out)
	}
	out, code = edgeCmd(t, "info", ctl, display)
	if code != 0 || !strings.Contains(out, "instances.count=1") || !strings.Contains(out, "server.mode=proxy") {
		t.Fatalf("info %s: %d\n%s", display, code, out)
	}
	out, code = edgeCmd(t, "reload", ctl, display)
	if code != 0 || !p.waitLog("configuration reloaded", 10*time.Second) {
		t.Fatalf("reload: %d\n%s", code, out)
	}
	out, code = edgeCmd(t, "stop", ctl, ":proxy-1")
	if code != 0 || !strings.Contains(out, "server shutdown") {
		t.Fatalf("stop :proxy-1: %d\n%s", code, out)
	}
	if _, err := s.Ping(1, 5*time.Second); err == nil {
		t.Fatal("the stopped session still answers")
	}
	out, code = edgeCmd(t, "stop", ctl, display)
	if code != 0 {
		t.Fatalf("stop %s: %d\n%s", display, code, out)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not stop")
	}
	if out, code := edgeCmd(t, "info", ctl, ":proxy-9"); code == 0 {
		t.Fatalf("info of a missing session succeeded:\n%s", out)
	}
}
