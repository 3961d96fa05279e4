package tlsconf

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgStorage is a certmagic.Storage in the fleet's PostgreSQL (table
// edge_cert_data, made by package fleet's migration 2), so that every node
// of a fleet serves the certificates one node obtained, and answers the
// ACME challenges of an order another node placed.
//
// Locks are session-level advisory locks, each held on a connection of
// its own taken out of the pool for as long as the lock is held:
//   - a node that dies mid-order (crash, kill -9, OOM) loses its TCP
//     connections, and the server ends their sessions and releases their
//     locks at once: no stale lock to wait out, no expiry to tune and no
//     lease to refresh (certmagic's file locks need a refresh goroutine and
//     a staleness guess);
//   - a node that vanishes from the network keeps its locks until the
//     server's TCP keepalive gives up on the connection
//     (tcp_keepalives_idle/interval/count, docs/FLEET.md);
//   - the lock never outlives the connection, and locks do not depend on
//     clocks. If a held lock's connection is lost (a network cut), the
//     lock is gone: the watchdog logs it, and certmagic's own re-check of
//     storage after taking a lock keeps a second order harmless.
//
// Lock waits are bounded by the caller's context (certmagic cancels it).
type pgStorage struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu    sync.Mutex
	locks map[string][]*pgLock // held locks by name (normally one)
}

var _ certmagic.Storage = (*pgStorage)(nil)

// pgLock is one held advisory lock and its connection.
type pgLock struct {
	key  int64
	mu   sync.Mutex // the connection is used by the watchdog and Unlock
	conn *pgx.Conn
	stop chan struct{}
	done chan struct{}
}

// pgLockWatch is how often a held lock's connection is checked.
const pgLockWatch = 15 * time.Second

// pgQueryTimeout bounds a storage query when the caller's context has no
// deadline of its own.
const pgQueryTimeout = 30 * time.Second

func newPGStorage(pool *pgxpool.Pool, log *slog.Logger) *pgStorage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &pgStorage{pool: pool, log: log, locks: map[string][]*pgLock{}}
}

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, pgQueryTimeout)
}

// cleanKey is certmagic's key without leading or trailing slashes.
func cleanKey(key string) string { return strings.Trim(key, "/") }

// likePrefix is a LIKE pattern matching every key below dir.
func likePrefix(dir string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	if dir == "" {
		return "%"
	}
	return r.Replace(dir) + "/%"
}

// Store implements certmagic.Storage.
func (s *pgStorage) Store(ctx context.Context, key string, value []byte) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if value == nil {
		value = []byte{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO edge_cert_data (key, value, modified) VALUES ($1, $2, now())
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, modified = EXCLUDED.modified`, cleanKey(key), value)
	if err != nil {
		return fmt.Errorf("certificate storage: store %s: %w", key, err)
	}
	return nil
}

// Load implements certmagic.Storage; a missing key is fs.ErrNotExist.
func (s *pgStorage) Load(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT value FROM edge_cert_data WHERE key = $1", cleanKey(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("certificate storage: %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("certificate storage: load %s: %w", key, err)
	}
	return v, nil
}

// Delete implements certmagic.Storage: the key and every key below it.
func (s *pgStorage) Delete(ctx context.Context, key string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	k := cleanKey(key)
	q, args := "DELETE FROM edge_cert_data WHERE key = $1 OR key LIKE $2", []any{k, likePrefix(k)}
	if k == "" {
		q, args = "DELETE FROM edge_cert_data", nil
	}
	if _, err := s.pool.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("certificate storage: delete %s: %w", key, err)
	}
	return nil
}

// Exists implements certmagic.Storage: a key, or a directory (a prefix
// of keys).
func (s *pgStorage) Exists(ctx context.Context, key string) bool {
	ctx, cancel := bounded(ctx)
	defer cancel()
	k := cleanKey(key)
	var ok bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM edge_cert_data WHERE key = $1 OR key LIKE $2)", k, likePrefix(k)).Scan(&ok)
	return err == nil && ok
}

// List implements certmagic.Storage as FileStorage does: the entries
// directly in dir (keys and directories); with recursive, every key and
// directory below it.
func (s *pgStorage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	d := cleanKey(dir)
	rows, err := s.pool.Query(ctx, "SELECT key FROM edge_cert_data WHERE key LIKE $1 ORDER BY key", likePrefix(d))
	if err != nil {
		return nil, fmt.Errorf("certificate storage: list %s: %w", dir, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("certificate storage: list %s: %w", dir, err)
	}
	if len(keys) == 0 {
		// FileStorage: listing a missing directory is an error.
		if !s.Exists(ctx, d) {
			return nil, fmt.Errorf("certificate storage: %s: %w", dir, fs.ErrNotExist)
		}
		return nil, nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, k := range keys {
		rel := k
		if d != "" {
			rel = strings.TrimPrefix(k, d+"/")
		}
		parts := strings.Split(rel, "/")
		if !recursive {
			add(path.Join(d, parts[0]))
			continue
		}
		for i := range parts {
			add(path.Join(d, path.Join(parts[:i+1]...)))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Stat implements certmagic.Storage.
func (s *pgStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	k := cleanKey(key)
	var mod time.Time
	var size int64
	err := s.pool.QueryRow(ctx, "SELECT modified, octet_length(value) FROM edge_cert_data WHERE key = $1", k).Scan(&mod, &size)
	switch {
	case err == nil:
		return certmagic.KeyInfo{Key: key, Modified: mod, Size: size, IsTerminal: true}, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return certmagic.KeyInfo{}, fmt.Errorf("certificate storage: stat %s: %w", key, err)
	}
	err = s.pool.QueryRow(ctx, "SELECT max(modified) FROM edge_cert_data WHERE key LIKE $1 HAVING count(*) > 0", likePrefix(k)).Scan(&mod)
	if errors.Is(err, pgx.ErrNoRows) {
		return certmagic.KeyInfo{}, fmt.Errorf("certificate storage: %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certificate storage: stat %s: %w", key, err)
	}
	return certmagic.KeyInfo{Key: key, Modified: mod, IsTerminal: false}, nil
}

// lockKey maps a lock name to an advisory lock key (a 64-bit hash in a
// namespace of its own; a collision only makes two names share a lock).
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("xpra-edge certmagic lock\x00"))
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// Lock implements certmagic.Locker: it waits, bounded by ctx, for the
// advisory lock of name on a connection of its own.
func (s *pgStorage) Lock(ctx context.Context, name string) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("certificate storage: lock %s: %w", name, err)
	}
	conn := pc.Hijack() // ours until Unlock closes it
	key := lockKey(name)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		_ = conn.Close(context.Background())
		return fmt.Errorf("certificate storage: lock %s: %w", name, err)
	}
	l := &pgLock{key: key, conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	s.locks[name] = append(s.locks[name], l)
	s.mu.Unlock()
	go s.watch(name, l)
	return nil
}

// watch pings a held lock's connection; a lost one means the lock is
// gone, which is logged (the order goes on; see pgStorage).
func (s *pgStorage) watch(name string, l *pgLock) {
	defer close(l.done)
	t := time.NewTicker(pgLockWatch)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := l.conn.Ping(ctx)
		cancel()
		l.mu.Unlock()
		if err != nil {
			s.log.Warn("certificate storage: the connection holding a lock was lost; the lock is released", "lock", name, "err", err)
			return
		}
	}
}

// Unlock implements certmagic.Locker: it releases the lock and closes
// its connection (which releases it in any case).
func (s *pgStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	held := s.locks[name]
	if len(held) == 0 {
		s.mu.Unlock()
		return fmt.Errorf("certificate storage: unlock %s: not locked", name)
	}
	l := held[0]
	if len(held) == 1 {
		delete(s.locks, name)
	} else {
		s.locks[name] = held[1:]
	}
	s.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := l.conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", l.key)
	// Closing ends the session: the lock is released even if the unlock
	// query failed.
	cerr := l.conn.Close(uctx)
	if err != nil && cerr != nil {
		return fmt.Errorf("certificate storage: unlock %s: %w", name, err)
	}
	return nil
}

// String names the storage in certmagic's logs.
func (s *pgStorage) String() string { return "PostgreSQL (edge_cert_data)" }
