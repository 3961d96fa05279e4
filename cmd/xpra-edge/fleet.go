package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

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
