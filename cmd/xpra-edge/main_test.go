package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/config"
)

func TestParseBindForms(t *testing.T) {
	cases := map[string]struct{ bind, auth string }{
		"0.0.0.0:14501,auth=sqlite,filename=./xpra-auth.sdb": {"0.0.0.0:14501", "sqlite,filename=./xpra-auth.sdb"},
		"127.0.0.1:443":              {"127.0.0.1:443", ""},
		":443,auth=password,value=x": {"0.0.0.0:443", "password,value=x"},
		"[::1]:14500,auth=allow":     {"[::1]:14500", "allow"},
		"/run/xe.sock,auth=none":     {"/run/xe.sock", "none"},
	}
	for in, want := range cases {
		l, err := parseBind(in)
		if err != nil || l.Bind != want.bind || l.Auth != want.auth {
			t.Errorf("parseBind(%q) = %+v, %v", in, l, err)
		}
	}
	if _, err := parseBind("0.0.0.0:1,ssl=on"); err == nil {
		t.Error("unknown socket option accepted")
	}
}

func TestSeedCommandLinesParse(t *testing.T) {
	// The seed's xpra proxy lines with xpra replaced by xpra-edge.
	for _, line := range []string{
		":20 --tcp-auth=allow --bind-tcp=0.0.0.0:14501",
		":100 --bind-tcp=0.0.0.0:14501,auth=sqlite,filename=./xpra-auth.sdb --socket-dir=/tmp",
		":100 --bind-tcp 0.0.0.0:14501 --tcp-auth sqlite:filename=x.sdb --daemon=no",
	} {
		f, _, err := parseProxyArgs(strings.Fields(line))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		cfg, err := effectiveConfig(f)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if len(cfg.Listeners) != 1 || cfg.Listeners[0].Auth == "" || cfg.Display == "" {
			t.Fatalf("%q: %+v", line, cfg)
		}
	}
	if _, _, err := parseProxyArgs([]string{"--no-such-option"}); err == nil {
		t.Fatal("unknown option accepted")
	}
	if _, _, err := parseProxyArgs([]string{"100"}); err == nil {
		t.Fatal("a display without a colon accepted")
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(path, []byte("display = \":5\"\nauth = \"allow\"\n[[listener]]\nbind = \"127.0.0.1:1\"\n[log]\nlevel = \"warn\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _, err := parseProxyArgs([]string{":7", "--config=" + path, "--bind-tcp=127.0.0.1:2", "--log-level=debug", "--proxy-start-sessions=yes"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := effectiveConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Display != ":7" || len(cfg.Listeners) != 2 || cfg.Log.Level != "debug" || cfg.Sessions.Start == nil || !*cfg.Sessions.Start {
		t.Fatalf("%+v", cfg)
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runHashPassword(nil, strings.NewReader("s3cret\n"), &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	hash := strings.TrimSpace(out.String())
	if strings.Contains(hash, "s3cret") || !strings.HasPrefix(hash, "$argon2id$") {
		t.Fatalf("hash %q", hash)
	}
	a, err := auth.New(auth.Spec{Name: "toml"}, auth.Options{Users: []auth.User{{Name: "u", PasswordHash: hash}}})
	if err != nil {
		t.Fatal(err)
	}
	l := a.Begin("u", auth.Transport{Kind: "ssl", Encrypted: true})
	ch, err := l.Challenge([]string{"xor", "hmac+sha256"}, []string{"hmac+sha256"})
	if err != nil {
		t.Fatal(err)
	}
	resp, salt, err := auth.Respond([]byte("s3cret"), *ch, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(context.Background(), resp, salt); err != nil {
		t.Fatalf("the printed hash does not verify: %v", err)
	}
	if code := runHashPassword(nil, strings.NewReader("\n"), &out, &errb); code == 0 {
		t.Fatal("empty password hashed")
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	for _, cmd := range []string{"proxy", "sqlite", "list", "info", "stop", "reload", "check-config", "hash-password", "version"} {
		if !strings.Contains(out.String(), "xpra-edge "+cmd) {
			t.Errorf("--help does not list %s", cmd)
		}
	}
	for _, flag := range []string{"--bind-tcp", "--tcp-auth", "--socket-dir", "--socket-dirs", "--ssl-cert", "--config", "--admin-bind", "--drain", "--proxy-start-sessions", "--dev"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
}

// TestSubcommandHelp: "xpra-edge COMMAND --help" prints the usage and
// succeeds instead of taking --help for a target, file or argument.
func TestSubcommandHelp(t *testing.T) {
	for _, cmd := range []string{"list", "info", "id", "stop", "reload", "check-config", "hash-password", "version", "proxy", "sqlite", "pg"} {
		var out, errb bytes.Buffer
		if code := run([]string{cmd, "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "xpra-edge "+cmd) {
			t.Errorf("xpra-edge %s --help: exit %d, stdout %q, stderr %q", cmd, code, out.String(), errb.String())
		}
	}
}

func TestSSLOnAloneGetsADefaultStateDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	f, _, err := parseProxyArgs([]string{":7", "--bind-tcp=127.0.0.1:2,auth=allow", "--ssl=on"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := effectiveConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("--ssl=on alone: %v", err)
	}
	if cfg.TLS.Mode != "self-signed" || !filepath.IsAbs(cfg.TLS.StateDir) || filepath.Base(cfg.TLS.StateDir) != "tls" {
		t.Fatalf("tls = %+v", cfg.TLS)
	}
}

func TestCheckConfigLeavesListenersToTheCommandLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(path, []byte("auth = \"allow\"\n[tls]\nmode = \"self-signed\"\nstate_dir = \""+dir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if rc := runCheckConfig([]string{path}, &out, &errb); rc != 0 {
		t.Fatalf("check-config of a file without [[listener]]: rc %d: %s", rc, errb.String())
	}
	if !strings.Contains(out.String(), "no [[listener]]") || !strings.Contains(out.String(), ": ok") {
		t.Fatalf("check-config output: %q", out.String())
	}
	// A real problem still fails.
	if err := os.WriteFile(path, []byte("auth = \"allow\"\n[log]\nlevel = \"loud\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if rc := runCheckConfig([]string{path}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "log.level") {
		t.Fatalf("check-config of a bad file: rc %d: %s", rc, errb.String())
	}
}

func TestAnySystemUserListenersAsRoot(t *testing.T) {
	for _, tc := range []struct {
		bind, module string
		root, opt    bool
		refused      bool
	}{
		{"0.0.0.0:443", "allow", true, false, true},
		{"[::]:443", "password", true, false, true},
		{"192.0.2.7:443", "none", true, false, true},
		{"0.0.0.0:443", "allow", true, true, false},   // any_system_user = true
		{"0.0.0.0:443", "allow", false, false, false}, // not root: the proxy's own user only
		{"0.0.0.0:443", "pam", true, false, false},
		{"0.0.0.0:443", "sqlite", true, false, false},
		{"127.0.0.1:14500", "allow", true, false, false},
		{"[::1]:14500", "allow", true, false, false},
		{"localhost:14500", "none", true, false, false},
		{"/run/xpra-edge/s", "allow", true, false, false},
	} {
		err := checkAnySystemUser(tc.root, config.Listener{Bind: tc.bind, AnySystemUser: tc.opt}, tc.module)
		if (err != nil) != tc.refused {
			t.Errorf("%+v: err = %v", tc, err)
		}
	}
}

// [portal] needs [tls] and bounded durations; with them it parses.
func TestPortalConfig(t *testing.T) {
	for _, tc := range []struct {
		text, problem string
	}{
		{"[portal]\nenable = true\n", "portal.enable: the portal needs [tls]"},
		{"[tls]\nmode = \"self-signed\"\n[portal]\nenable = true\nticket_ttl = \"1h\"\n", "portal.ticket_ttl"},
		{"[tls]\nmode = \"self-signed\"\n[portal]\nenable = true\nadmin_group = \"wheel\"\nadmin_users = [\"a\"]\nlogin_ttl = \"2h\"\nidle_timeout = \"10m\"\nticket_ttl = \"30s\"\n", ""},
		{"[portal]\nenabled = true\n", "unknown key(s): portal.enabled"},
		{"[tls]\nmode = \"self-signed\"\n[web]\ndisable = true\n[portal]\nenable = true\n", "[web] disable = true"},
	} {
		c, err := config.Parse([]byte("auth = \"allow\"\n[[listener]]\nbind = \"127.0.0.1:1\"\n" + tc.text))
		if err != nil {
			if tc.problem == "" || !strings.Contains(err.Error(), tc.problem) {
				t.Errorf("%q: %v", tc.text, err)
			}
			continue
		}
		c.FillDefaults()
		err = c.Validate()
		switch {
		case tc.problem == "" && err != nil:
			t.Errorf("%q: %v", tc.text, err)
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("%q: %v, want %q", tc.text, err, tc.problem)
		}
	}
}
