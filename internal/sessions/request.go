package sessions

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Modes a session can be started in.
const (
	ModeStart        = "start"
	ModeStartDesktop = "start-desktop"
	ModeShadow       = "shadow"
)

// Request is what a client asked for in its "start-new-session" dict.
type Request struct {
	Mode    string            // "start" (default when empty), "start-desktop", "shadow"
	Display string            // "" = let xpra choose; else ":N"
	Options map[string]string // client-requested overrides, see RequestFromCaps
}

// ErrBadRequest: the request's mode, display or an option value is invalid.
var ErrBadRequest = errors.New("invalid start-new-session request")

// ErrOptionNotAllowed: a client asked to override an option that is not
// allowed. The error is an *OptionError naming the option.
var ErrOptionNotAllowed = errors.New("start option not allowed")

// OptionError names the option a request was refused for.
type OptionError struct{ Name string }

func (e *OptionError) Error() string {
	return fmt.Sprintf("start option %q not allowed", e.Name)
}

// Unwrap makes errors.Is(err, ErrOptionNotAllowed) true.
func (e *OptionError) Unwrap() error { return ErrOptionNotAllowed }

// DefaultAllowedOptions are the xpra start options a client may override
// when Starter.AllowedOptions is nil. They change what runs inside the
// user's own session (as the user) or how it looks, never where it listens,
// how it authenticates or which X server binary runs ("xvfb", "bind*",
// "*auth", "env", "socket-dir*" and the like are refused).
func DefaultAllowedOptions() map[string]bool {
	return map[string]bool{
		"start":              true,
		"start-child":        true,
		"exit-with-children": true,
		"exit-with-client":   true,
		"encoding":           true,
		"dpi":                true,
		"resize-display":     true,
		"sharing":            true,
		"session-name":       true,
	}
}

// DroppedOptions are keys that the real xpra client puts in every
// start-new-session dict although they cannot mean anything on another
// machine: "chdir" is the client's own working directory
// (scripts/main.py:get_start_new_session_dict). RequestFromCaps ignores them
// instead of refusing the whole request; allowing one in AllowedOptions
// passes it on instead.
var DroppedOptions = []string{"chdir"}

// reservedOptions are set by Start itself and can never be overridden, even
// when an operator lists them in AllowedOptions.
var reservedOptions = map[string]bool{
	"daemon": true, "socket-dir": true, "socket-dirs": true, "displayfd": true,
	"uid": true, "gid": true, "systemd-run": true, "systemd-run-args": true,
	"start-via-proxy": true, "attach": true, "pidfile": true, "use-display": true,
	"mode": true, "display": true,
}

// repeatedOptions are xpra list options given once per element on the
// command line (--start=a --start=b). Their Request.Options value holds the
// elements separated by "\n". Other list values are comma-separated.
var repeatedOptions = map[string]bool{
	"start": true, "start-child": true,
	"start-after-connect": true, "start-child-after-connect": true,
	"start-on-connect": true, "start-child-on-connect": true,
	"start-on-last-client-exit": true, "start-child-on-last-client-exit": true,
	"start-env": true, "env": true, "source": true, "source-start": true,
	"bind": true, "bind-tcp": true, "bind-udp": true, "bind-ssl": true, "bind-ws": true,
	"bind-wss": true, "bind-ssh": true, "bind-rfb": true, "bind-vsock": true,
	"key-shortcut": true, "pulseaudio-configure-commands": true,
}

const (
	maxOptions     = 64
	maxValueLen    = 4096
	maxListEntries = 32
)

// RequestFromCaps parses the "start-new-session" dict of a client hello
// (already decoded; values string, []byte, int64, bool or lists of strings)
// and validates it against DefaultAllowedOptions. See
// Starter.RequestFromCaps for an operator's own set.
func RequestFromCaps(m map[string]any) (Request, error) {
	return requestFromCaps(m, DefaultAllowedOptions())
}

// RequestFromCaps is like the package function but validates the options
// against s.AllowedOptions.
func (s *Starter) RequestFromCaps(m map[string]any) (Request, error) {
	return requestFromCaps(m, s.allowed())
}

func requestFromCaps(m map[string]any, allowed map[string]bool) (Request, error) {
	if len(m) > maxOptions+2 {
		return Request{}, fmt.Errorf("%w: %d keys", ErrBadRequest, len(m))
	}
	var r Request
	if v, ok := m["mode"]; ok {
		s, ok := asString(v)
		if !ok {
			return Request{}, fmt.Errorf("%w: mode is not a string", ErrBadRequest)
		}
		r.Mode = s
	}
	if v, ok := m["display"]; ok && v != nil {
		s, ok := asString(v)
		if !ok {
			return Request{}, fmt.Errorf("%w: display is not a string", ErrBadRequest)
		}
		r.Display = s
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the first bad key is always the same one
	for _, k := range keys {
		if k == "mode" || k == "display" {
			continue
		}
		if !allowed[k] && isDropped(k) {
			continue
		}
		if err := checkKey(k, allowed); err != nil {
			return Request{}, err
		}
		v, err := optionValue(k, m[k])
		if err != nil {
			return Request{}, err
		}
		if r.Options == nil {
			r.Options = map[string]string{}
		}
		r.Options[k] = v
	}
	return validate(r, allowed)
}

func isDropped(k string) bool {
	for _, d := range DroppedOptions {
		if k == d {
			return true
		}
	}
	return false
}

func checkKey(k string, allowed map[string]bool) error {
	if !validKey(k) {
		return fmt.Errorf("%w: option name %q", ErrBadRequest, printable(k, 64))
	}
	if reservedOptions[k] || !allowed[k] {
		return &OptionError{Name: k}
	}
	return nil
}

func validKey(k string) bool {
	if k == "" || len(k) > 64 || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// optionValue turns a decoded caps value into the command-line form.
func optionValue(k string, v any) (string, error) {
	if s, ok := asString(v); ok {
		return s, nil
	}
	switch x := v.(type) {
	case bool:
		if x {
			return "yes", nil
		}
		return "no", nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = s
		}
		return listValue(k, l)
	case []any:
		return listValue(k, x)
	}
	return "", fmt.Errorf("%w: option %q has an unsupported value type %T", ErrBadRequest, k, v)
}

func listValue(k string, l []any) (string, error) {
	if len(l) > maxListEntries {
		return "", fmt.Errorf("%w: option %q has %d entries", ErrBadRequest, k, len(l))
	}
	parts := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := asString(e)
		if !ok {
			return "", fmt.Errorf("%w: option %q has a non-string entry", ErrBadRequest, k)
		}
		if strings.ContainsAny(s, "\n\r") {
			return "", fmt.Errorf("%w: option %q has an entry with a line break", ErrBadRequest, k)
		}
		parts = append(parts, s)
	}
	if repeatedOptions[k] {
		return strings.Join(parts, "\n"), nil
	}
	return strings.Join(parts, ","), nil
}

func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

// validate checks mode, display and options and returns the normalised
// request (mode defaulted, display as ":N").
func validate(r Request, allowed map[string]bool) (Request, error) {
	switch r.Mode {
	case "":
		r.Mode = ModeStart
	case ModeStart, ModeStartDesktop, ModeShadow:
	default:
		return Request{}, fmt.Errorf("%w: mode %q", ErrBadRequest, printable(r.Mode, 32))
	}
	if r.Display != "" {
		d, ok := normDisplay(r.Display)
		if !ok {
			return Request{}, fmt.Errorf("%w: display %q", ErrBadRequest, printable(r.Display, 32))
		}
		r.Display = d
	}
	if len(r.Options) > maxOptions {
		return Request{}, fmt.Errorf("%w: %d options", ErrBadRequest, len(r.Options))
	}
	for k, v := range r.Options {
		if err := checkKey(k, allowed); err != nil {
			return Request{}, err
		}
		if len(v) > maxValueLen || strings.ContainsAny(v, "\x00\r") ||
			(!repeatedOptions[k] && strings.Contains(v, "\n")) {
			return Request{}, fmt.Errorf("%w: option %q has an invalid value", ErrBadRequest, k)
		}
	}
	return r, nil
}

// normDisplay accepts ":N" or "N" with N in 0..65535.
func normDisplay(d string) (string, bool) {
	n := strings.TrimPrefix(d, ":")
	if !isDigits(n) || len(n) > 5 {
		return "", false
	}
	v, err := strconv.Atoi(n)
	if err != nil || v > 65535 {
		return "", false
	}
	return ":" + strconv.Itoa(v), true
}

// printable trims s to max bytes and replaces control characters, so that
// client-supplied text can go into an error message.
func printable(s string, max int) string {
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// args turns the options into command-line flags, sorted by name.
func optionArgs(opts map[string]string) []string {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		v := opts[k]
		if repeatedOptions[k] {
			for _, e := range strings.Split(v, "\n") {
				if e != "" {
					out = append(out, "--"+k+"="+e)
				}
			}
			continue
		}
		out = append(out, "--"+k+"="+v)
	}
	return out
}
