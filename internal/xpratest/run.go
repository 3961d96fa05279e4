package xpratest

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Run runs `xpra ARGS...` (info, version, id, list, stop, ...) with a
// private HOME and XDG_RUNTIME_DIR, stdin closed, and kills it (and
// anything it started) after d. It returns stdout and stderr interleaved
// and the exit code: -1 when it was killed (timeout or signal). Run never
// fails the test itself; assert on what it returns. Pass --socket-dirs=DIR
// for commands that look up sessions, or the user's real ones are searched.
func Run(t testing.TB, d time.Duration, args ...string) (out string, exitCode int) {
	t.Helper()
	return RunGen(t, Xpra3, d, args...)
}

// RunGen is Run with the launcher of generation g.
func RunGen(t testing.TB, g Gen, d time.Duration, args ...string) (out string, exitCode int) {
	t.Helper()
	RequirePeers(t, g.String())
	return runCmd(t, d, g.Bin(), args...)
}

func runCmd(t testing.TB, d time.Duration, bin string, args ...string) (string, int) {
	t.Helper()
	w := newWorkDir(t, "run", -1, -1)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = w.env()
	cmd.Dir = w.home
	logPath := filepath.Join(w.root, "out.log")
	p, err := startProc(filepath.Base(bin), cmd, logPath, d+time.Second)
	if err != nil {
		return err.Error(), -1
	}
	_, werr := p.wait(d)
	p.stop(syscall.SIGKILL, 0)
	out := p.output()
	if errors.Is(werr, ErrTimeout) {
		return out, -1
	}
	return out, p.exitCode
}
