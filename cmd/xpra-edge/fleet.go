package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/fleet"
	"github.com/xpra-edge/xpra-edge/internal/config"
)

// fleetOpenTimeout bounds connecting and migrating at start.
const fleetOpenTimeout = 30 * time.Second

// openFleet opens the fleet database of [store], or returns nil when the
// node is standalone. The password comes from $XPRA_EDGE_PG_PASSWORD
// when set (it replaces the DSN's).
func openFleet(ctx context.Context, s config.Store, log *slog.Logger) (*fleet.Store, error) {
	if !s.Enabled() {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, fleetOpenTimeout)
	defer cancel()
	st, err := fleet.Open(ctx, fleet.Options{DSN: s.Postgres, Password: os.Getenv(fleet.EnvPassword), Node: s.Node, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("store.postgres: %w", err)
	}
	return st, nil
}

// offlineUsers stands for the fleet's users table where the database is
// not contacted (check-config).
type offlineUsers struct{}

func (offlineUsers) UserRows(context.Context, string) ([]auth.UserRow, error) {
	return nil, fmt.Errorf("%w: not connected", fleet.ErrUnavailable)
}

const pgUsage = `usage:
 xpra-edge pg DSN|--config=FILE create
 xpra-edge pg DSN|--config=FILE list
 xpra-edge pg DSN|--config=FILE add [--hash[=argon2id|bcrypt]] username password [uid, gid, displays, env_options, session_options]
 xpra-edge pg DSN|--config=FILE remove username [password]
 xpra-edge pg DSN|--config=FILE authenticate username password
 xpra-edge pg DSN|--config=FILE import FILE.sdb
The password may be left out of DSN and given in $XPRA_EDGE_PG_PASSWORD.
`

// runPG runs `xpra-edge pg DSN VERB ...`: the verbs of `xpra-edge sqlite`
// against the fleet's users table, plus import of an xpra sqlite file.
// DSN may be --config=FILE to use the file's [store] postgres.
func runPG(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "invalid number of arguments")
		fmt.Fprint(stderr, pgUsage)
		return 1
	}
	store := config.Store{Postgres: args[0]}
	if f, ok := strings.CutPrefix(args[0], "--config="); ok {
		cfg, err := config.Load(f)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		if !cfg.Store.Enabled() {
			fmt.Fprintf(stderr, "error: %s has no [store] postgres\n", f)
			return 1
		}
		store = cfg.Store
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := openFleet(ctx, store, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	defer st.Close()
	if args[1] == "import" {
		if len(args) != 3 {
			fmt.Fprintln(stderr, "invalid number of arguments")
			fmt.Fprint(stderr, pgUsage)
			return 1
		}
		res, err := st.Users().ImportSQLite(ctx, args[2])
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "imported %s: %s\n", args[2], res)
		return 0
	}
	return auth.UsersCLI(ctx, st.Users(), pgUsage, args[1:], stdout, stderr)
}
