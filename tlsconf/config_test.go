package tlsconf

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateNamesTheField(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(notPEM, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // fields named in the error; none means valid
	}{
		{"acme ok", Config{Mode: "acme", Domains: []string{"a.example.com"}, StateDir: dir}, nil},
		{"acme on-demand ok", Config{Mode: "acme", OnDemand: true, OnDemandAllow: []string{"*.example.com"}, Storage: dir}, nil},
		{"static ok", Config{Mode: "static", CertFile: "c", KeyFile: "k"}, nil},
		{"self-signed ok", Config{Mode: "self-signed", StateDir: dir, Domains: []string{"desk.lan", "10.0.0.1"}}, nil},
		{"no mode", Config{}, []string{"tls.mode"}},
		{"bad mode", Config{Mode: "letsencrypt"}, []string{"tls.mode"}},
		{"acme nothing", Config{Mode: "acme"}, []string{"tls.domains", "tls.storage"}},
		{"on-demand no list", Config{Mode: "acme", OnDemand: true, StateDir: dir}, []string{"tls.on_demand_allow"}},
		{"http ca", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, CA: "http://ca/dir"}, []string{"tls.ca"}},
		{"ca_root missing", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, CARoot: filepath.Join(dir, "none")}, []string{"tls.ca_root"}},
		{"ca_root not pem", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, CARoot: notPEM}, []string{"tls.ca_root"}},
		{"email", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, Email: "admin"}, []string{"tls.email"}},
		{"wildcard domain", Config{Mode: "acme", Domains: []string{"*.a.b"}, StateDir: dir}, []string{"tls.domains[0]"}},
		{"bad allow", Config{Mode: "acme", OnDemand: true, OnDemandAllow: []string{"ok.b", "a b"}, StateDir: dir}, []string{"tls.on_demand_allow[1]"}},
		{"bad http_bind", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, HTTPBind: "80"}, []string{"tls.http_bind"}},
		{"no challenge", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, DisableTLSALPN: true}, []string{"tls.disable_tls_alpn"}},
		{"key type", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, KeyType: "dsa"}, []string{"tls.key_type"}},
		{"port", Config{Mode: "acme", Domains: []string{"a.b"}, StateDir: dir, TLSPort: 70000}, []string{"tls.tls_port"}},
		{"static no files", Config{Mode: "static"}, []string{"tls.cert_file", "tls.key_file"}},
		{"static on-demand", Config{Mode: "static", CertFile: "c", KeyFile: "k", OnDemand: true}, []string{"tls.on_demand"}},
		{"self-signed http", Config{Mode: "self-signed", StateDir: dir, HTTPBind: ":80"}, []string{"tls.http_bind"}},
		{"self-signed no dir", Config{Mode: "self-signed"}, []string{"tls.state_dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("valid; want errors naming %v", tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not wrap ErrInvalid", err)
			}
			for _, f := range tt.want {
				var found bool
				for _, line := range strings.Split(err.Error(), "\n") {
					if strings.HasPrefix(line, f+": ") {
						found = true
					}
				}
				if !found {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Errorf("no *FieldError in %v", err)
			}
			if _, nerr := New(tt.cfg, nil); nerr == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	a := newAllowList([]string{"Exact.Example.com", "*.wild.example.com", "10.1.2.3"})
	for name, want := range map[string]bool{
		"exact.example.com":        true,
		"EXACT.example.com.":       true,
		"x.exact.example.com":      false,
		"a.wild.example.com":       true,
		"a.b.wild.example.com":     true,
		"wild.example.com":         false,
		"xwild.example.com":        false,
		".wild.example.com":        false,
		"a.wild.example.com.evil":  false,
		"*.wild.example.com":       false,
		"10.1.2.3":                 true,
		"":                         false,
		"example.com":              false,
		"a.wild.example.com/x":     false,
		"exact.example.com.evil.c": false,
	} {
		if got := a.allowed(name); got != want {
			t.Errorf("allowed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestHTTPHandlerRedirects(t *testing.T) {
	m, err := New(Config{Mode: ModeStatic, CertFile: "x", KeyFile: "y"}, nil)
	if err == nil || m != nil {
		t.Fatal("static New with missing files succeeded")
	}
	dir := t.TempDir()
	m, err = New(Config{Mode: ModeSelfSigned, StateDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, host, target, want string
		code                       int
	}{
		{"GET", "desk.example.com", "/a?b=c", "https://desk.example.com/a?b=c", 301},
		{"GET", "desk.example.com:8080", "/", "https://desk.example.com/", 301},
		{"POST", "desk.example.com", "/x", "https://desk.example.com/x", 308},
		{"GET", "[::1]:80", "/", "https://[::1]/", 301},
		{"GET", "bad host\r", "/", "", 400},
	} {
		r := httptest.NewRequest(tc.method, "http://placeholder"+tc.target, nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		m.HTTPHandler(nil).ServeHTTP(w, r)
		if w.Code != tc.code || w.Header().Get("Location") != tc.want {
			t.Errorf("%s %s%s: %d %q, want %d %q", tc.method, tc.host, tc.target, w.Code, w.Header().Get("Location"), tc.code, tc.want)
		}
	}
	// A fallback replaces the redirect.
	w := httptest.NewRecorder()
	m.HTTPHandler(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest("GET", "http://h/", nil))
	if w.Code != http.StatusNotFound {
		t.Fatalf("fallback not used: %d", w.Code)
	}
	// https_port other than 443 appears in the redirect.
	m2, _ := New(Config{Mode: ModeSelfSigned, StateDir: dir, HTTPSPort: 8443}, nil)
	w = httptest.NewRecorder()
	r := httptest.NewRequest("GET", "http://h/p", nil)
	r.Host = "desk.example.com"
	m2.HTTPHandler(nil).ServeHTTP(w, r)
	if got := w.Header().Get("Location"); got != "https://desk.example.com:8443/p" {
		t.Fatalf("Location %q", got)
	}
}

func TestRateWindow(t *testing.T) {
	var w rateWindow
	t0 := time.Unix(1_000_000, 0)
	for i := 0; i < 3; i++ {
		if !w.allow(t0.Add(time.Duration(i)*time.Minute), 3) {
			t.Fatalf("event %d refused", i)
		}
	}
	if w.allow(t0.Add(59*time.Minute), 3) {
		t.Fatal("fourth event within the hour allowed")
	}
	if !w.allow(t0.Add(61*time.Minute), 3) {
		t.Fatal("event after the first left the window refused")
	}
}
