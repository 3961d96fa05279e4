package edge

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/wsconn"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
	"github.com/xpra-edge/xpra-edge/router"
)

// tlsRecorder serves the recorder over TLS (ssl://) and over wss://.
func tlsRecorder(t *testing.T) (sslAddr, wssAddr string, rec *recorder, roots *x509.CertPool) {
	t.Helper()
	rec = startRecorder(t)
	cert, pool := testCert(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go rec.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	wln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := wsconn.Upgrade(w, r)
		if err != nil {
			return
		}
		rec.mu.Lock()
		rec.packets = append(rec.packets, "path:"+r.URL.Path)
		rec.mu.Unlock()
		rec.serve(c)
	})}
	go func() { _ = hs.Serve(wln) }()
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), wln.Addr().String(), rec, pool
}

func backendProxy(t *testing.T, displays []string, roots *x509.CertPool) string {
	t.Helper()
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: displays})
	ln := loopback(t)
	d := &BackendDialer{WebSocket: wsconn.Dial}
	if roots != nil {
		d.TLS = &tls.Config{RootCAs: roots}
	}
	serveTest(t, Config{
		State: State{Router: &router.Router{}, Dialer: d, Limits: Limits{AuthFailDelay: -1},
			Listeners: []*Listener{{Name: "t", Listener: ln, Auth: a, AllowPlain: true}}},
	})
	return ln.Addr().String()
}

func TestSSLAndWSSBackends(t *testing.T) {
	sslAddr, wssAddr, rec, roots := tlsRecorder(t)
	port := func(a string) string { _, p, _ := net.SplitHostPort(a); return p }
	for _, target := range []string{"ssl://localhost:" + port(sslAddr) + "/", "wss://localhost:" + port(wssAddr) + "/desk/7"} {
		addr := backendProxy(t, []string{target}, roots)
		c := connect(t, addr, xprawire.Rencode)
		if _, err := c.Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if err := c.Send(xprawire.Packet{"echo-me"}); err != nil {
			t.Fatal(err)
		}
		if p, err := c.Read(time.Now().Add(5 * time.Second)); err != nil || p.Type() != "echoed" {
			t.Fatalf("%s relay: %v %v", target, p, err)
		}
	}
	if !rec.saw("path:/desk/7") {
		t.Fatal("the wss backend did not get the path")
	}
	// Without the backend's CA the proxy refuses to connect: no silent
	// insecure default.
	addr := backendProxy(t, []string{"ssl://localhost:" + port(sslAddr) + "/"}, nil)
	_, err := connect(t, addr, xprawire.Rencode).Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 5*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || !strings.Contains(strings.Join(de.Reasons, " "), "failed to connect to display") {
		t.Fatalf("unverified backend: %v", err)
	}
}

// TestNoSecretsInLogs logs in at debug level and checks that neither the
// password, the salts nor the response appear in the log.
func TestNoSecretsInLogs(t *testing.T) {
	f := newFixture(t, []auth.User{{Name: "foo", Password: "hunter2-secret", Displays: []string{"tcp://BACKEND/"}}}, nil)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	xc := xpraclient.New(c, xprawire.Rencode)
	caps := xpraclient.BaseCaps("foo")
	caps.Set("challenge", true)
	if err := xc.Send(xprawire.Packet{"hello", caps}); err != nil {
		t.Fatal(err)
	}
	p, err := xc.Read(time.Now().Add(5 * time.Second))
	if err != nil || p.Type() != "challenge" {
		t.Fatalf("%v %v", p, err)
	}
	salt := anyBytes(p[1])
	ch := auth.Challenge{Salt: salt, Digest: string(anyBytes(p[3])), SaltDigest: string(anyBytes(p[4]))}
	resp, clientSalt, err := auth.Respond([]byte("hunter2-secret"), ch, false)
	if err != nil {
		t.Fatal(err)
	}
	caps.Set("challenge_response", resp)
	caps.Set("challenge_client_salt", clientSalt)
	caps.Set("bench.mode", "idle")
	if err := xc.Send(xprawire.Packet{"hello", caps}); err != nil {
		t.Fatal(err)
	}
	if p, err := xc.Read(time.Now().Add(5 * time.Second)); err != nil || p.Type() != "hello" {
		t.Fatalf("%v %v", p, err)
	}
	// A failed attempt too.
	if _, err := f.login("foo", "wrong-hunter3", benchpeerIdle); err == nil {
		t.Fatal("wrong password accepted")
	}
	log := f.log.String()
	for name, secret := range map[string]string{
		"password": "hunter2-secret", "wrong password": "wrong-hunter3",
		"salt (hex)": hex.EncodeToString(salt), "salt (raw)": string(salt[:16]),
		"client salt (hex)": hex.EncodeToString(clientSalt), "response": string(resp),
	} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
	if !strings.Contains(log, "session started") {
		t.Fatal("nothing was logged; the test proves nothing")
	}
}

// TestBackendToldTheURLUser: the backend's hello names the display URL's
// user when it has one (a backend with its own auth checks that name), else
// the identity the proxy authenticated, never a name the client chose.
func TestBackendToldTheURLUser(t *testing.T) {
	rec := startRecorder(t)
	for _, tc := range []struct{ display, want string }{
		{"tcp://backenduser@" + rec.ln.Addr().String() + "/", "backenduser"},
		{"tcp://backenduser:pw@" + rec.ln.Addr().String() + "/", "backenduser"},
		{"tcp://" + rec.ln.Addr().String() + "/", "moo"},
	} {
		a := tomlAuth(t, auth.User{Name: "moo", Password: "cow", Displays: []string{tc.display}})
		addr, _ := miniProxy(t, a, Limits{})
		c := connect(t, addr, xprawire.Rencode)
		if _, err := c.Hello(xpraclient.BaseCaps("moo"), []byte("cow"), true, false, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", tc.display, err)
		}
		if got, _ := rec.lastHello(t).Str("username"); got != tc.want {
			t.Errorf("%s: backend told username %q, want %q", tc.display, got, tc.want)
		}
	}
}

// TestXORPassThroughRefusedOnPlainBackend: a backend on plain TCP that asks
// for the password as xor would get the client's password readable on the
// backend network: the proxy refuses to pass that challenge on, with a
// reason, and the backend never gets an answer.
func TestXORPassThroughRefusedOnPlainBackend(t *testing.T) {
	ln := loopback(t)
	answered := make(chan bool, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		pr := xprawire.NewPacketReader(bufio.NewReader(c))
		pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(c), xprawire.Rencode)
		if _, _, err := pr.ReadPacket(); err != nil {
			return
		}
		salt := strings.Repeat("s", 32)
		_ = pw.WritePacket(xprawire.Packet{"challenge", salt, "", "xor", "xor", "password"})
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, _, err := pr.ReadPacket()
		answered <- err == nil && p.Type() == "hello"
	}()
	addr := backendProxy(t, []string{"tcp://" + ln.Addr().String() + "/"}, nil)
	c := connect(t, addr, xprawire.Rencode)
	_, err := c.Hello(xpraclient.BaseCaps("u"), []byte("p"), true, true, 5*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || !strings.Contains(strings.Join(de.Reasons, " "), "reversible form over an unencrypted connection") {
		t.Fatalf("xor pass-through over plain tcp: %v", err)
	}
	select {
	case a := <-answered:
		if a {
			t.Fatal("the backend got an answer to its xor challenge")
		}
	case <-time.After(6 * time.Second):
	}
}
