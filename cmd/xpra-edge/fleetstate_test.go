package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

// The fleet's live-state options are checked, and list --fleet / stop
// of a fleet target say what they need without a database; with one they
// list the nodes and refuse an unknown session.
func TestFleetStateCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[store]\npostgres = \"postgres://u@127.0.0.1:1/db\"\nheartbeat = \"10s\"\ndead_after = \"15s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs := runT(t, 1, "check-config", bad)
	if !strings.Contains(out+errs, "store.dead_after: must be at least twice store.heartbeat") {
		t.Fatalf("check-config: %s%s", out, errs)
	}
	_, errs = runT(t, 2, "list", "--fleet")
	if !strings.Contains(errs, "no fleet database") {
		t.Fatalf("list --fleet: %s", errs)
	}
	_, errs = runT(t, 2, "stop", ":proxy-3@edge2")
	if !strings.Contains(errs, "no fleet database") {
		t.Fatalf("stop: %s", errs)
	}

	c := pgtest.Start(t)
	t.Setenv("XPRA_EDGE_PG_PASSWORD", c.Password)
	dsn := c.DSNWithoutPassword()
	out, _ = runT(t, 0, "list", "--fleet", "--postgres="+dsn)
	if !strings.Contains(out, "No sessions in the fleet") {
		t.Fatalf("list --fleet on an empty fleet: %s", out)
	}
	_, errs = runT(t, 1, "stop", "0123456789abcdef0123456789abcdef", "--postgres", dsn)
	if !strings.Contains(errs, "no live session in the fleet") {
		t.Fatalf("stop of an unknown uuid: %s", errs)
	}
	if strings.Contains(out+errs, c.Password) {
		t.Fatal("the password was printed")
	}
}
