package main

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// raiseFileLimit lifts RLIMIT_NOFILE as far as allowed: each relayed
// session holds three descriptors (client, backend, control socket).
// Go already raises the soft limit to the hard one; as root the hard
// limit is raised too, up to fs.nr_open.
func raiseFileLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := lim.Max
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > want {
			want = n
		}
	}
	if want > lim.Max {
		next := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err == nil {
			log.Debug("raised the open file limit", "from", lim.Max, "to", want)
			return
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Max < 30000 {
		log.Info("open file limit allows about this many relayed sessions", "sessions", lim.Max/3, "limit", lim.Max)
	}
}
