package xpratest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// markerVar is put in the environment of every process the harness starts.
// xpra passes its environment on to its Xvfb and session commands, so the
// marker finds every descendant, even one that called setsid or was
// re-parented to init after its parent died.
const markerVar = "XPRATEST_ID"

func newMarker() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// proc is one started process (the root of a tree) with a bounded lifetime.
type proc struct {
	name    string
	marker  string
	cmd     *exec.Cmd
	logPath string

	done     chan struct{}
	exitCode int // valid after done is closed; -1 when killed by a signal
	waitErr  error
	timer    *time.Timer

	stopOnce sync.Once
}

// startProc starts cmd in its own process group, with stdout and stderr
// going to logPath (a file, never a pipe: descendants that inherit the
// descriptors must not keep Wait from returning), and kills its whole tree
// after lifetime.
func startProc(name string, cmd *exec.Cmd, logPath string, lifetime time.Duration) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	defer f.Close()
	p := &proc{name: name, marker: newMarker(), cmd: cmd, logPath: logPath, done: make(chan struct{})}
	registry.add(p.marker)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(cmd.Env, markerVar+"="+p.marker)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	go func() {
		err := cmd.Wait()
		p.waitErr = err
		p.exitCode = exitCodeOf(cmd.ProcessState, err)
		close(p.done)
	}()
	p.timer = time.AfterFunc(lifetime, func() {
		appendLog(logPath, fmt.Sprintf("\nxpratest: %s exceeded its lifetime of %s, killed\n", name, lifetime))
		p.killAll()
	})
	return p, nil
}

func exitCodeOf(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return -1
		}
		return 0
	}
	return ps.ExitCode() // -1 when killed by a signal
}

func appendLog(path, s string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	_, _ = f.WriteString(s)
	_ = f.Close()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the root process to exit.
func (p *proc) wait(d time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.exitCode, nil
	case <-time.After(d):
		return 0, fmt.Errorf("%s: %w after %s", p.name, ErrTimeout, d)
	}
}

// output is everything the process tree wrote so far.
func (p *proc) output() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	return string(b)
}

func (p *proc) waitOutput(substr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(p.output(), substr) {
			return nil
		}
		if p.exited() {
			// one last look: the final lines may have landed just now
			if strings.Contains(p.output(), substr) {
				return nil
			}
			return fmt.Errorf("%s: %w (exit code %d) before printing %q", p.name, ErrExited, p.exitCode, substr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w after %s waiting for %q", p.name, ErrTimeout, d, substr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends sig to the root process only: xpra shuts down its own Xvfb
// and session commands in order (signalling the whole group at once makes
// the server trip over its dying X server and exit 1).
func (p *proc) signal(sig syscall.Signal) {
	_ = syscall.Kill(p.pid(), sig)
}

// stop asks the root to end with sig, waits up to grace for it, then
// kills every process of the tree. Safe to call more than once.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	p.stopOnce.Do(func() {
		if !p.exited() {
			p.signal(sig)
			select {
			case <-p.done:
			case <-time.After(grace):
			}
		}
		p.killAll()
		p.timer.Stop()
	})
}

// killAll SIGKILLs every process of the tree: the process group and every
// process carrying this proc's marker, then reaps the root.
func (p *proc) killAll() {
	for range 3 {
		pids := p.members()
		if len(pids) == 0 {
			break
		}
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// members lists the live processes of the tree (root excluded once reaped).
func (p *proc) members() []int {
	return findMarked(p.marker, p.pid())
}

// findMarked scans /proc for processes in process group pgid or with the
// marker in their environment. Zombies are skipped.
func findMarked(marker string, pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	needle := []byte(markerVar + "=" + marker + "\x00")
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		state, pg, ok := parseStat(stat)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		if pg == pgid {
			out = append(out, pid)
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, needle) {
			out = append(out, pid)
		}
	}
	return out
}

// parseStat returns the state and process group from /proc/PID/stat.
func parseStat(b []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 3 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}

// Sentinel errors a caller can tell apart with errors.Is.
var (
	// ErrTimeout: the awaited state was not reached in time.
	ErrTimeout = errors.New("timed out")
	// ErrExited: the process ended before reaching the awaited state.
	ErrExited = errors.New("process exited")
	// ErrNoWindow: no mapped window of the requested class.
	ErrNoWindow = errors.New("no such window")
)

// registry remembers the marker of every process tree this test binary
// started, for LeftoverProcesses.
var registry = &procRegistry{markers: map[string]bool{}}

type procRegistry struct {
	mu      sync.Mutex
	markers map[string]bool
}

func (r *procRegistry) add(marker string) {
	r.mu.Lock()
	r.markers[marker] = true
	r.mu.Unlock()
}

// LeftoverProcesses lists the processes still running from every process
// tree the harness started in this test binary (servers, clients, Xvfbs,
// commands run with Run, and all their descendants: they carry the tree's
// marker in their environment). After the tests' cleanups it must be empty;
// call it from TestMain to prove it.
func LeftoverProcesses() []int {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	var out []int
	for marker := range registry.markers {
		out = append(out, findMarked(marker, -2)...)
	}
	return out
}

// cmdline is a process's command line, for messages.
func cmdline(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
