package sessions

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRequestFromCaps(t *testing.T) {
	cases := []struct {
		name string
		in   map[string]any
		want Request
	}{
		{"empty", map[string]any{}, Request{Mode: "start"}},
		{"nil", nil, Request{Mode: "start"}},
		// What `xpra request-start-desktop tcp://.../100 --start-child=xterm
		// --exit-with-children` puts in its hello (scripts/main.py:
		// get_start_new_session_dict), as rencode decodes it: bytes.
		{"real-client", map[string]any{
			"mode": []byte("start-desktop"), "display": []byte(":100"),
			"chdir":              []byte("/home/alice/src"),
			"start-child":        []any{[]byte("xterm"), []byte("xclock -digital")},
			"exit-with-children": true,
		}, Request{Mode: "start-desktop", Display: ":100", Options: map[string]string{
			"start-child": "xterm\nxclock -digital", "exit-with-children": "yes",
		}}},
		{"shadow-bare-number", map[string]any{"mode": "shadow", "display": "7"},
			Request{Mode: "shadow", Display: ":7"}},
		{"ints-and-bools", map[string]any{"dpi": int64(144), "sharing": false, "resize-display": "yes"},
			Request{Mode: "start", Options: map[string]string{"dpi": "144", "sharing": "no", "resize-display": "yes"}}},
		{"string-list", map[string]any{"start": []string{"xterm"}},
			Request{Mode: "start", Options: map[string]string{"start": "xterm"}}},
		{"display-nil", map[string]any{"display": nil}, Request{Mode: "start"}},
		{"display-empty", map[string]any{"display": ""}, Request{Mode: "start"}},
		{"display-leading-zeros", map[string]any{"display": ":0010"}, Request{Mode: "start", Display: ":10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := RequestFromCaps(c.in)
			if err != nil {
				t.Fatalf("RequestFromCaps: %v", err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func TestRequestFromCapsRefused(t *testing.T) {
	cases := []struct {
		name   string
		in     map[string]any
		is     error
		option string // for ErrOptionNotAllowed: the name the error must carry
	}{
		{"xvfb", map[string]any{"xvfb": "Xvfb :1"}, ErrOptionNotAllowed, "xvfb"},
		{"bind-tcp", map[string]any{"bind-tcp": "0.0.0.0:1"}, ErrOptionNotAllowed, "bind-tcp"},
		{"env", map[string]any{"env": []any{"LD_PRELOAD=/tmp/x.so"}}, ErrOptionNotAllowed, "env"},
		{"tcp-auth", map[string]any{"tcp-auth": "none"}, ErrOptionNotAllowed, "tcp-auth"},
		{"daemon", map[string]any{"daemon": "no"}, ErrOptionNotAllowed, "daemon"},
		{"socket-dir", map[string]any{"socket-dir": "/tmp"}, ErrOptionNotAllowed, "socket-dir"},
		{"one-bad-among-good", map[string]any{"dpi": int64(96), "zz-unknown": "1", "start": "xterm"}, ErrOptionNotAllowed, "zz-unknown"},
		{"bad-mode", map[string]any{"mode": "proxy"}, ErrBadRequest, ""},
		{"mode-not-string", map[string]any{"mode": int64(1)}, ErrBadRequest, ""},
		{"display-dict", map[string]any{"display": map[string]any{"": ":1"}}, ErrBadRequest, ""},
		{"display-url", map[string]any{"display": "tcp://host:1/"}, ErrBadRequest, ""},
		{"display-negative", map[string]any{"display": ":-1"}, ErrBadRequest, ""},
		{"display-too-big", map[string]any{"display": ":65536"}, ErrBadRequest, ""},
		{"display-path", map[string]any{"display": ":1/../../x"}, ErrBadRequest, ""},
		{"key-with-equals", map[string]any{"dpi=1 --xvfb": "x"}, ErrBadRequest, ""},
		{"key-upper", map[string]any{"DPI": "x"}, ErrBadRequest, ""},
		{"value-nul", map[string]any{"encoding": "png\x00"}, ErrBadRequest, ""},
		{"value-newline", map[string]any{"encoding": "png\n--xvfb=x"}, ErrBadRequest, ""},
		{"list-newline", map[string]any{"start": []any{"a\nb"}}, ErrBadRequest, ""},
		{"list-non-string", map[string]any{"start": []any{int64(1)}}, ErrBadRequest, ""},
		{"value-float", map[string]any{"dpi": 1.5}, ErrBadRequest, ""},
		{"value-dict", map[string]any{"dpi": map[string]any{}}, ErrBadRequest, ""},
		{"value-too-long", map[string]any{"encoding": strings.Repeat("x", maxValueLen+1)}, ErrBadRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := RequestFromCaps(c.in)
			if !errors.Is(err, c.is) {
				t.Fatalf("RequestFromCaps = %#v, %v; want %v", r, err, c.is)
			}
			if c.option != "" {
				var oe *OptionError
				if !errors.As(err, &oe) || oe.Name != c.option || !strings.Contains(err.Error(), c.option) {
					t.Errorf("error %v does not name option %q", err, c.option)
				}
			}
			if strings.ContainsAny(err.Error(), "\x00\n") {
				t.Errorf("error message has control characters: %q", err)
			}
		})
	}
}

func TestStarterRequestFromCaps(t *testing.T) {
	s := &Starter{AllowedOptions: map[string]bool{"xvfb": true, "chdir": true}}
	r, err := s.RequestFromCaps(map[string]any{"xvfb": "Xvfb -nolisten tcp", "chdir": "/srv"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Options["xvfb"] != "Xvfb -nolisten tcp" || r.Options["chdir"] != "/srv" {
		t.Errorf("operator-allowed options lost: %#v", r)
	}
	// The operator's set replaces the default one.
	if _, err := s.RequestFromCaps(map[string]any{"dpi": int64(96)}); !errors.Is(err, ErrOptionNotAllowed) {
		t.Errorf("dpi with a set that lacks it: %v", err)
	}
}

func TestOptionArgs(t *testing.T) {
	got := optionArgs(map[string]string{
		"start-child": "xterm\nxclock -digital", "dpi": "96", "encodings": "png,jpeg", "start": "",
	})
	want := []string{"--dpi=96", "--encodings=png,jpeg", "--start-child=xterm", "--start-child=xclock -digital"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("optionArgs = %q, want %q", got, want)
	}
}

func TestEnviron(t *testing.T) {
	t.Setenv("LANG", "de_DE.UTF-8")
	t.Setenv("LC_TIME", "C")
	t.Setenv("TZ", "Europe/Berlin")
	t.Setenv("PATH", "/root/.pyenv/shims:/usr/bin")
	t.Setenv("HOME", "/root")
	t.Setenv("DISPLAY", ":0")
	t.Setenv("XPRA_PASSWORD", "secret")
	u := User{Name: "alice", UID: 1500, GID: 1500, Home: "/home/alice", Shell: "/bin/zsh"}
	get := func(env []string) map[string]string {
		m := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			if _, dup := m[k]; dup {
				t.Errorf("duplicate %s", k)
			}
			m[k] = v
		}
		return m
	}
	m := get((&Starter{}).environ(u, "/run/user/1500", "m1"))
	want := map[string]string{
		"LANG": "de_DE.UTF-8", "LC_TIME": "C", "TZ": "Europe/Berlin", "PATH": DefaultPath,
		"HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice", "SHELL": "/bin/zsh",
		"XDG_RUNTIME_DIR": "/run/user/1500", markerVar: "m1",
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("environ = %v\nwant %v", m, want)
	}
	// An operator's whitelist: PATH passed on, HOME still the user's.
	m = get((&Starter{EnvWhitelist: []string{"PATH", "HOME", "XPRA_*"}}).environ(u, "/run/user/1500", "m2"))
	if m["PATH"] != "/root/.pyenv/shims:/usr/bin" || m["HOME"] != "/home/alice" || m["XPRA_PASSWORD"] != "secret" || m["LANG"] != "" {
		t.Errorf("environ with whitelist = %v", m)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijk"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := b.String(); got != "defghijk" {
		t.Errorf("tail = %q", got)
	}
	if got := lastLine("a\nlast one\n\n  \n"); got != "last one" {
		t.Errorf("lastLine = %q", got)
	}
}

func TestStartErrorMessage(t *testing.T) {
	e := &StartError{UID: 1001, Mode: "start", Stage: "exit", Output: "noise\nError: bad \x1b[1mthing\n", Err: errors.New("xpra exited with status 1")}
	msg := e.Error()
	if !strings.Contains(msg, "uid 1001") || !strings.Contains(msg, "status 1") || !strings.Contains(msg, "Error: bad ?[1mthing") {
		t.Errorf("message %q", msg)
	}
	if !errors.Is(e, ErrStartFailed) {
		t.Error("not ErrStartFailed")
	}
}

// FuzzRequestFromCaps: never panics, and whatever it accepts is valid.
func FuzzRequestFromCaps(f *testing.F) {
	f.Add("start", ":100", "start-child", "xterm", int64(1), true)
	f.Add("shadow", "", "xvfb", "Xvfb", int64(0), false)
	f.Add("start-desktop", "7", "dpi", "96\n", int64(-1), true)
	f.Add("", "\x00", "", "", int64(1<<40), false)
	f.Fuzz(func(t *testing.T, mode, display, key, val string, n int64, b bool) {
		for _, v := range []any{val, []byte(val), n, b, []any{val, []byte(val)}} {
			r, err := RequestFromCaps(map[string]any{"mode": mode, "display": display, key: v})
			if err != nil {
				continue
			}
			if _, err := validate(r, DefaultAllowedOptions()); err != nil {
				t.Fatalf("accepted %#v fails validation: %v", r, err)
			}
			for _, a := range optionArgs(r.Options) {
				if !strings.HasPrefix(a, "--") || strings.ContainsAny(a, "\x00\n") {
					t.Fatalf("bad arg %q from %#v", a, r)
				}
			}
		}
	})
}

func TestParseXpraMajor(t *testing.T) {
	for in, want := range map[string]int{
		"xpra v3.1.3\n": 3, "xpra v6.5.5-r0\n": 6, "xpra v10.0\n": 10,
		"": 0, "python: not found": 0, "xpra vX.1": 0, "xpra": 0,
	} {
		if got := parseXpraMajor(in); got != want {
			t.Errorf("parseXpraMajor(%q) = %d, want %d", in, got, want)
		}
	}
}
