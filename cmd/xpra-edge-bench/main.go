// Command xpra-edge-bench measures xpra-edge against direct connections,
// Debian's `xpra proxy` (3.1.3) and xpra 6.x's (with a 6.x-style client): relay throughput for 1 and many sessions,
// added ping latency, authenticated session setup rate and latency, memory
// per idle session and proxy CPU per GB; edge-tcp-fleet is edge-tcp with
// the proxy a fleet node on a private PostgreSQL cluster the bench starts
// (package pgserver: Debian's server binaries, a temporary directory, a
// loopback port), to show what fleet mode costs. It plays both ends itself (package
// benchpeer), checks every byte it receives, starts the proxies on
// loopback ports in a temporary directory and kills them when done.
//
// It must not touch anything outside its temporary and output
// directories, nor talk to any address but loopback.
//
//	xpra-edge-bench [-out DIR] [-smoke] [-idle N | -idle-10k] [-profile] [-edge BIN] [-base BIN] [-xpra BIN] [-xpra6 BIN]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/pgtest/pgserver"
)

// Config is one bench run.
type Config struct {
	Out       string        // directory for results.json and results.txt; empty: none
	EdgeBin   string        // xpra-edge binary
	BaseBin   string        // an earlier xpra-edge for the base-* scenarios (before/after in one run)
	XpraBin   string        // Debian's xpra; empty or missing: that scenario is skipped
	Xpra6Bin  string        // xpra 6.x (the xpra6 wrapper); empty or missing: xpra6-proxy is skipped
	Scenarios []string      // subset of direct, edge-{tcp,tls,ws,wss}, edge-tcp-fleet, base-{tcp,tls,ws,wss}, xpra-proxy, edge-tcp6, xpra6-proxy, edge-bridge
	Sessions  int           // concurrent sessions of the many-session throughput run
	Duration  time.Duration // streaming time of each throughput run
	Repeat    int           // runs of each throughput measure; the best is kept
	Pings     int           // timed pings for latency
	SetupMax  int           // setups tried at most per scenario
	SetupTime time.Duration // and for at most this long
	SetupConc int           // concurrent logins
	Idle      int           // idle sessions for the memory measure
	XpraIdle  int           // idle sessions through xpra proxy, 3.1.3 or 6.x (one process each)
	IdleTime  time.Duration // bound on opening the idle sessions
	Smoke     bool
	// Profile saves a CPU profile of xpra-edge (pprof, via its admin
	// listener) for each throughput run into Out.
	Profile bool
	Log     io.Writer // progress; nil: discard
}

// Xpra6Bin is where scripts/install-xpra6.sh installs its xpra 6.x wrapper.
const Xpra6Bin = "/usr/local/bin/xpra6"

// DefaultConfig is the full run of `make bench`: a few minutes on 2 cores.
func DefaultConfig() Config {
	return Config{
		EdgeBin:   "./bin/xpra-edge",
		XpraBin:   "/usr/bin/xpra",
		Xpra6Bin:  Xpra6Bin,
		Scenarios: []string{"direct", "edge-tcp", "edge-tcp-fleet", "edge-tls", "edge-ws", "edge-wss", "xpra-proxy", "edge-tcp6", "xpra6-proxy", "edge-bridge"},
		Sessions:  64,
		Duration:  3 * time.Second,
		Repeat:    2,
		Pings:     2000,
		SetupMax:  5000,
		SetupTime: 4 * time.Second,
		SetupConc: 8,
		Idle:      1000,
		XpraIdle:  100,
		IdleTime:  90 * time.Second,
	}
}

// SmokeConfig is a run of a few seconds that still goes through every
// scenario and checks every byte.
func SmokeConfig() Config {
	c := DefaultConfig()
	c.Smoke = true
	c.Sessions = 4
	c.Duration = 400 * time.Millisecond
	c.Repeat = 1
	c.Pings = 50
	c.SetupMax = 20
	c.SetupTime = time.Second
	c.SetupConc = 4
	c.Idle = 20
	c.XpraIdle = 3
	c.IdleTime = 20 * time.Second
	return c
}

func main() {
	cfg := DefaultConfig()
	smoke := flag.Bool("smoke", false, "a run of a few seconds (make test)")
	out := flag.String("out", "", "write results.json and results.txt to `DIR`")
	edge := flag.String("edge", cfg.EdgeBin, "xpra-edge `binary`")
	xpra := flag.String("xpra", cfg.XpraBin, "Debian xpra `binary` (empty: skip the xpra proxy scenario)")
	xpra6 := flag.String("xpra6", cfg.Xpra6Bin, "xpra 6.x `binary` (empty: skip the xpra6-proxy scenario)")
	scen := flag.String("scenarios", "", "comma-separated `list` of direct, edge-tcp, edge-tcp-fleet, edge-tls, edge-ws, edge-wss, base-tcp, base-tls, base-ws, base-wss, xpra-proxy, edge-tcp6, xpra6-proxy, edge-bridge (default: direct, edge-*, xpra-proxy, edge-tcp6, xpra6-proxy, edge-bridge, and base-* with -base; edge-tcp-fleet starts a private PostgreSQL from "+pgserver.BinDir+")")
	base := flag.String("base", "", "an earlier xpra-edge `binary`: adds base-tcp/tls/ws/wss scenarios, measured side by side with edge-*")
	idle := flag.Int("idle", 0, "idle sessions for the memory measure (default 1000)")
	idle10k := flag.Bool("idle-10k", false, "measure memory at 10,000 idle sessions")
	xidle := flag.Int("xpra-idle", 0, "idle sessions through xpra proxy (3.1.3 and 6.x), one process each (default 100)")
	sessions := flag.Int("sessions", 0, "concurrent sessions for the many-session throughput run (default 64)")
	dur := flag.Duration("duration", 0, "streaming time of each throughput run (default 3s)")
	repeat := flag.Int("repeat", 0, "runs of each throughput measure, the best kept (default 2)")
	prof := flag.Bool("profile", false, "save CPU profiles of xpra-edge's throughput runs into -out")
	flag.Parse()
	if *smoke {
		cfg = SmokeConfig()
	}
	cfg.Out, cfg.EdgeBin, cfg.XpraBin, cfg.Xpra6Bin = *out, *edge, *xpra, *xpra6
	cfg.BaseBin = *base
	if *scen != "" {
		cfg.Scenarios = strings.Split(*scen, ",")
	} else if cfg.BaseBin != "" {
		cfg.Scenarios = append(cfg.Scenarios, "base-tcp", "base-tls", "base-ws", "base-wss")
	}
	cfg.Profile = *prof
	if *idle > 0 {
		cfg.Idle = *idle
	}
	if *idle10k {
		cfg.Idle = 10000
		cfg.IdleTime = 5 * time.Minute
	}
	if *xidle > 0 {
		cfg.XpraIdle = *xidle
	}
	if *sessions > 0 {
		cfg.Sessions = *sessions
	}
	if *dur > 0 {
		cfg.Duration = *dur
	}
	if *repeat > 0 {
		cfg.Repeat = *repeat
	}
	cfg.Log = os.Stderr
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if rep != nil {
		rep.WriteTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xpra-edge-bench:", err)
		os.Exit(1)
	}
	if rep.Corrupt() > 0 {
		fmt.Fprintln(os.Stderr, "xpra-edge-bench: corrupt data received")
		os.Exit(2)
	}
}
