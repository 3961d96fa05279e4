package fleet

import (
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
)

func defaultNode() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "xpra-edge"
	}
	return h
}

// applicationName is what pg_stat_activity shows for this node's
// connections (at most 63 bytes).
func applicationName(node string) string {
	n := "xpra-edge " + node
	if len(n) > 63 {
		n = n[:63]
	}
	return strings.ToValidUTF8(n, "?")
}

// dsnPassword is the password a DSN carries, so that it can be redacted
// from pgx's own error texts.
func dsnPassword(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return cfg.Password
}
