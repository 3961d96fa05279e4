package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/router"
)

// webProxy serves web on a plain listener.
func webProxy(t *testing.T, web Web) string {
	t.Helper()
	ln := loopback(t)
	srv := serveTest(t, Config{Web: web, State: State{Router: &router.Router{}, Limits: Limits{AuthFailDelay: -1},
		Listeners: []*Listener{{Name: "t", Listener: ln, Auth: tomlAuth(t), AllowPlain: true}}}})
	// Let upgraded WebSockets end before the server stops (a hijacked
	// handler may otherwise outlive Serve).
	t.Cleanup(func() { waitUnauth(t, srv, 0) })
	return ln.Addr().String()
}

// rawGet sends one request (extra header lines included) and returns the
// response with its body read.
func rawGet(t *testing.T, addr, path string, header ...string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	var body string
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
	}
	resp.Body.Close()
	return resp, body
}

var wsHeaders = []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: binary"}

// Issue 11, item 15: a WebSocket request whose Origin is neither the
// proxy's own (host:port of the Host) nor configured is refused; one
// without Origin (xpra's Python client) is upgraded. Before, any web page
// could open one.
func TestWebSocketOriginCheck(t *testing.T) {
	addr := webProxy(t, Web{AllowedOrigins: []string{"https://portal.example.com"}})
	_, port, _ := net.SplitHostPort(addr)
	for origin, want := range map[string]int{
		"":                                 http.StatusSwitchingProtocols,
		"http://" + addr:                   http.StatusSwitchingProtocols,
		"https://" + addr:                  http.StatusSwitchingProtocols,
		"HTTPS://PORTAL.example.com":       http.StatusSwitchingProtocols,
		"https://evil.example":             http.StatusForbidden,
		"https://evil.example:" + port:     http.StatusForbidden,
		"http://127.0.0.1":                 http.StatusForbidden, // port 80, not the Host's
		"null":                             http.StatusForbidden,
		"https://portal.example.com.evil":  http.StatusForbidden,
		"http://user@" + addr:              http.StatusForbidden,
		"https://portal.example.com:8443":  http.StatusForbidden,
		"chrome-extension://abcdefghijklm": http.StatusForbidden,
	} {
		h := append([]string(nil), wsHeaders...)
		if origin != "" {
			h = append(h, "Origin: "+origin)
		}
		if resp, body := rawGet(t, addr, "/", h...); resp.StatusCode != want {
			t.Errorf("Origin %q: %s %q, want %d", origin, resp.Status, body, want)
		}
	}
	if !sameHostPort("example.com", "example.com:443", "443") || sameHostPort("example.com", "example.com:8443", "443") {
		t.Error("default ports")
	}
}

// Issue 11, item 16: no directory listings, no dot files, no symlink out
// of the web root except to what the root's own links point at under
// AllowedLinkDirs (Debian's jquery in /usr/share/javascript), a
// Content-Security-Policy on files, and Disable honoured with a Root set.
func TestWebRootHardening(t *testing.T) {
	root, outside, libs := t.TempDir(), t.TempDir(), t.TempDir()
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "index.html"), "the client")
	write(filepath.Join(root, "js", "app.js"), "app")
	write(filepath.Join(root, ".git", "config"), "secret-git")
	write(filepath.Join(outside, "secret.txt"), "secret-outside")
	write(filepath.Join(libs, "jquery", "jquery.js"), "jquery")
	write(filepath.Join(libs, "jquery", "other.js"), "not-linked")
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(filepath.Join(libs, "jquery", "jquery.js"), "js/jquery.js")
	link(filepath.Join(outside, "secret.txt"), "js/secret.js")
	link(outside, "out")
	link(filepath.Join(libs, "jquery"), "libdir")
	old := AllowedLinkDirs
	AllowedLinkDirs = []string{libs}
	t.Cleanup(func() { AllowedLinkDirs = old })

	addr := webProxy(t, Web{Root: root})
	for path, want := range map[string]string{
		"/":                "200 the client",
		"/index.html":      "200 the client",
		"/js/app.js":       "200 app",
		"/js/jquery.js":    "200 jquery",
		"/js/":             "404",
		"/js":              "301",
		"/.git/config":     "404",
		"/js/secret.js":    "404",
		"/out/secret.txt":  "404",
		"/out/":            "404",
		"/libdir/other.js": "404",
		"/../" + filepath.Base(outside) + "/secret.txt": "307", // the mux cleans the path: redirected into the root
	} {
		resp, body := rawGet(t, addr, path)
		got := fmt.Sprint(resp.StatusCode)
		if resp.StatusCode == 200 {
			got += " " + body
		}
		if got != want {
			t.Errorf("GET %s: %q, want %q", path, got, want)
		}
		for _, secret := range []string{"secret", "not-linked", "app.js"} {
			if strings.Contains(body, secret) && resp.StatusCode != 200 && resp.StatusCode/100 != 3 {
				t.Errorf("GET %s shows %q: %q", path, secret, body)
			}
		}
		if resp.StatusCode == 200 {
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self'") || !strings.Contains(csp, "object-src 'none'") {
				t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
			}
		}
	}
	// [web] disable = true with a root: nothing is served.
	addr = webProxy(t, Web{Root: root, Disable: true})
	if resp, _ := rawGet(t, addr, "/index.html"); resp.StatusCode != 404 {
		t.Errorf("disabled web root: GET /index.html: %s", resp.Status)
	}
}
