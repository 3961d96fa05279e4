package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/fleet"
	"github.com/xpra-edge/xpra-edge/internal/config"
	"github.com/xpra-edge/xpra-edge/internal/sockdir"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// defaultSocketDirs are searched by list/info/stop, like xpra's.
func defaultSocketDirs() []string {
	dirs := []string{"/run/xpra", "/tmp"}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		dirs = append([]string{filepath.Join(d, "xpra")}, dirs...)
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, ".xpra"))
	}
	return dirs
}

// parseDirsFlag takes --socket-dir=DIR / --socket-dirs=A:B from args.
func parseDirsFlag(args []string) ([]string, []string, error) {
	var dirs, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, v, has := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "--") && (name == "socket-dir" || name == "socket-dirs") {
			if !has {
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("--%s needs a value", name)
				}
				i++
				v = args[i]
			}
			dirs = append(dirs, strings.Split(v, ":")...)
			continue
		}
		rest = append(rest, a)
	}
	if len(dirs) == 0 {
		dirs = defaultSocketDirs()
	}
	return dirs, rest, nil
}

func runList(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		if a == "--fleet" {
			return runListFleet(args, stdout, stderr)
		}
	}
	dirs, rest, err := parseDirsFlag(args)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge list: %v\n", err)
		return 2
	}
	prefix := sockdir.Hostname() + "-"
	found := false
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		var lines []string
		for _, e := range entries {
			if e.Type()&os.ModeSocket == 0 || !strings.HasPrefix(e.Name(), prefix) {
				continue
			}
			state := "UNKNOWN"
			switch sockdir.Probe(filepath.Join(dir, e.Name()), time.Second) {
			case sockdir.StateLive:
				state = "LIVE"
			case sockdir.StateDead:
				state = "DEAD"
			}
			lines = append(lines, fmt.Sprintf("\t%s session at :%s", state, strings.TrimPrefix(e.Name(), prefix)))
		}
		if len(lines) == 0 {
			continue
		}
		if !found {
			fmt.Fprintln(stdout, "Found the following xpra sessions:")
			found = true
		}
		sort.Strings(lines)
		fmt.Fprintf(stdout, "%s:\n%s\n", dir, strings.Join(lines, "\n"))
	}
	if !found {
		fmt.Fprintln(stdout, "No xpra sessions found")
	}
	return 0
}

// findControl resolves ":100" or ":proxy-7" to a live socket path.
func findControl(target string, dirs []string) (string, error) {
	if strings.HasPrefix(target, "/") {
		return target, nil
	}
	if !strings.HasPrefix(target, ":") {
		return "", fmt.Errorf("target %q: use :DISPLAY or :proxy-ID", target)
	}
	name := sockdir.SocketName(target)
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if sockdir.Probe(p, time.Second) == sockdir.StateLive {
			return p, nil
		}
	}
	return "", fmt.Errorf("no live socket for %s in %s", target, strings.Join(dirs, ", "))
}

// dialControl connects to the control socket of target after checking
// who serves it (SO_PEERCRED): this user, root, or the owner of the
// socket's directory. In a shared directory (/run/xpra is 1777) anybody
// could have created the name first; such a squatter must not receive an
// admin's info or stop requests, or name the pid reload signals.
func dialControl(target string, dirs []string) (*xpraclient.Conn, int, error) {
	path, err := findControl(target, dirs)
	if err != nil {
		return nil, 0, err
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	pid, uid, err := peerCred(c)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("%s: who serves it: %w", path, err)
	}
	dirOwner := -1
	if fi, err := os.Stat(filepath.Dir(path)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			dirOwner = int(st.Uid)
		}
	}
	if uid != os.Geteuid() && uid != 0 && uid != dirOwner {
		c.Close()
		return nil, 0, fmt.Errorf("%s is served by uid %d (pid %d), neither this user, root nor the owner of its directory: not talking to it", path, uid, pid)
	}
	return xpraclient.New(c, xprawire.Rencode), pid, nil
}

func runControl(cmd string, args []string, stdout, stderr io.Writer) int {
	if cmd == "stop" {
		for i, a := range args {
			if fleet.IsFleetTarget(a) {
				return runStopFleet(a, append(append([]string(nil), args[:i]...), args[i+1:]...), stdout, stderr)
			}
		}
	}
	dirs, rest, err := parseDirsFlag(args)
	if err == nil && len(rest) != 1 {
		err = errors.New("usage: xpra-edge " + cmd + " [--socket-dir DIR] TARGET")
	}
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge %s: %v\n", cmd, err)
		return 2
	}
	c, _, err := dialControl(rest[0], dirs)
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge %s: %v\n", cmd, err)
		return 1
	}
	defer c.Close()
	switch cmd {
	case "stop":
		reasons, err := c.Stop(15 * time.Second)
		if err != nil {
			fmt.Fprintf(stderr, "xpra-edge stop: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s stopped: %s\n", rest[0], strings.Join(reasons, ": "))
		return 0
	default:
		caps, err := c.Request(cmd, 10*time.Second)
		if err != nil {
			fmt.Fprintf(stderr, "xpra-edge %s: %v\n", cmd, err)
			return 1
		}
		printCaps(stdout, "", caps.Dict)
		return 0
	}
}

// printCaps prints a hello as sorted flat key=value lines, like xpra info.
func printCaps(w io.Writer, prefix string, d xprawire.Dict) {
	var lines []string
	var walk func(string, xprawire.Dict)
	walk = func(p string, d xprawire.Dict) {
		for _, kv := range d {
			k := fmt.Sprint(kv.Key)
			if b, ok := kv.Key.([]byte); ok {
				k = string(b)
			}
			if p != "" {
				k = p + "." + k
			}
			switch v := kv.Value.(type) {
			case xprawire.Dict:
				walk(k, v)
			case []byte:
				lines = append(lines, k+"="+string(v))
			default:
				lines = append(lines, fmt.Sprintf("%s=%v", k, v))
			}
		}
	}
	walk(prefix, d)
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func runReload(args []string, stdout, stderr io.Writer) int {
	dirs, rest, err := parseDirsFlag(args)
	if err == nil && len(rest) > 1 {
		err = errors.New("usage: xpra-edge reload [--socket-dir DIR] [:DISPLAY]")
	}
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge reload: %v\n", err)
		return 2
	}
	target := ":14500"
	if len(rest) == 1 {
		target = rest[0]
	}
	c, peerPID, err := dialControl(target, dirs)
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge reload: %v\n", err)
		return 1
	}
	defer c.Close()
	// The pid is the kernel's (SO_PEERCRED), never one the socket tells:
	// an answer could name any process.
	caps, err := c.Request("info", 10*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "xpra-edge reload: %v\n", err)
		return 1
	}
	if typ, _ := caps.Str("server.type"); typ != "xpra-edge" {
		fmt.Fprintf(stderr, "xpra-edge reload: %s is not an xpra-edge proxy (server.type %q)\n", target, typ)
		return 1
	}
	pid := int64(peerPID)
	if pid <= 1 {
		fmt.Fprintln(stderr, "xpra-edge reload: cannot tell the proxy's pid")
		return 1
	}
	if err := syscall.Kill(int(pid), syscall.SIGHUP); err != nil {
		fmt.Fprintf(stderr, "xpra-edge reload: signal %d: %v\n", pid, err)
		return 1
	}
	fmt.Fprintf(stdout, "reload requested (SIGHUP to pid %s); the proxy logs the outcome\n", strconv.FormatInt(pid, 10))
	return 0
}

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: xpra-edge check-config FILE")
		return 2
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	cfg.FillDefaults()
	var problems []error
	for _, p := range cfg.Problems() {
		if errors.Is(p, config.ErrNoListener) {
			// --bind-tcp and friends can complete the file at start.
			fmt.Fprintf(stdout, "%s: note: no [[listener]]; the proxy needs --bind-tcp, --bind-ssl, --bind-ws, --bind-wss or --bind at start\n", args[0])
			continue
		}
		problems = append(problems, p)
	}
	if len(problems) == 0 {
		// Build what a start would build (auth modules, routes), binding
		// nothing, so module options are checked too.
		var users auth.UserSource
		if cfg.Store.Enabled() {
			users = offlineUsers{} // the database is not contacted
		}
		if _, err := buildState(cfg, cfg.TLS.Mode != "", users, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			problems = append(problems, err)
		}
		if cfg.Portal.Enable {
			if _, err := newPortal(cfg.Portal, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
				problems = append(problems, err)
			}
		}
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "%s: %v\n", args[0], p)
	}
	if len(problems) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[0])
	return 0
}

// runHashPassword prints an argon2id hash of the password read from in
// (one line; the terminal echo is the caller's business, e.g. `read -s`).
func runHashPassword(args []string, in io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: xpra-edge hash-password < password-file")
		return 2
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "xpra-edge hash-password: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "xpra-edge hash-password: empty password")
		return 1
	}
	fmt.Fprintln(stdout, auth.HashPassword([]byte(pw)))
	return 0
}
