// Command xpra-edge is the composition root: subcommands, flags, config
// loading, logging, wiring of every package, signals. It is the only place
// that exits the process.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
)

const usage = `xpra-edge: one internet-facing port for many xpra sessions.

Usage:
  xpra-edge proxy [:DISPLAY] [options]      run the proxy (like "xpra proxy"; display default :14500)
  xpra-edge sqlite FILE create|list|add|remove|authenticate ...
                                            manage a user database (xpra's schema)
  xpra-edge pg DSN|--config=FILE create|list|add|remove|authenticate|import FILE.sdb ...
                                            the same verbs on the fleet's PostgreSQL users table
                                            (import copies an xpra sqlite file; "postgres" is the
                                            same command; docs/FLEET.md)
  xpra-edge list [--socket-dir DIR]         list the xpra sockets of this host (LIVE, DEAD, UNKNOWN):
                                            the proxy's, its sessions' and others (like "xpra list")
  xpra-edge list --fleet [--all] (--config FILE | --postgres DSN)
                                            list every node and live session of a fleet
                                            (--all: ended ones too; docs/FLEET.md)
  xpra-edge info [--socket-dir DIR] TARGET  show info of the proxy (:DISPLAY) or a session (:proxy-ID)
  xpra-edge id [--socket-dir DIR] TARGET    show the id of the proxy or a session (like "xpra id")
  xpra-edge stop [--socket-dir DIR] TARGET  stop the proxy (:DISPLAY) or one session (:proxy-ID)
  xpra-edge stop UUID|:proxy-ID@NODE (--config FILE | --postgres DSN)
                                            stop a fleet session on whichever node holds it
  xpra-edge reload [--socket-dir DIR] [:DISPLAY]
                                            reload the proxy's configuration (same as SIGHUP;
                                            default :14500)
  xpra-edge check-config FILE               validate a configuration file, printing every problem
  xpra-edge hash-password                   read a password on stdin, print an argon2id hash
                                            for password_hash in [[user]]
  xpra-edge version                         print the version
  xpra-edge COMMAND --help                  this text (sqlite, pg: their own usage)

TARGET is :DISPLAY, :proxy-ID or a socket path; --socket-dir DIR (or
--socket-dirs A:B) replaces the directories searched: $XDG_RUNTIME_DIR/xpra,
/run/xpra, /tmp, ~/.xpra.

Proxy options (xpra's spelling; "--opt=value" or "--opt value"):
  --bind-tcp=ADDR[,plain=no][,auth=MODULE,k=v...]
                                         listen on ADDR (repeatable), e.g. 0.0.0.0:443; the port
                                         tells xpra, TLS, ws and wss apart (plain=no: TLS only);
                                         --bind-ssl, --bind-ws, --bind-wss are the same
  --bind=PATH[,auth=...]                 listen on a unix socket (repeatable)
  --tcp-auth=MODULE[,k=v...]             default auth for --bind-tcp (also MODULE:k=v;
                                         --ssl-auth, --ws-auth, --wss-auth are the same);
                                         without --bind-tcp, the file's auth when it sets none
  --auth=MODULE[,k=v...]                 default auth for --bind unix sockets
  --socket-dir=DIR                       where control sockets are created
  --socket-dirs=DIR[:DIR...]             where users' local sessions are searched
  --ssl-cert=FILE --ssl-key=FILE         TLS from these PEM files on every port (tls mode static;
                                         the key defaults to the cert file, as xpra's)
  --ssl=on                               without --ssl-cert or [tls]: the self-signed development
                                         CA (tls mode self-signed); other values change nothing
  --config=FILE                          TOML configuration (see config.example.toml)
  --admin-bind=ADDR                      Prometheus /metrics and /healthz (and pprof if enabled)
  --drain=DURATION                       on SIGTERM, let sessions run this long (default 10s)
  --proxy-start-sessions=yes|no          start a session as the user when they have none
                                         (needs root; default yes as root, as in xpra)
  --postgres=DSN                         join a fleet sharing this PostgreSQL database ([store] postgres;
                                         the password may come from $XPRA_EDGE_PG_PASSWORD; docs/FLEET.md)
  --log-level=debug|info|warn|error --log-format=text|json
  --dev                                  embedded development defaults (what "make run" uses)

Auth modules: allow, none, reject, password (value=), multifile (filename=),
sqlite (filename=), postgres (the fleet's users, needs [store] postgres),
toml (users from the config file), pam (service=, check-account=),
ldap (url=ldaps://HOST or ldap://HOST with StartTLS, user-dn= or base=, ...,
groups-base= for the directory groups admin_group counts;
DNs written with ';' between RDNs, see config.example.toml).
Browser portal: [portal] enable = true in the config file (needs [tls]) serves a
login page and the user's sessions at https://HOST:PORT/ ("open" starts the
HTML5 client, then at /client/, with a single-use ticket); admin_group and
admin_users see /admin/ (live sessions, stop, /admin/sessions.json);
[portal.oidc] adds single sign-on with an OpenID provider.
Flags override the file's scalar settings; --bind-tcp/--bind listeners are
added to the file's listeners. Options of "xpra proxy" that do not apply
(--daemon, --mdns, --pulseaudio, --uid, --pidfile, ...) are accepted and
ignored with a log line.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "list", "info", "stop", "id", "reload", "check-config", "hash-password", "version":
		for _, a := range args[1:] {
			if a == "-h" || a == "--help" {
				fmt.Fprint(stdout, usage)
				return 0
			}
		}
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "proxy":
		return runProxy(args[1:], stdout, stderr)
	case "sqlite":
		return auth.SQLiteCLI(args[1:], stdout, stderr)
	case "pg", "postgres":
		return runPG(args[1:], stdout, stderr)
	case "list":
		return runList(args[1:], stdout, stderr)
	case "info", "stop", "id":
		return runControl(args[0], args[1:], stdout, stderr)
	case "reload":
		return runReload(args[1:], stdout, stderr)
	case "check-config":
		return runCheckConfig(args[1:], stdout, stderr)
	case "hash-password":
		return runHashPassword(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "xpra-edge", edge.Version)
		return 0
	default:
		fmt.Fprintf(stderr, "xpra-edge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
