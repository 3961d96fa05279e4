package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
	"github.com/xpra-edge/xpra-edge/internal/pgtest/pgserver"
)

// Result is everything measured for one scenario.
type Result struct {
	Name        string     `json:"name"`
	Skipped     string     `json:"skipped,omitempty"`
	Latency     Latency    `json:"latency"`
	Throughput1 Throughput `json:"throughput_1"`
	ThroughputN Throughput `json:"throughput_n"`
	// ThroughputSmall streams draws of at most 2 KiB on n sessions: the
	// per-packet cost of the relay.
	ThroughputSmall Throughput `json:"throughput_small_n"`
	Setup           Setup      `json:"setup"`
	Idle            Idle       `json:"idle"`
	// CPUPerGB is the proxy's CPU seconds per GB relayed, over both
	// throughput runs.
	CPUPerGB float64 `json:"proxy_cpu_seconds_per_gb,omitempty"`
}

// Check is one target of issue #7.
type Check struct {
	Name  string   `json:"name"`
	Goal  string   `json:"goal"`
	Value *float64 `json:"value"` // null: not measured
	Met   *bool    `json:"met"`
}

// Report is the whole run.
type Report struct {
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"`
	Smoke     bool      `json:"smoke"`
	CPUs      int       `json:"cpus"`
	GoVersion string    `json:"go_version"`
	Kernel    string    `json:"kernel,omitempty"`
	NoFile    uint64    `json:"rlimit_nofile"`
	Sessions  int       `json:"sessions_n"`
	Duration  string    `json:"stream_duration"`
	Results   []*Result `json:"results"`
	Checks    []Check   `json:"checks"`
	// ServerErrors are failures seen by the synthetic server.
	ServerErrors int64 `json:"server_errors"`
	// LoadBefore and LoadAfter are the 1-minute load averages around the
	// measures: above the number of CPUs, something else was running.
	LoadBefore    float64 `json:"loadavg_before"`
	LoadAfter     float64 `json:"loadavg_after"`
	ServerLastErr string  `json:"server_last_error,omitempty"`
}

func (r *Report) result(name string) *Result {
	for _, x := range r.Results {
		if x.Name == name && x.Skipped == "" {
			return x
		}
	}
	return nil
}

// Corrupt is the number of sessions that received wrong data.
func (r *Report) Corrupt() int {
	n := 0
	for _, x := range r.Results {
		n += x.Throughput1.Corrupt + x.ThroughputN.Corrupt + x.ThroughputSmall.Corrupt
	}
	return n
}

// Run runs every configured scenario and returns the report. Each proxy is
// started fresh for its scenario and stopped after it.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	t0 := time.Now()
	logf := func(format string, a ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "bench: %5.1fs "+format+"\n", append([]any{time.Since(t0).Seconds()}, a...)...)
		}
	}
	rep := &Report{Started: time.Now(), Smoke: cfg.Smoke, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Sessions: cfg.Sessions, Duration: cfg.Duration.String()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		rep.Kernel = strings.TrimSpace(string(b))
	}
	rep.NoFile = raiseNoFile(uint64(3*max(cfg.Idle, cfg.XpraIdle) + 2048))
	if need := uint64(3*cfg.Idle + 2048); rep.NoFile < need {
		// this process holds both ends of every session, and xpra-edge
		// (which inherits the limit) a client, a backend and a control
		// socket per session
		logf("warning: RLIMIT_NOFILE is %d and cannot be raised to %d: fewer than %d idle sessions will open", rep.NoFile, need, cfg.Idle)
	}
	if cfg.Out != "" {
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp("", "xpra-edge-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	pool := benchpeer.NewPool()
	srv, ln, err := serveBench(pool, false)
	if err != nil {
		return nil, err
	}
	defer func() { _ = ln.Close(); srv.Close() }()
	backend := ln.Addr().String()
	// the bridged scenario's backend: strict like xpra 3.1.3 (no
	// rencodeplus), for the 6.x-style client
	srv3, ln3, err := serveBench(pool, true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = ln3.Close(); srv3.Close() }()
	backend3 := ln3.Addr().String()

	// every proxy is started first (each its own process, directory,
	// database and port), then each measure runs across all scenarios in
	// turn, so that load from elsewhere on the machine hits them alike
	var runs []*scenarioRun
	defer func() {
		for _, r := range runs {
			r.stop()
		}
	}()
	for _, name := range cfg.Scenarios {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		res := &Result{Name: name}
		rep.Results = append(rep.Results, res)
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return rep, err
		}
		be := backend
		if name == "edge-bridge" {
			be = backend3
		}
		t, stop, skipped := startTarget(ctx, cfg, name, dir, be, pool)
		if skipped != "" {
			res.Skipped = skipped
			logf("%s: skipped: %s", name, skipped)
			continue
		}
		runs = append(runs, &scenarioRun{t: t, res: res, stop: stop})
	}
	rep.LoadBefore = loadAvg()
	if err := measureAll(ctx, cfg, runs, pool, logf); err != nil {
		return rep, err
	}
	rep.LoadAfter = loadAvg()
	for _, r := range runs {
		r.stop()
	}
	runs = nil
	st, st3 := srv.Stats(), srv3.Stats()
	rep.ServerErrors, rep.ServerLastErr = st.Errors+st3.Errors, st.LastErr
	if st3.LastErr != "" {
		rep.ServerLastErr = st3.LastErr
	}
	if d := rep.result("direct"); d != nil {
		for _, x := range rep.Results {
			if x.Name != "direct" && x.Skipped == "" && x.Latency.Pings > 0 && d.Latency.Pings > 0 {
				x.Latency.AddedP50us = x.Latency.P50us - d.Latency.P50us
				x.Latency.AddedP99us = x.Latency.P99us - d.Latency.P99us
			}
		}
	}
	rep.Checks = checks(rep)
	rep.Seconds = time.Since(rep.Started).Seconds()
	if cfg.Out != "" {
		if err := rep.save(cfg.Out); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// scenarioRun is a started target and its results.
type scenarioRun struct {
	t    *target
	res  *Result
	stop func()
}

// startTarget starts what the named scenario needs; skipped says why it
// cannot run.
func startTarget(ctx context.Context, cfg Config, name, dir, backend string, pool *benchpeer.Pool) (t *target, stop func(), skipped string) {
	switch name {
	case "direct":
		return directTarget(backend), func() {}, ""
	case "edge-tcp", "edge-tls", "edge-ws", "edge-wss", "base-tcp", "base-tls", "base-ws", "base-wss":
		bin := cfg.EdgeBin
		if strings.HasPrefix(name, "base-") {
			if cfg.BaseBin == "" {
				return nil, nil, "no -base binary given"
			}
			bin = cfg.BaseBin
		}
		e, err := startEdge(ctx, bin, dir, backend, nil)
		if err != nil {
			return nil, nil, "xpra-edge did not start: " + err.Error()
		}
		var once sync.Once
		return e.target(name, name[strings.IndexByte(name, '-')+1:]), func() {
			once.Do(func() { e.p.stop(5 * time.Second); keepLog(cfg.Out, e.p, name) })
		}, ""
	case "edge-tcp-fleet":
		// edge-tcp with the proxy a fleet node: [store] postgres on a
		// private cluster started here, users from the postgres auth
		// module, every session admitted into and ended in the registry
		if err := pgserver.Available(); err != nil {
			return nil, nil, "cannot start PostgreSQL for the fleet node: " + err.Error()
		}
		pg, err := pgserver.New(ctx)
		if err != nil {
			return nil, nil, "PostgreSQL did not start: " + err.Error()
		}
		e, err := startEdge(ctx, cfg.EdgeBin, dir, backend, &fleetDB{dsn: pg.DSNWithoutPassword(), password: pg.Password, node: "bench"})
		if err != nil {
			pg.Close()
			return nil, nil, "xpra-edge did not start: " + err.Error()
		}
		var once sync.Once
		return e.target(name, "tcp"), func() {
			once.Do(func() { e.p.stop(5 * time.Second); keepLog(cfg.Out, e.p, name); pg.Close() })
		}, ""
	case "edge-bridge":
		// the 6.x-style client (rencodeplus only) through xpra-edge to a
		// 3.1.3-style server (no rencodeplus): xpra-edge bridges, every
		// packet decoded and encoded again
		e, err := startEdge(ctx, cfg.EdgeBin, dir, backend, nil)
		if err != nil {
			return nil, nil, "xpra-edge did not start: " + err.Error()
		}
		var once sync.Once
		t := e.target(name, "tcp")
		t.gen = benchpeer.Gen6
		return t, func() {
			once.Do(func() { e.p.stop(5 * time.Second); keepLog(cfg.Out, e.p, name) })
		}, ""
	case "edge-tcp6":
		// the 6.x-style client (rencodeplus only) through xpra-edge,
		// which relays it unchanged
		e, err := startEdge(ctx, cfg.EdgeBin, dir, backend, nil)
		if err != nil {
			return nil, nil, "xpra-edge did not start: " + err.Error()
		}
		var once sync.Once
		t := e.target(name, "tcp")
		t.gen = benchpeer.Gen6
		return t, func() {
			once.Do(func() { e.p.stop(5 * time.Second); keepLog(cfg.Out, e.p, name) })
		}, ""
	case "xpra6-proxy":
		if cfg.Xpra6Bin == "" {
			return nil, nil, "no xpra6 binary given"
		}
		if _, err := os.Stat(cfg.Xpra6Bin); err != nil {
			return nil, nil, "xpra 6.x is not installed (" + cfg.Xpra6Bin + ", built by scripts/install-xpra6.sh)"
		}
		x, err := startXpra6(ctx, cfg.Xpra6Bin, dir, backend)
		if err != nil {
			return nil, nil, "xpra6 proxy did not start: " + err.Error()
		}
		var once sync.Once
		stop := func() {
			once.Do(func() { x.p.stop(5 * time.Second); keepLog(cfg.Out, x.p, name) })
		}
		t := x.target(name, benchpeer.Gen6)
		if why := probeXpra6(ctx, t, x, pool); why != "" {
			stop()
			return nil, nil, why
		}
		return t, stop, ""
	case "xpra-proxy":
		if cfg.XpraBin == "" {
			return nil, nil, "no xpra binary given"
		}
		if _, err := os.Stat(cfg.XpraBin); err != nil {
			return nil, nil, "xpra is not installed"
		}
		x, err := startXpra(ctx, cfg.XpraBin, dir, backend)
		if err != nil {
			return nil, nil, "xpra proxy did not start: " + err.Error()
		}
		var once sync.Once
		return x.target(name, benchpeer.Gen3), func() {
			once.Do(func() { x.p.stop(5 * time.Second); keepLog(cfg.Out, x.p, name) })
		}, ""
	}
	return nil, nil, "unknown scenario"
}

// measureAll runs each measure on every scenario in turn.
func measureAll(ctx context.Context, cfg Config, runs []*scenarioRun, pool *benchpeer.Pool, logf func(string, ...any)) error {
	// idle memory first, while the proxies' heaps have not been grown by
	// the streams
	for _, r := range runs {
		t := r.t
		if t.root == 0 {
			continue
		}
		n := cfg.Idle
		if isXpraProxy(t.name) {
			n = cfg.XpraIdle
		}
		logf("%s: %d idle sessions", t.name, n)
		heapTo := ""
		if cfg.Profile && cfg.Out != "" {
			heapTo = filepath.Join(cfg.Out, t.name+"-idle.heap.pprof")
		}
		r.res.Idle = measureIdle(ctx, t, pool, n, cfg.IdleTime, heapTo)
		logf("%s: %d idle sessions, %.1f KiB RSS each, %.1f KiB heap each %s", t.name, r.res.Idle.Sessions,
			r.res.Idle.RSSPerSession/1024, r.res.Idle.HeapPerSession/1024, r.res.Idle.FirstError)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for _, r := range runs {
		t := r.t
		settle(t)
		logf("%s: latency (%d pings)", t.name, cfg.Pings)
		r.res.Latency = measureLatency(ctx, t, pool, cfg.Pings)
		logf("%s: p50 %.0f us p99 %.0f us %s", t.name, r.res.Latency.P50us, r.res.Latency.P99us, r.res.Latency.Error)
	}
	prof := func(t *target, run string) string {
		if !cfg.Profile || cfg.Out == "" {
			return ""
		}
		return filepath.Join(cfg.Out, t.name+"-"+run+".cpu.pprof")
	}
	// each throughput run is repeated and the best kept: other work on
	// the machine only ever makes a run slower
	rate := func(x Throughput) float64 {
		if x.Seconds <= 0 {
			return 0
		}
		return float64(x.Bytes) / x.Seconds
	}
	throughput := func(label string, n int, small bool, get func(*Result) *Throughput) error {
		for i := 0; i < max(1, cfg.Repeat); i++ {
			for _, r := range runs {
				t := r.t
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if i > 0 && get(r.res).Errors > 0 {
					continue
				}
				settle(t)
				logf("%s: throughput, %s, %s (%d/%d)", t.name, label, cfg.Duration, i+1, max(1, cfg.Repeat))
				p := ""
				if i == 0 {
					p = prof(t, label)
				}
				x := measureThroughput(ctx, t, pool, n, cfg.Duration, small, p)
				logf("%s: %.0f MB/s %.0f packets/s %s", t.name, x.MBps, x.PacketsPerSec, x.FirstError)
				if i == 0 || x.Errors > 0 || rate(x) > rate(*get(r.res)) {
					*get(r.res) = x
				}
			}
		}
		return nil
	}
	if err := throughput("1-session", 1, false, func(r *Result) *Throughput { return &r.Throughput1 }); err != nil {
		return err
	}
	if err := throughput(fmt.Sprintf("%d-sessions", cfg.Sessions), cfg.Sessions, false, func(r *Result) *Throughput { return &r.ThroughputN }); err != nil {
		return err
	}
	if err := throughput(fmt.Sprintf("small-packets-%d-sessions", cfg.Sessions), cfg.Sessions, true, func(r *Result) *Throughput { return &r.ThroughputSmall }); err != nil {
		return err
	}
	for _, r := range runs {
		res := r.res
		if gb := float64(res.Throughput1.Bytes+res.ThroughputN.Bytes) / 1e9; r.t.root != 0 && gb > 0 {
			res.CPUPerGB = (res.Throughput1.ProxyCPU + res.ThroughputN.ProxyCPU) / gb
		}
	}
	for _, r := range runs {
		t := r.t
		settle(t)
		logf("%s: session setup, %d at a time, up to %d or %s", t.name, cfg.SetupConc, cfg.SetupMax, cfg.SetupTime)
		r.res.Setup = measureSetup(ctx, t, pool, cfg.SetupConc, cfg.SetupMax, cfg.SetupTime, prof(t, "setup"))
		logf("%s: %.0f setups/s (%d ok, %d failed) %s", t.name, r.res.Setup.PerSec, r.res.Setup.OK, r.res.Setup.Failed, r.res.Setup.FirstError)
	}
	return ctx.Err()
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}

// keepLog copies a proxy's log next to the results.
func keepLog(out string, p *proc, name string) {
	if out == "" {
		return
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return
	}
	src, err := os.Open(p.log.Name())
	if err != nil {
		return
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(out, name+".log"))
	if err != nil {
		return
	}
	defer dst.Close()
	_, _ = io.Copy(dst, src)
}

func (r *Report) save(out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "results.txt"))
	if err != nil {
		return err
	}
	r.WriteTable(f)
	return f.Close()
}
