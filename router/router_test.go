package router

import (
	"errors"
	"strings"
	"testing"
)

type fakeLister map[int][]Session

func (f fakeLister) LiveSessions(uid int) ([]Session, error) {
	if s, ok := f[uid]; ok {
		return s, nil
	}
	return nil, errors.New("no such uid")
}

func refusal(t *testing.T, err error) *Refusal {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("want a *Refusal, got %v", err)
	}
	return r
}

func TestDeclaredDisplayRules(t *testing.T) {
	r := &Router{}
	two := []string{"tcp://10.0.0.5:10100/200", "tcp://10.0.0.5:10101/201"}
	cases := []struct {
		name, display string
		declared      []string
		want          string // address, or "" when refused
		detail        string
	}{
		{"single entry picked", "", []string{"tcp://h:10100/"}, "h:10100", ""},
		{"several need a display", "", two, "", "please specify a display, more than one is available: :200, :201"},
		{"display by URL path", "/201", two, "10.0.0.5:10101", ""},
		{"display by number", "200", two, "10.0.0.5:10100", ""},
		{"display with colon", ":201", two, "10.0.0.5:10101", ""},
		{"unknown display", ":7", two, "", "display ':7' not found"},
		{"exact entry match", "tcp://10.0.0.5:10101/201", two, "10.0.0.5:10101", ""},
		{"empty entries", "", []string{" ", ""}, "", "no displays found"},
		{"default port", "", []string{"tcp://h/"}, "h:14500", ""},
		{"bad entry", "", []string{"gopher://h:1/"}, "", "invalid display string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := r.Route(Request{Display: c.display, Declared: c.declared})
			if c.want == "" {
				rf := refusal(t, err)
				if rf.Reason != ReasonSessionNotFound || rf.Detail != c.detail {
					t.Fatalf("refusal = %q / %q, want %q", rf.Reason, rf.Detail, c.detail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Address != c.want {
				t.Fatalf("address = %q, want %q", got.Address, c.want)
			}
		})
	}
}

func TestCredentialsAndOptions(t *testing.T) {
	r := &Router{}
	got, err := r.Route(Request{Declared: []string{"tcp://bob:s3cret@h:1/"}, Options: map[string]string{"compression": "0"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "bob" || got.Password != "s3cret" || !got.HasPassword {
		t.Fatalf("credentials = %q %q %v", got.Username, got.Password, got.HasPassword)
	}
	if got.Options["compression"] != "0" {
		t.Fatalf("options = %v", got.Options)
	}
	if s := got.String(); s != "tcp://h:1" {
		t.Fatalf("String() = %q must not show the password", s)
	}
	if got.Display != "tcp://bob@h:1/" {
		t.Fatalf("Display = %q must not show the password", got.Display)
	}
	// The password= session option is a backend password too.
	got, err = r.Route(Request{Declared: []string{"tcp://h:1/"}, Options: map[string]string{"password": "p"}})
	if err != nil || got.Password != "p" || !got.HasPassword {
		t.Fatalf("password option: %+v %v", got, err)
	}
	// Backend users, hosts and passwords are never listed (issue 11 item 9).
	_, err = r.Route(Request{Declared: []string{"tcp://a:pw@h:1/", "tcp://b:pw@h:2/"}})
	if rf := refusal(t, err); rf.Detail != "please specify a display, more than one is available: 2 without a display name" {
		t.Fatalf("detail = %q", rf.Detail)
	}
}

func TestLocalSessions(t *testing.T) {
	r := &Router{
		Sessions: fakeLister{1000: {{":100", "/run/user/1000/xpra/h-100"}, {":101", "/run/user/1000/xpra/h-101"}, {":proxy-3", "/x"}},
			1001: {{":20", "/tmp/h-20"}}, 1002: nil},
		Exclude: []string{":20"},
	}
	got, err := r.Route(Request{Local: true, UID: 1000, Display: "101"})
	if err != nil || got.Scheme != "unix" || got.Address != "/run/user/1000/xpra/h-101" || got.Display != ":101" {
		t.Fatalf("got %+v, %v", got, err)
	}
	_, err = r.Route(Request{Local: true, UID: 1000})
	if rf := refusal(t, err); rf.Detail != "please specify a display, more than one is available: :100, :101" {
		t.Fatalf("detail = %q", rf.Detail)
	}
	// The proxy's own display is never offered.
	_, err = r.Route(Request{Local: true, UID: 1001})
	if rf := refusal(t, err); rf.Detail != "no displays found" {
		t.Fatalf("detail = %q", rf.Detail)
	}
	_, err = r.Route(Request{Local: true, UID: 7})
	if rf := refusal(t, err); rf.Reason != ReasonAuthError || rf.Detail != "cannot access sessions" {
		t.Fatalf("refusal = %+v", rf)
	}
	// ":N" declared by a module is looked up among the uid's sessions.
	got, err = r.Route(Request{Declared: []string{":100"}, UID: 1000})
	if err != nil || got.Address != "/run/user/1000/xpra/h-100" {
		t.Fatalf("got %+v, %v", got, err)
	}
	_, err = r.Route(Request{Declared: []string{":105"}, UID: 1000})
	if rf := refusal(t, err); rf.Detail != "display ':105' not found" {
		t.Fatalf("detail = %q", rf.Detail)
	}
	// A declared display owned by another uid is found in the proxy's own
	// socket directories, as xpra's proxy finds it.
	r.Sessions.(fakeLister)[AnyOwner] = []Session{{Display: ":1194", Socket: "/run/xpra/h-1194"}}
	got, err = r.Route(Request{Declared: []string{":1193", ":1194"}, Display: "1194", UID: 1000})
	if err != nil || got.Address != "/run/xpra/h-1194" || got.Display != ":1194" {
		t.Fatalf("declared display of another uid: got %+v, %v", got, err)
	}
	// Only declared displays: an undeclared one stays unreachable.
	_, err = r.Route(Request{Declared: []string{":1193"}, Display: "1194", UID: 1000})
	if rf := refusal(t, err); rf.Detail != "display ':1194' not found" {
		t.Fatalf("undeclared display: %q", rf.Detail)
	}
	_, err = r.Route(Request{})
	if rf := refusal(t, err); rf.Detail != "no sessions found" {
		t.Fatalf("detail = %q", rf.Detail)
	}
}

func TestParseTarget(t *testing.T) {
	r := &Router{}
	cases := map[string]Target{
		"socket:///run/xpra/h-100": {Scheme: "unix", Address: "/run/xpra/h-100"},
		"/tmp/sock":                {Scheme: "unix", Address: "/tmp/sock"},
		"ssl://h:443/":             {Scheme: "ssl", Address: "h:443"},
		"wss://h/desk":             {Scheme: "wss", Address: "h:14500", Path: "/desk"},
		"ws://[::1]:80":            {Scheme: "ws", Address: "[::1]:80", Path: "/"},
		"tcp://127.0.0.1:10100/":   {Scheme: "tcp", Address: "127.0.0.1:10100"},
	}
	for in, want := range cases {
		got, err := r.ParseTarget(in)
		if err != nil || got.Scheme != want.Scheme || got.Address != want.Address || got.Path != want.Path {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"tcp://:1/", "tcp://h:0/", "tcp://h:99999/", "ftp://h/", ":abc", "socket://"} {
		if _, err := r.ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
}

func TestRouteTablePrecedence(t *testing.T) {
	tbl := &Table{Routes: []Route{
		{Name: "any", Targets: []string{"tcp://any:1/"}},
		{Name: "wild", Host: "*.example.com", Targets: []string{"tcp://wild:1/"}},
		{Name: "exact", Host: "desk.example.com", Targets: []string{"tcp://exact:1/"}},
		{Name: "exact-team", Host: "desk.example.com", PathPrefix: "/team", Targets: []string{"tcp://team:1/"}},
		{Name: "exact-team-bob", Host: "desk.example.com", PathPrefix: "/team", Users: []string{"bob"}, Targets: []string{"tcp://bob:1/"}},
	}}
	if err := tbl.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &Router{Routes: tbl}
	cases := []struct{ sni, path, user, want string }{
		{"other.org", "", "amy", "any:1"},
		{"x.example.com", "", "amy", "wild:1"},
		{"example.com", "", "amy", "any:1"},
		{"DESK.example.com.", "", "amy", "exact:1"},
		{"desk.example.com", "/team/x", "amy", "team:1"},
		{"desk.example.com", "/teams", "amy", "exact:1"},
		{"desk.example.com", "/team?display=1", "bob", "bob:1"},
	}
	for _, c := range cases {
		got, err := r.Route(Request{SNI: c.sni, Path: c.path, User: c.user})
		if err != nil || got.Address != c.want {
			t.Errorf("%s%s as %s: got %q (%v), want %q", c.sni, c.path, c.user, got.Address, err, c.want)
		}
	}
}

func TestStrictTableRefusesUnknownHost(t *testing.T) {
	r := &Router{Routes: &Table{Strict: true, Routes: []Route{{Host: "a.example.com", Targets: []string{"tcp://a:1/"}}}}}
	_, err := r.Route(Request{SNI: "b.example.com", Declared: []string{"tcp://mine:1/"}})
	if rf := refusal(t, err); rf.Detail != "no route for host 'b.example.com'" {
		t.Fatalf("detail = %q", rf.Detail)
	}
	// Not strict: falls through to the user's own sessions.
	r.Routes.Strict = false
	got, err := r.Route(Request{SNI: "b.example.com", Declared: []string{"tcp://mine:1/"}})
	if err != nil || got.Address != "mine:1" {
		t.Fatalf("got %+v %v", got, err)
	}
}

func TestTableValidate(t *testing.T) {
	for _, bad := range []Route{{Host: "a b"}, {Host: "*."}, {PathPrefix: "x"}, {Targets: []string{"nope://"}}} {
		if err := (&Table{Routes: []Route{bad}}).Validate(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestPathRouteIgnoresDisplayThatIsThePath(t *testing.T) {
	r := &Router{Routes: &Table{Routes: []Route{
		{Name: "a", PathPrefix: "/desk-a", Targets: []string{"tcp://a:1/"}},
		{Name: "b", PathPrefix: "/desk-b", Targets: []string{"tcp://b:1/", "tcp://b:2/200"}},
	}}}
	got, err := r.Route(Request{Path: "/desk-a", Display: "desk-a"})
	if err != nil || got.Address != "a:1" {
		t.Fatalf("got %+v %v", got, err)
	}
	// A real display still picks among the route's targets.
	got, err = r.Route(Request{Path: "/desk-b", Display: ":200"})
	if err != nil || got.Address != "b:2" {
		t.Fatalf("got %+v %v", got, err)
	}
	_, err = r.Route(Request{Path: "/desk-b", Display: "desk-b"})
	if rf := refusal(t, err); !strings.Contains(rf.Detail, "please specify a display") {
		t.Fatalf("detail %q", rf.Detail)
	}
}
