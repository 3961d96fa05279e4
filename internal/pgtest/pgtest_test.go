package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query(t *testing.T, dsn string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var db string
	err = conn.QueryRow(ctx, "SELECT current_database()").Scan(&db)
	return db, err
}

// TestClusterStopStart proves the harness: a server on loopback with a
// password, a database, a restart on the same port that keeps the data,
// and a refused connection while stopped.
func TestClusterStopStart(t *testing.T) {
	c := Start(t)
	if db, err := query(t, c.DSN()); err != nil || db != Database {
		t.Fatalf("query: %q, %v", db, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	var addr string
	if err := conn.QueryRow(ctx, "SELECT host(inet_server_addr())").Scan(&addr); err != nil || addr != "127.0.0.1" {
		t.Fatalf("server address %q, %v", addr, err)
	}
	conn.Close(ctx)

	// A wrong password is refused: authentication is really on.
	bad := strings.Replace(c.DSN(), c.Password, "wrong", 1)
	if _, err := query(t, bad); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}

	port := c.Port
	c.Stop()
	if c.Running() {
		t.Fatal("still running after Stop")
	}
	if _, err := query(t, c.DSN()); err == nil {
		t.Fatal("connected to a stopped cluster")
	}
	c.Stop() // idempotent
	c.Start()
	if c.Port != port {
		t.Fatalf("port changed %d -> %d", port, c.Port)
	}
	conn, err = pgx.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("data after restart: %d, %v", v, err)
	}
	// A crash (immediate shutdown) cuts the client; a Start recovers.
	c.Crash()
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("ping succeeded after a crash")
	}
	c.Start()
	if db, err := query(t, c.DSN()); err != nil || db != Database {
		t.Fatalf("after crash recovery: %q, %v", db, err)
	}
}

// TestTerminateBackends proves that the harness can cut a client's
// connection from the server side, and CreateDatabase gives a fresh one.
func TestTerminateBackends(t *testing.T) {
	c := Start(t)
	dsn := c.CreateDatabase(t, "other")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if n := c.TerminateBackends(t, "datname = 'other'"); n != 1 {
		t.Fatalf("terminated %d backends, want 1", n)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("ping succeeded on a terminated connection")
	}
}

// recTB records what Require does instead of ending the test.
type recTB struct {
	testing.TB
	fatal, skip string
}

func (r *recTB) Helper()           {}
func (r *recTB) Fatal(args ...any) { r.fatal = strings.TrimSpace(fmt.Sprintln(args...)) }
func (r *recTB) Skip(args ...any)  { r.skip = strings.TrimSpace(fmt.Sprintln(args...)) }

// TestRequireMissingBinaries: without the server binaries Require skips,
// and fails under XPRA_EDGE_REQUIRE_PEERS=1 (as make test sets it).
func TestRequireMissingBinaries(t *testing.T) {
	t.Setenv("PGTEST_BINDIR", t.TempDir())
	t.Setenv(EnvRequirePeers, "")
	r := &recTB{TB: t}
	Require(r)
	if r.fatal != "" || !strings.Contains(r.skip, "missing PostgreSQL") || !strings.Contains(r.skip, "install-test-deps.sh") {
		t.Fatalf("without XPRA_EDGE_REQUIRE_PEERS: fatal %q, skip %q", r.fatal, r.skip)
	}
	t.Setenv(EnvRequirePeers, "1")
	r = &recTB{TB: t}
	Require(r)
	if r.skip != "" || !strings.Contains(r.fatal, "initdb") {
		t.Fatalf("with XPRA_EDGE_REQUIRE_PEERS=1: fatal %q, skip %q", r.fatal, r.skip)
	}
}

// TestClusterEndsWithTheTestProcess: a test process killed with SIGKILL
// (no cleanup runs) leaves no PostgreSQL running.
func TestClusterEndsWithTheTestProcess(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") != "" {
		c := Start(t)
		fmt.Printf("PORT %d\n", c.Port)
		time.Sleep(time.Minute)
		return
	}
	Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterEndsWithTheTestProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PORT "); ok {
				port <- p
				break
			}
		}
		close(port)
		_, _ = io.Copy(io.Discard, out)
	}()
	var p string
	select {
	case p = <-port:
	case <-time.After(90 * time.Second):
		t.Fatal("the child did not start a cluster")
	}
	if p == "" {
		t.Fatal("the child ended without a cluster")
	}
	addr := net.JoinHostPort("127.0.0.1", p)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		t.Fatalf("the child's cluster does not listen: %v", err)
	} else {
		c.Close()
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return // gone
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("PostgreSQL still listens 20 s after its test process was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
