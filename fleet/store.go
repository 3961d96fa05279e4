package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/xpra-edge/xpra-edge/auth"
)

// ErrUnavailable is wrapped by every error that comes from not reaching
// the database (refused or lost connections, timeouts). It is
// auth.ErrUnavailable, so the edge tells it apart from a wrong password.
var ErrUnavailable = auth.ErrUnavailable

// EnvPassword is the environment variable that holds the database
// password when it is not in the DSN (cmd/xpra-edge reads it).
const EnvPassword = "XPRA_EDGE_PG_PASSWORD"

// Defaults for Options.
const (
	DefaultMaxConns       = 16
	DefaultConnectTimeout = 5 * time.Second
	// lockQueryTimeout bounds the small bookkeeping queries (unlocks).
	lockQueryTimeout = 5 * time.Second
)

// Options configures Open.
type Options struct {
	// DSN is a libpq URL or key/value string: postgres://user@host:5432/db.
	DSN string
	// Password, when not empty, replaces the DSN's password (from the
	// --postgres-password source or XPRA_EDGE_PG_PASSWORD). Never logged.
	Password string
	// Node names this node in the fleet (application_name, schema
	// records, session rows); default: the host name.
	Node string
	// Logger gets the store's log; nil discards it.
	Logger *slog.Logger
	// MaxConns bounds the pool (default DefaultMaxConns).
	MaxConns int32
	// ConnectTimeout bounds one connection attempt (default
	// DefaultConnectTimeout).
	ConnectTimeout time.Duration
}

// Store is one node's handle on the fleet database; safe for concurrent
// use.
type Store struct {
	pool   *pgxpool.Pool
	node   string
	log    *slog.Logger
	dsn    string // redacted, for logs
	redact redactor
}

// Open connects to the database and applies the binary's migrations. Its
// errors never hold the password; an unreachable database gives an error
// wrapping ErrUnavailable, a database migrated by a newer binary one
// wrapping ErrSchemaNewer.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.DSN == "" {
		return nil, errors.New("fleet: no PostgreSQL DSN")
	}
	red := newRedactor(o.Password, dsnPassword(o.DSN), dsnSSLPassword(o.DSN))
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, red.err(fmt.Errorf("fleet: invalid PostgreSQL DSN %s: %w", RedactDSN(o.DSN), err))
	}
	if o.Password != "" {
		cfg.ConnConfig.Password = o.Password
	}
	red = newRedactor(o.Password, dsnPassword(o.DSN), dsnSSLPassword(o.DSN), cfg.ConnConfig.Password)
	node := o.Node
	if node == "" {
		node = defaultNode()
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.MaxConns = DefaultMaxConns
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	if o.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = applicationName(node)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, red.err(fmt.Errorf("fleet: %w", err))
	}
	s := &Store{pool: pool, node: node, log: log, dsn: RedactDSN(o.DSN), redact: red}
	applied, err := migrate(ctx, pool, node)
	if err != nil {
		pool.Close()
		return nil, red.err(fmt.Errorf("fleet: %s: %w", s.dsn, err))
	}
	if len(applied) > 0 {
		log.Info("fleet schema migrated", "database", s.dsn, "applied", applied, "version", SchemaVersion())
	}
	log.Info("fleet database open", "database", s.dsn, "node", node, "schema", SchemaVersion())
	return s, nil
}

// Pool is the connection pool, for the other parts of the fleet
// (tlsconf's storage, the session registry).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Node is this node's name in the fleet.
func (s *Store) Node() string { return s.node }

// Logger is the store's logger.
func (s *Store) Logger() *slog.Logger { return s.log }

// RedactedDSN is the DSN without its password, for logs.
func (s *Store) RedactedDSN() string { return s.dsn }

// Err makes a database error safe to log and classifies it: no secret in
// its text, and ErrUnavailable wrapped when the database was not reached.
// nil stays nil.
func (s *Store) Err(err error) error {
	if err == nil {
		return nil
	}
	return s.redact.err(unavailable(err))
}

// closeWait bounds Close: it fits in what a shutdown leaves after the
// registry's last batch (edge.RegistryStop's 150 ms before the bound).
const closeWait = 100 * time.Millisecond

// Close closes the pool, waiting at most closeWait: connections in use
// are closed when they are returned, and pgx waits up to 15 s for the
// server to see a broken connection closed, which a database the network
// no longer reaches never does (a process stopping would wait that long
// past its shutdown bound). What is left finishes in the background.
func (s *Store) Close() {
	done := make(chan struct{})
	go func() { defer close(done); s.pool.Close() }()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("fleet: the database connections are not all closed yet; leaving them to close in the background", "database", s.dsn, "waited", closeWait)
	}
}

// unavailable wraps ErrUnavailable around errors that mean the database
// was not reached or the connection was lost; SQL errors the server
// answered with stay as they are.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !IsUnavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// IsUnavailable reports whether err means the database could not be
// reached or did not answer: a server shutting down or refusing
// connections (SQLSTATE class 08, 57P01-57P03), and every error that is
// not an answer of the server (connect failures, lost connections,
// timeouts, a closed pool). An SQL error the server answered with, no
// rows, a scan error, or a context the caller cancelled, is not.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return len(pe.Code) == 5 && pe.Code[:2] == "08" || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	// Answers about the result, not the connection.
	var scanErr pgx.ScanArgError
	if errors.Is(err, pgx.ErrNoRows) || errors.Is(err, pgx.ErrTooManyRows) || errors.As(err, &scanErr) {
		return false
	}
	return !errors.Is(err, context.Canceled)
}
