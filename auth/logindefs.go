package auth

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
)

// DefaultUIDMin is the lowest uid of a regular user when /etc/login.defs
// does not say (Debian's and shadow's default).
const DefaultUIDMin = 1000

var uidMin = sync.OnceValue(func() int { return readUIDMin("/etc/login.defs") })

// UIDMin is UID_MIN from /etc/login.defs (read once), else DefaultUIDMin:
// accounts below it are system accounts, whose sessions a proxy running as
// root never reaches and for whom it never starts one.
func UIDMin() int { return uidMin() }

// Unreachable reports whether a proxy never serves uid: root always, and
// system accounts (below UIDMin) when the proxy runs as root.
func Unreachable(uid int, proxyIsRoot bool) bool {
	return uid == 0 || (proxyIsRoot && uid < UIDMin())
}

func readUIDMin(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return DefaultUIDMin
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "UID_MIN" {
			if n, err := strconv.Atoi(fields[1]); err == nil && n > 0 {
				return n
			}
		}
	}
	return DefaultUIDMin
}
