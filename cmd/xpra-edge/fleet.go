package main

import (
	"context"
	"errors"
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

// fleetCLI takes --config=FILE and --postgres=DSN (either form) from args
// and opens the fleet database they name, for list --fleet and stop.
func fleetCLI(ctx context.Context, args []string) (*fleet.Store, config.Store, []string, error) {
	var cfgFile, dsn string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, v, has := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || (name != "config" && name != "postgres") {
			rest = append(rest, a)
			continue
		}
		if !has {
			if i+1 >= len(args) {
				return nil, config.Store{}, nil, fmt.Errorf("--%s needs a value", name)
			}
			i++
			v = args[i]
		}
		if name == "config" {
			cfgFile = v
		} else {
			dsn = v
		}
	}
	var sc config.Store
	if cfgFile != "" {
		cfg, err := config.Load(cfgFile)
		if err != nil {
			return nil, sc, nil, err
		}
		sc = cfg.Store
	}
	if dsn != "" {
		sc.Postgres = dsn
	}
	if !sc.Enabled() {
		return nil, sc, nil, errors.New("no fleet database: give --config=FILE (with [store] postgres) or --postgres=DSN")
	}
	ctx, cancel := context.WithTimeout(ctx, fleetOpenTimeout)
	defer cancel()
	st, err := fleet.Open(ctx, fleet.Options{DSN: sc.Postgres, Password: os.Getenv(fleet.EnvPassword), Node: "cli", MaxConns: 2,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, sc, nil, err
	}
	return st, sc, rest, nil
}

// runListFleet is `xpra-edge list --fleet`: every node and live session
// of the fleet (with --all, ended ones too).
func runListFleet(args []string, stdout, stderr io.Writer) int {
	st, sc, rest, err := fleetCLI(context.Background(), args)
	all := false
	if err == nil {
		for _, a := range rest {
			switch a {
			case "--fleet":
			case "--all":
				all = true
			default:
				err = fmt.Errorf("unexpected argument %q", a)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge list --fleet: %v\n", err)
		if st != nil {
			st.Close()
		}
		return 2
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, sessions, err := fleet.ListLive(ctx, st, all)
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge list --fleet: %v\n", err)
		return 1
	}
	dead := sc.DeadAfter.Std()
	if dead == 0 {
		dead = fleet.DefaultDeadAfter
	}
	fmt.Fprint(stdout, fleet.FormatSessions(nodes, sessions, dead))
	return 0
}

// fleetStopWait bounds how long `xpra-edge stop` waits for a fleet
// session to be recorded ended.
const fleetStopWait = 5 * time.Second

// runStopFleet is `xpra-edge stop UUID|:proxy-ID@node`: whichever node
// holds the session ends it ("socket request").
func runStopFleet(target string, args []string, stdout, stderr io.Writer) int {
	st, _, rest, err := fleetCLI(context.Background(), args)
	if err == nil && len(rest) > 0 {
		st.Close()
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge stop: %v\n", err)
		return 2
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), fleetStopWait+5*time.Second)
	defer cancel()
	start := time.Now()
	row, err := fleet.RequestStop(ctx, st, target, fleetStopWait)
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge stop: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s (uuid %s) stopped on node %s in %v: %s\n", row.Name(), row.UUID, row.Node,
		time.Since(start).Round(time.Millisecond), row.Reason)
	return 0
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
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, pgUsage)
		return 0
	}
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
