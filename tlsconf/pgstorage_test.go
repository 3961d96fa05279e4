package tlsconf

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/xpra-edge/xpra-edge/fleet"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

// openFleet opens a fleet store (schema migrated) on c as node.
func openFleet(t *testing.T, dsn, node string) *fleet.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := fleet.Open(ctx, fleet.Options{DSN: dsn, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPGStorageConformance checks every Storage method against a real
// PostgreSQL with FileStorage's meaning: overwrite, missing keys as
// fs.ErrNotExist, directories as key prefixes (Exists, Stat, List,
// recursive Delete), LIKE metacharacters in keys taken literally, and
// one node's writes read by another.
func TestPGStorageConformance(t *testing.T) {
	c := pgtest.Start(t)
	a := newPGStorage(openFleet(t, c.DSN(), "a").Pool(), testLogger(t))
	b := newPGStorage(openFleet(t, c.DSN(), "b").Pool(), testLogger(t))
	ctx := tctx(t)

	if _, err := a.Load(ctx, "certificates/x/y.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v", err)
	}
	if _, err := a.Stat(ctx, "certificates"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: %v", err)
	}
	if _, err := a.List(ctx, "certificates", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List of a missing directory: %v", err)
	}
	if a.Exists(ctx, "certificates") {
		t.Fatal("Exists on an empty store")
	}
	if err := a.Delete(ctx, "nothing/here"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	before := time.Now().Add(-time.Minute)
	keys := map[string]string{
		"acme/ca/users/me/me.json":           "account",
		"acme/ca/users/me/me.key":            "account key",
		"certificates/ca/a.test/a.test.crt":  "cert a",
		"certificates/ca/a.test/a.test.key":  "key a",
		"certificates/ca/a_test/a_test.crt":  "underscore",
		"certificates/ca/b%test/b%test.crt":  "percent",
		"certificates/ca/c.test/c.test.json": "meta c",
		"last_clean.json":                    "top",
	}
	for k, v := range keys {
		if err := a.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite, read back from the other node.
	if err := a.Store(ctx, "certificates/ca/a.test/a.test.crt", []byte("cert a v2")); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Load(ctx, "certificates/ca/a.test/a.test.crt"); err != nil || string(v) != "cert a v2" {
		t.Fatalf("Load on node b: %q, %v", v, err)
	}
	if err := a.Store(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Load(ctx, "empty"); err != nil || len(v) != 0 {
		t.Fatalf("empty value: %q, %v", v, err)
	}
	// Stat of a key and of a directory.
	ki, err := b.Stat(ctx, "certificates/ca/a.test/a.test.crt")
	if err != nil || !ki.IsTerminal || ki.Size != int64(len("cert a v2")) || ki.Modified.Before(before) || ki.Key != "certificates/ca/a.test/a.test.crt" {
		t.Fatalf("Stat of a key: %+v, %v", ki, err)
	}
	ki, err = b.Stat(ctx, "certificates/ca")
	if err != nil || ki.IsTerminal {
		t.Fatalf("Stat of a directory: %+v, %v", ki, err)
	}
	// Exists: keys and directories, not partial names.
	for k, want := range map[string]bool{
		"certificates": true, "certificates/": true, "certificates/ca/a.test": true,
		"certificates/ca/a.test/a.test.crt": true, "certificates/c": false, "certificates/ca/a": false,
		"certificates/ca/aXtest": false, "certificates/ca/b": false,
	} {
		if got := b.Exists(ctx, k); got != want {
			t.Errorf("Exists(%q) = %v, want %v", k, got, want)
		}
	}
	// List: direct entries, then everything below.
	got, err := b.List(ctx, "certificates/ca", false)
	want := []string{"certificates/ca/a.test", "certificates/ca/a_test", "certificates/ca/b%test", "certificates/ca/c.test"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List non-recursive: %v, %v; want %v", got, err, want)
	}
	got, err = b.List(ctx, "acme", true)
	want = []string{"acme/ca", "acme/ca/users", "acme/ca/users/me", "acme/ca/users/me/me.json", "acme/ca/users/me/me.key"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List recursive: %v, %v; want %v", got, err, want)
	}
	got, err = b.List(ctx, "", false)
	want = []string{"acme", "certificates", "empty", "last_clean.json"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List of the root: %v, %v; want %v", got, err, want)
	}
	// Delete: a key, then a directory with everything below it; the
	// underscore and percent names are not patterns.
	if err := b.Delete(ctx, "certificates/ca/a_test"); err != nil {
		t.Fatal(err)
	}
	if !a.Exists(ctx, "certificates/ca/a.test/a.test.key") || a.Exists(ctx, "certificates/ca/a_test/a_test.crt") {
		t.Fatal("Delete of a_test removed the wrong keys")
	}
	if err := b.Delete(ctx, "certificates/ca/b%"); err != nil {
		t.Fatal(err)
	}
	if !a.Exists(ctx, "certificates/ca/b%test/b%test.crt") {
		t.Fatal("Delete of a percent prefix removed a longer key")
	}
	if err := b.Delete(ctx, "certificates"); err != nil {
		t.Fatal(err)
	}
	if a.Exists(ctx, "certificates") || !a.Exists(ctx, "acme/ca/users/me/me.key") || !a.Exists(ctx, "last_clean.json") {
		t.Fatal("recursive Delete removed too much or too little")
	}
	if _, err := a.Load(ctx, "certificates/ca/c.test/c.test.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load after Delete: %v", err)
	}
}

// TestPGStorageLockWaits: a lock held by one node makes another wait
// until it is released, then it gets it; a waiter gives up when its
// context ends; Unlock of a lock not held is an error.
func TestPGStorageLockWaits(t *testing.T) {
	c := pgtest.Start(t)
	a := newPGStorage(openFleet(t, c.DSN(), "a").Pool(), testLogger(t))
	b := newPGStorage(openFleet(t, c.DSN(), "b").Pool(), testLogger(t))
	ctx := tctx(t)
	if err := a.Lock(ctx, "issue_cert_x.test"); err != nil {
		t.Fatal(err)
	}
	// Another name is independent.
	if err := b.Lock(ctx, "issue_cert_y.test"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "issue_cert_y.test"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_x.test") }()
	select {
	case err := <-got:
		t.Fatalf("node b got a lock node a holds: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	// A waiter with a short context gives up.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := a.Lock(short, "issue_cert_x.test"); err == nil {
		t.Fatal("a second Lock of a held name succeeded")
	} else if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Lock ignored its context for %v", d)
	}
	released := time.Now()
	if err := a.Unlock(ctx, "issue_cert_x.test"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node b got the lock %v after node a released it", time.Since(released))
	case <-time.After(5 * time.Second):
		t.Fatal("node b did not get the lock after node a released it")
	}
	if err := b.Unlock(ctx, "issue_cert_x.test"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "issue_cert_x.test"); err == nil {
		t.Fatal("Unlock of a lock not held succeeded")
	}
	// Locks do not pin pool connections: every hijacked connection is
	// closed by Unlock (or by the failed Lock). The server ends a closed
	// connection's backend shortly after the client has gone, so a backend
	// may still be listed for a moment on a loaded machine; one left open
	// stays listed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := c.Admin(ctx, func(ctx context.Context, conn *pgx.Conn) error {
			return conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()
				AND backend_type = 'client backend' AND query LIKE '%pg_advisory_lock%'`).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lock connections left open", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPGStorageLockReleasedWhenConnectionKilled: the server ending the
// holder's connection releases its lock.
func TestPGStorageLockReleasedWhenConnectionKilled(t *testing.T) {
	c := pgtest.Start(t)
	a := newPGStorage(openFleet(t, c.DSN(), "a").Pool(), testLogger(t))
	b := newPGStorage(openFleet(t, c.DSN(), "b").Pool(), testLogger(t))
	ctx := tctx(t)
	if err := a.Lock(ctx, "issue_cert_z.test"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_z.test") }()
	select {
	case err := <-got:
		t.Fatalf("node b got a held lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// The holder is the session that has the lock granted.
	if n := c.TerminateBackends(t, "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"); n != 1 {
		t.Fatalf("terminated %d holders", n)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not released when its holder's connection died")
	}
	_ = a.Unlock(ctx, "issue_cert_z.test") // its connection is gone; must not hang
	if err := b.Unlock(ctx, "issue_cert_z.test"); err != nil {
		t.Fatal(err)
	}
}

// TestPGStorageLockReleasedWhenNodeKilled: a process holding a lock is
// killed with SIGKILL mid-"order"; another node gets the lock at once
// (no stale-lock timeout to wait out).
func TestPGStorageLockReleasedWhenNodeKilled(t *testing.T) {
	if dsn := os.Getenv("PGSTORAGE_HOLDER_DSN"); dsn != "" {
		lockAndHang(t, dsn)
		return
	}
	c := pgtest.Start(t)
	b := newPGStorage(openFleet(t, c.DSN(), "b").Pool(), testLogger(t))
	ctx := tctx(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPGStorageLockReleasedWhenNodeKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PGSTORAGE_HOLDER_DSN="+c.DSN())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	locked := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "LOCKED") {
				locked <- true
				return
			}
		}
		locked <- false
	}()
	select {
	case ok := <-locked:
		if !ok {
			t.Fatal("the holder process ended without taking the lock")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the holder process did not take the lock")
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if err := b.Lock(short, "issue_cert_k.test"); err == nil {
		t.Fatal("node b got the lock while the holder lives")
	}
	cancel()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	within, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Lock(within, "issue_cert_k.test"); err != nil {
		t.Fatalf("lock of a killed node not released: %v", err)
	}
	t.Logf("lock of the killed node taken over %v after SIGKILL", time.Since(killed))
	if err := b.Unlock(ctx, "issue_cert_k.test"); err != nil {
		t.Fatal(err)
	}
}

// lockAndHang is the killed node: it takes the lock, says so, and waits.
func lockAndHang(t *testing.T, dsn string) {
	s := newPGStorage(openFleet(t, dsn, "holder").Pool(), nil)
	if err := s.Lock(context.Background(), "issue_cert_k.test"); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("LOCKED\n")
	time.Sleep(60 * time.Second)
}

// TestPGStorageCancelledLockLeavesNoWaiter: a Lock whose context ends
// while another node holds the lock leaves no backend waiting for it on
// the server (pgx cancels the statement on the server when it gives up a
// connection; were the wait left queued, it would hold a connection slot
// as long as the holder keeps the lock and be granted the lock ahead of
// the live waiters queued after it).
func TestPGStorageCancelledLockLeavesNoWaiter(t *testing.T) {
	c := pgtest.Start(t)
	a := newPGStorage(openFleet(t, c.DSN(), "a").Pool(), testLogger(t))
	b := newPGStorage(openFleet(t, c.DSN(), "b").Pool(), testLogger(t))
	ctx := tctx(t)
	if err := a.Lock(ctx, "issue_cert_w.test"); err != nil {
		t.Fatal(err)
	}
	waiting := func() int {
		var n int
		if err := c.Admin(ctx, func(ctx context.Context, conn *pgx.Conn) error {
			return conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := b.Lock(short, "issue_cert_w.test"); err == nil {
		t.Fatal("b got a lock a holds")
	}
	gaveUp := time.Now()
	deadline := gaveUp.Add(5 * time.Second)
	for n := waiting(); n != 0; n = waiting() {
		if time.Now().After(deadline) {
			t.Fatalf("%d lock waits left on the server 5 s after the Lock gave up", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the server's wait was gone %v after the Lock gave up", time.Since(gaveUp))
	if err := a.Unlock(ctx, "issue_cert_w.test"); err != nil {
		t.Fatal(err)
	}
}
