package main

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/benchpeer"
)

// Throughput is one streaming run.
type Throughput struct {
	Sessions      int     `json:"sessions"`
	Small         bool    `json:"small_packets"`
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	Packets       int64   `json:"packets"`
	MBps          float64 `json:"mb_per_s"`
	PacketsPerSec float64 `json:"packets_per_s"`
	ProxyCPU      float64 `json:"proxy_cpu_seconds"`
	// BenchCPU is this process's CPU time (both synthetic ends) and
	// MachineBusy the share of all cores busy, over the streaming time.
	BenchCPU    float64 `json:"bench_cpu_seconds"`
	MachineBusy float64 `json:"machine_busy"`
	Corrupt     int     `json:"corrupt"`
	// LoginFailed sessions never started streaming (the proxy did not
	// let them in in time); they do not invalidate the run.
	LoginFailed int    `json:"login_failed"`
	LoginError  string `json:"login_error,omitempty"`
	Errors      int    `json:"errors"`
	FirstError  string `json:"first_error,omitempty"`
}

// Latency is ping round trips through one session.
type Latency struct {
	Pings      int     `json:"pings"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	MeanUs     float64 `json:"mean_us"`
	AddedP50us float64 `json:"added_p50_us"`
	AddedP99us float64 `json:"added_p99_us"`
	Error      string  `json:"error,omitempty"`
}

// Setup is the authenticated session setup rate.
type Setup struct {
	Concurrency int     `json:"concurrency"`
	OK          int     `json:"ok"`
	Failed      int     `json:"failed"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"per_s"`
	// P50ms and P99ms are the time from dialing to a relayed session
	// (the backend's hello received) of the successful setups.
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	FirstError string  `json:"first_error,omitempty"`
}

// Idle is the memory cost of idle relayed sessions.
type Idle struct {
	Sessions       int     `json:"sessions"`
	Wanted         int     `json:"wanted"`
	Processes      int     `json:"processes"`
	RSSBefore      int64   `json:"rss_before"`
	RSSAfter       int64   `json:"rss_after"`
	PSSBefore      int64   `json:"pss_before"`
	PSSAfter       int64   `json:"pss_after"`
	HeapBefore     int64   `json:"heap_before,omitempty"`
	HeapAfter      int64   `json:"heap_after,omitempty"`
	RSSPerSession  float64 `json:"rss_per_session"`
	PSSPerSession  float64 `json:"pss_per_session"`
	HeapPerSession float64 `json:"heap_per_session,omitempty"`
	SetupSeconds   float64 `json:"setup_seconds"`
	FirstError     string  `json:"first_error,omitempty"`
}

var seedCounter atomic.Uint64

func nextSeed() uint64 { return seedCounter.Add(1) * 0x9e3779b97f4a7c15 }

// login dials t and logs in with workload w.
func login(ctx context.Context, t *target, pool *benchpeer.Pool, w benchpeer.Workload) (*benchpeer.Session, error) {
	c, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	s, err := benchpeer.Login(c, pool, benchpeer.LoginOptions{Gen: t.gen, Username: t.user, Password: t.pass, AllowXOR: t.allowXOR, Workload: w, Timeout: 20 * time.Second})
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return s, nil
}

// measureThroughput logs n sessions in, then streams on all of them for d,
// sampling the proxy's CPU over the streaming time only.
func measureThroughput(ctx context.Context, t *target, pool *benchpeer.Pool, n int, d time.Duration, small bool, profileTo string) Throughput {
	r := Throughput{Sessions: n, Small: small}
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		r.Errors++
		if errors.Is(err, benchpeer.ErrCorrupt) {
			r.Corrupt++
		}
		if r.FirstError == "" {
			r.FirstError = err.Error()
		}
	}
	sessions := make([]*benchpeer.Session, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			w := benchpeer.Workload{Mode: benchpeer.ModeStream, Seed: nextSeed()}
			if small {
				w.Small, w.Window = true, 128
			}
			s, err := login(ctx, t, pool, w)
			if err != nil {
				mu.Lock()
				r.LoginFailed++
				if r.LoginError == "" {
					r.LoginError = err.Error()
				}
				mu.Unlock()
				return
			}
			sessions[i] = s
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range sessions {
			if s != nil {
				_ = s.Close()
			}
		}
	}()
	cpu0 := 0.0
	if t.root != 0 {
		cpu0 = cpuSeconds(t.root)
	}
	self0 := selfCPU()
	busy0, total0 := machineTicks()
	start := time.Now()
	deadline := start.Add(d)
	profDone := make(chan struct{})
	if profileTo != "" && t.profile != nil {
		go func() {
			defer close(profDone)
			if b, err := t.profile(d); err == nil {
				_ = os.WriteFile(profileTo, b, 0o644)
			}
		}()
	} else {
		close(profDone)
	}
	defer func() { <-profDone }()
	var bytes, packets atomic.Int64
	for _, s := range sessions {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.Stream(deadline)
			bytes.Add(st.Bytes)
			packets.Add(int64(st.Packets))
			if err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	if t.root != 0 {
		r.ProxyCPU = cpuSeconds(t.root) - cpu0
	}
	r.BenchCPU = selfCPU() - self0
	if busy1, total1 := machineTicks(); total1 > total0 {
		r.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	r.Bytes = bytes.Load()
	r.Packets = packets.Load()
	r.MBps = float64(r.Bytes) / 1e6 / r.Seconds
	r.PacketsPerSec = float64(r.Packets) / r.Seconds
	return r
}

// measureLatency runs warm-up pings, then n timed ones, through one idle
// session.
func measureLatency(ctx context.Context, t *target, pool *benchpeer.Pool, n int) Latency {
	l := Latency{}
	s, err := login(ctx, t, pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
	if err != nil {
		l.Error = err.Error()
		return l
	}
	defer s.Close()
	if _, err := s.Ping(min(100, n), 30*time.Second); err != nil {
		l.Error = err.Error()
		return l
	}
	rtts, err := s.Ping(n, 60*time.Second)
	if err != nil {
		l.Error = err.Error()
	}
	if len(rtts) == 0 {
		return l
	}
	slices.Sort(rtts)
	var sum time.Duration
	for _, d := range rtts {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	l.Pings = len(rtts)
	l.P50us = us(rtts[len(rtts)/2])
	l.P99us = us(rtts[min(len(rtts)-1, len(rtts)*99/100)])
	l.MeanUs = us(sum / time.Duration(len(rtts)))
	return l
}

// measureSetup logs sessions in and closes them, conc at a time, until
// maxN have been tried or d has passed.
func measureSetup(ctx context.Context, t *target, pool *benchpeer.Pool, conc, maxN int, d time.Duration, profileTo string) Setup {
	r := Setup{Concurrency: conc}
	profDone := make(chan struct{})
	if profileTo != "" && t.profile != nil {
		go func() {
			defer close(profDone)
			if b, err := t.profile(d); err == nil {
				_ = os.WriteFile(profileTo, b, 0o644)
			}
		}()
	} else {
		close(profDone)
	}
	defer func() { <-profDone }()
	var mu sync.Mutex
	var next atomic.Int64
	var took []time.Duration
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(maxN) && time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				s, err := login(ctx, t, pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
				dt := time.Since(t0)
				mu.Lock()
				if err != nil {
					r.Failed++
					if r.FirstError == "" {
						r.FirstError = err.Error()
					}
				} else {
					r.OK++
					took = append(took, dt)
				}
				mu.Unlock()
				if s != nil {
					_ = s.Close()
				}
			}
		}()
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.PerSec = float64(r.OK) / r.Seconds
	if len(took) > 0 {
		slices.Sort(took)
		at := func(q float64) float64 {
			return float64(took[min(len(took)-1, int(q*float64(len(took))))].Microseconds()) / 1000
		}
		r.P50ms, r.P99ms = at(0.50), at(0.99)
	}
	return r
}

// measureIdle opens n idle sessions and reports the proxy's memory growth
// per session.
func measureIdle(ctx context.Context, t *target, pool *benchpeer.Pool, n int, budget time.Duration, heapTo string) Idle {
	r := Idle{Wanted: n}
	if t.root == 0 {
		return r
	}
	settle(t)
	runtime.GC()
	time.Sleep(time.Second)
	before := treeMemory(t.root)
	r.RSSBefore, r.PSSBefore = before.RSS, before.PSS
	if t.heap != nil {
		r.HeapBefore, _ = t.heap()
	}
	var mu sync.Mutex
	var sessions []*benchpeer.Session
	defer func() {
		for _, s := range sessions {
			_ = s.Close()
		}
	}()
	var next atomic.Int64
	deadline := time.Now().Add(budget)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
				s, err := login(ctx, t, pool, benchpeer.Workload{Mode: benchpeer.ModeIdle})
				mu.Lock()
				if err != nil {
					if r.FirstError == "" {
						r.FirstError = err.Error()
					}
				} else {
					sessions = append(sessions, s)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.SetupSeconds = time.Since(start).Seconds()
	r.Sessions = len(sessions)
	// let the proxy settle (handshake buffers freed, GC run)
	time.Sleep(2 * time.Second)
	after := treeMemory(t.root)
	r.RSSAfter, r.PSSAfter, r.Processes = after.RSS, after.PSS, after.Processes
	if t.heap != nil {
		if h, ok := t.heap(); ok {
			r.HeapAfter = h
		}
	}
	if heapTo != "" && t.heapProfile != nil {
		if b, err := t.heapProfile(); err == nil {
			_ = os.WriteFile(heapTo, b, 0o644)
		}
	}
	if r.Sessions > 0 {
		k := float64(r.Sessions)
		r.RSSPerSession = float64(r.RSSAfter-r.RSSBefore) / k
		r.PSSPerSession = float64(r.PSSAfter-r.PSSBefore) / k
		if r.HeapAfter > 0 {
			r.HeapPerSession = float64(r.HeapAfter-r.HeapBefore) / k
		}
	}
	return r
}

// settle waits (at most 15 s) until the sessions of an earlier
// measurement are gone: xpra proxy instances take a while to exit and eat
// CPU meanwhile.
func settle(t *target) {
	if t.root == 0 {
		return
	}
	for i := 0; i < 75 && len(tree(t.root)) > t.baseProcs; i++ {
		time.Sleep(200 * time.Millisecond)
	}
}

// serveBench starts the synthetic server on a loopback port.
func serveBench(pool *benchpeer.Pool, legacy bool) (*benchpeer.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := benchpeer.NewServer(pool)
	srv.Legacy = legacy
	go func() { _ = srv.Serve(ln) }()
	return srv, ln, nil
}
