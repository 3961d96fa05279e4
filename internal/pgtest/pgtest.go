// Package pgtest runs a private PostgreSQL cluster for tests (package
// pgserver, which does the work without "testing": Debian's server
// binaries, initdb in a temporary directory, a server on a free loopback
// port, a password-protected superuser and a database; never the system
// service, never anything but 127.0.0.1).
//
// A missing PostgreSQL skips the test, or fails it when
// XPRA_EDGE_REQUIRE_PEERS=1. The cluster can be stopped and started
// again on the same port and data mid-test (to prove behaviour while the
// database is down); t.Cleanup stops it and removes everything.
//
// It imports "testing": only tests may use it.
package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/xpra-edge/xpra-edge/internal/pgtest/pgserver"
)

// EnvRequirePeers turns a missing PostgreSQL into a failure (see
// internal/xpratest).
const EnvRequirePeers = "XPRA_EDGE_REQUIRE_PEERS"

// Superuser and Database are the role and database every cluster has.
const (
	Superuser = pgserver.Superuser
	Database  = pgserver.Database
)

// Cluster is one running (or stopped) private PostgreSQL server of a
// test: a pgserver.Cluster whose failures fail the test.
type Cluster struct {
	*pgserver.Cluster
	t testing.TB
}

// Require skips the test (or fails it under XPRA_EDGE_REQUIRE_PEERS=1)
// when the PostgreSQL server binaries are missing or cannot be run.
func Require(t testing.TB) {
	t.Helper()
	err := pgserver.Available()
	if err == nil {
		return
	}
	if os.Getenv(EnvRequirePeers) == "1" {
		t.Fatal(err.Error())
		return
	}
	t.Skip(err.Error())
}

// Start makes and starts a cluster that lives until the end of the test.
func Start(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	c, err := pgserver.New(context.Background())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(c.Close)
	return &Cluster{Cluster: c, t: t}
}

// CreateDatabase makes another empty database in the cluster and returns
// its DSN (for tests that want a fresh schema without a new cluster).
func (c *Cluster) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	dsn, err := c.Cluster.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Start starts a stopped cluster again on the same port and data and
// waits until it accepts connections. It fails the test if it cannot.
func (c *Cluster) Start() {
	c.t.Helper()
	if err := c.Cluster.Start(); err != nil {
		c.t.Fatalf("pgtest: Start: %v", err)
	}
}

// TerminateBackends ends every other connection to the cluster's
// databases (as pg_terminate_backend: the server closes them), e.g. to
// prove what a client does when its connection dies. It returns how many
// were ended.
func (c *Cluster) TerminateBackends(t testing.TB, where string) int {
	t.Helper()
	n, err := c.Cluster.TerminateBackends(context.Background(), where)
	if err != nil {
		t.Fatalf("pgtest: terminate backends: %v", err)
	}
	return n
}
