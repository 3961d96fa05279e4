// Package pgserver runs a private PostgreSQL cluster: Debian's server
// binaries (scripts/install-test-deps.sh installs them), a data directory
// made by initdb in a temporary directory, a server on a free loopback
// port with its unix socket in that directory, a password-protected
// superuser and a database. It is never the system service and never
// listens on anything but 127.0.0.1. As root the server runs as the
// postgres system user (PostgreSQL refuses to run as root).
//
// It is the part of internal/pgtest that does not need "testing", so that
// cmd/xpra-edge-bench can start the same cluster for its fleet scenario;
// every error is returned, nothing is logged.
package pgserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where Debian's postgresql-15 installs initdb and postgres.
// PGTEST_BINDIR overrides it.
var BinDir = "/usr/lib/postgresql/15/bin"

// Superuser and Database are the role and database every cluster has.
const (
	Superuser = "edge"
	Database  = "edge"
)

// readyTimeout bounds initdb and every start of the server.
const readyTimeout = 60 * time.Second

// Cluster is one running (or stopped) private PostgreSQL server.
type Cluster struct {
	// Port is the loopback TCP port; it stays the same across Stop/Start.
	Port int
	// Password is the superuser's password.
	Password string
	// Dir is the root of the cluster's files: data/, run/ (socket), log.
	Dir string

	dataDir string
	sockDir string
	logPath string
	uid     int
	gid     int

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// BinaryDir returns the server binaries' directory.
func BinaryDir() string {
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		return d
	}
	return BinDir
}

// Missing lists what is needed to run a cluster and is not there (empty:
// nothing).
func Missing() []string {
	var missing []string
	for _, b := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(BinaryDir(), b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Join(BinaryDir(), b))
		}
	}
	if len(missing) == 0 && os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			missing = append(missing, "the postgres system user (postgres refuses to run as root)")
		}
	}
	return missing
}

// Available says why a cluster cannot be started here, or nil.
func Available() error {
	if m := Missing(); len(m) > 0 {
		return errors.New("missing PostgreSQL: " + strings.Join(m, ", ") + " (run scripts/install-test-deps.sh as root)")
	}
	return nil
}

// New makes and starts a cluster with its database. The caller must
// Close it. ctx bounds initdb.
func New(ctx context.Context) (c *Cluster, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	c = &Cluster{uid: -1, gid: -1, Password: randomPassword()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgserver: %w", err)
		}
		c.uid, _ = strconv.Atoi(u.Uid)
		c.gid, _ = strconv.Atoi(u.Gid)
	}
	// A short path (the socket path is limited to 107 bytes) that the
	// postgres user can traverse.
	root, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	c.Dir = root
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	if err := os.Chmod(root, 0o755); err != nil {
		return c, fmt.Errorf("pgserver: %w", err)
	}
	c.dataDir = filepath.Join(root, "data")
	c.sockDir = filepath.Join(root, "run")
	c.logPath = filepath.Join(root, "postgres.log")
	for _, d := range []string{c.dataDir, c.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return c, fmt.Errorf("pgserver: %w", err)
		}
	}
	pwFile := filepath.Join(root, "pwfile")
	if err := os.WriteFile(pwFile, []byte(c.Password+"\n"), 0o600); err != nil {
		return c, fmt.Errorf("pgserver: %w", err)
	}
	if c.uid >= 0 {
		for _, p := range []string{c.dataDir, c.sockDir, pwFile} {
			if err := os.Chown(p, c.uid, c.gid); err != nil {
				return c, fmt.Errorf("pgserver: %w", err)
			}
		}
	}
	ictx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	initdb := c.command(ictx, filepath.Join(BinaryDir(), "initdb"),
		"-D", c.dataDir, "-U", Superuser, "--pwfile="+pwFile, "--auth=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return c, fmt.Errorf("pgserver: initdb: %w\n%s", err, out)
	}
	_ = os.Remove(pwFile)

	// A free port is only probably free when postgres binds it: retry
	// a few times with another one.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if c.Port, lastErr = freePort(); lastErr != nil {
			continue
		}
		if lastErr = c.Start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return c, fmt.Errorf("pgserver: %w", lastErr)
	}
	if err := c.Admin(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+Database)
		return err
	}); err != nil {
		return c, fmt.Errorf("pgserver: create database: %w", err)
	}
	return c, nil
}

// Close stops the server and removes its files.
func (c *Cluster) Close() {
	c.Stop()
	if c.Dir != "" {
		_ = os.RemoveAll(c.Dir)
	}
}

// Admin runs f on a superuser connection to the "postgres" database,
// bounded by 30 s.
func (c *Cluster) Admin(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSNFor("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return f(ctx, conn)
}

// command runs a server binary as the postgres user (when root) with a
// clean environment.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C", "HOME=" + c.Dir, "TZ=UTC"}
	cmd.Dir = c.Dir
	// SIGQUIT is PostgreSQL's immediate shutdown: a process that dies
	// (a test's -timeout panic, kill -9) takes its cluster with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if c.uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)}
	}
	return cmd
}

// DSN is a URL for the cluster's database with the password in it.
func (c *Cluster) DSN() string { return c.DSNFor(Database) }

// DSNWithoutPassword is DSN without the password (give Password some
// other way, as an operator would with XPRA_EDGE_PG_PASSWORD).
func (c *Cluster) DSNWithoutPassword() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, c.Port, Database)
}

// DSNFor is a URL, with the password, for the database db.
func (c *Cluster) DSNFor(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(Superuser, c.Password), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// CreateDatabase makes another empty database in the cluster and returns
// its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	err := c.Admin(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return c.DSNFor(name), nil
}

// Running reports whether the server process is alive.
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// Start starts a stopped cluster (again) on its port and data and waits,
// at most 60 s, until it accepts connections.
func (c *Cluster) Start() error {
	if c.Running() {
		return errors.New("already running")
	}
	cmd := c.command(context.Background(), filepath.Join(BinaryDir(), "postgres"),
		"-D", c.dataDir,
		"-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.sockDir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=16MB",
		"-c", "log_min_messages=warning",
	)
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.exited, c.exitErr = cmd, exited, nil
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		close(exited)
	}()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			c.mu.Lock()
			exitErr := c.exitErr
			c.mu.Unlock()
			return fmt.Errorf("postgres exited while starting (%v): %s", exitErr, c.LogTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DSNFor("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("postgres not ready after %s (%v): %s", readyTimeout, err, c.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down ("fast" mode: clients are disconnected) and
// waits for it to exit; it is a no-op on a stopped cluster.
func (c *Cluster) Stop() { c.shutdown(syscall.SIGINT) }

// Crash stops the server as a power cut would for its clients: an
// immediate shutdown (SIGQUIT: no checkpoint, clients cut at once; the
// next Start runs crash recovery). It waits for the server to exit.
func (c *Cluster) Crash() { c.shutdown(syscall.SIGQUIT) }

// shutdown signals a running server and waits up to 20 s for it to exit,
// then kills it.
func (c *Cluster) shutdown(sig syscall.Signal) {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		c.kill()
	}
}

// kill ends the server's whole process group at once.
func (c *Cluster) kill() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
}

// TerminateBackends ends every other client connection to the cluster's
// databases (as pg_terminate_backend: the server closes them) that
// matches the SQL condition where (empty: all), and returns how many.
func (c *Cluster) TerminateBackends(ctx context.Context, where string) (int, error) {
	q := "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
	if where != "" {
		q += " AND (" + where + ")"
	}
	q += ") x"
	var n int
	err := c.Admin(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, q).Scan(&n)
	})
	return n, err
}

// LogTail is the end of the server's log, for failure messages.
func (c *Cluster) LogTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails on Linux
	return fmt.Sprintf("pg-%x", b)
}
