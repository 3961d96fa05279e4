package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requirePeers() bool { return os.Getenv("XPRA_EDGE_REQUIRE_PEERS") == "1" }

// buildEdge builds the real xpra-edge binary for the smoke run, unless
// XPRA_EDGE_BIN names one already built.
func buildEdge(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("XPRA_EDGE_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "xpra-edge")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/xpra-edge")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/xpra-edge: %v\n%s", err, out)
	}
	return bin
}

// TestSmoke runs the bench's smoke mode against the real xpra-edge binary
// (and Debian's xpra proxy when installed) and fails on any checksum error
// or any scenario that did not run.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke bench skipped in -short mode")
	}
	cfg := SmokeConfig()
	cfg.EdgeBin = buildEdge(t)
	cfg.Out = t.TempDir()
	haveXpra := true
	if _, err := os.Stat(cfg.XpraBin); err != nil {
		if requirePeers() {
			t.Fatalf("xpra is required (XPRA_EDGE_REQUIRE_PEERS=1): %v", err)
		}
		haveXpra = false
	}
	if os.Geteuid() != 0 && haveXpra {
		// the xpra proxy maps the bench user to nobody, which needs root
		if requirePeers() {
			t.Fatal("the xpra proxy scenario needs root (XPRA_EDGE_REQUIRE_PEERS=1)")
		}
		haveXpra = false
	}
	if !haveXpra {
		cfg.Scenarios = []string{"direct", "edge-tcp", "edge-tls", "edge-ws", "edge-wss"}
	}
	// the -base path runs too (with the same binary), so that it cannot rot
	cfg.BaseBin = cfg.EdgeBin
	cfg.Scenarios = append(cfg.Scenarios, "base-wss")
	var log strings.Builder
	cfg.Log = &log
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("\n%s", table.String())
	if c := rep.Corrupt(); c > 0 {
		t.Fatalf("%d sessions received corrupt data", c)
	}
	if rep.ServerErrors > 0 {
		t.Errorf("synthetic server: %d errors, last %s", rep.ServerErrors, rep.ServerLastErr)
	}
	for _, name := range cfg.Scenarios {
		r := rep.result(name)
		if r == nil {
			t.Errorf("%s did not run\n%s", name, log.String())
			continue
		}
		for _, th := range []Throughput{r.Throughput1, r.ThroughputN, r.ThroughputSmall} {
			if name != "xpra-proxy" && th.LoginFailed > 0 {
				t.Errorf("%s: %d logins failed: %s", name, th.LoginFailed, th.LoginError)
			}
			if th.Errors > 0 || th.Bytes == 0 || th.Packets == 0 {
				t.Errorf("%s: throughput run with %d sessions: %d errors, %d bytes (%s)", name, th.Sessions, th.Errors, th.Bytes, th.FirstError)
			}
		}
		if r.Latency.Pings != cfg.Pings || r.Latency.P50us <= 0 || r.Latency.P99us < r.Latency.P50us {
			t.Errorf("%s: latency %+v", name, r.Latency)
		}
		if r.Setup.OK == 0 || r.Setup.Failed > 0 {
			t.Errorf("%s: setup %+v", name, r.Setup)
		}
		if name == "direct" {
			continue
		}
		want := cfg.Idle
		if name == "xpra-proxy" {
			want = cfg.XpraIdle
		}
		if r.Idle.Sessions != want || r.Idle.RSSAfter <= 0 {
			t.Errorf("%s: idle %+v", name, r.Idle)
		}
		if r.CPUPerGB < 0 {
			t.Errorf("%s: negative proxy CPU", name)
		}
	}
	b, err := os.ReadFile(filepath.Join(cfg.Out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != len(cfg.Scenarios) {
		t.Fatalf("results.json: %v, %d results", err, len(back.Results))
	}
}
