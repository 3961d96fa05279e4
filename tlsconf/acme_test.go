package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestACMETLSALPN01(t *testing.T) {
	edge := listenEdge(t)
	p := startPebble(t, 1 /* HTTP-01 never used */, edge.port())
	name := testName("alpn")
	cfg := Config{
		Mode:     ModeACME,
		Domains:  []string{name},
		CA:       p.dirURL,
		CARoot:   p.caRootPEM,
		StateDir: t.TempDir(),
		TLSPort:  edge.port(),
	}
	m, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tc := m.TLSConfig()
	if !slices.Contains(tc.NextProtos, ACMETLS1) || !slices.Contains(tc.NextProtos, "http/1.1") {
		t.Fatalf("NextProtos = %v", tc.NextProtos)
	}
	edge.serve(tc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Start took %v; it must return quickly", d)
	}
	defer m.Stop()
	leaf := waitCert(t, edge.ln.Addr().String(), name, p.root(t), 60*time.Second)
	t.Logf("obtained through TLS-ALPN-01 in %v", time.Since(start))
	if !slices.Contains(leaf.DNSNames, name) {
		t.Fatalf("leaf names %v", leaf.DNSNames)
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("leaf key %T, want ECDSA", leaf.PublicKey)
	}
	if edge.challenges.Load() == 0 {
		t.Fatal("Pebble's VA made no TLS-ALPN-01 handshake on our listener")
	}
	if exp := m.Expiry()[name]; !exp.Equal(leaf.NotAfter) {
		t.Fatalf("Expiry()[%s] = %v, want %v", name, exp, leaf.NotAfter)
	}
	// A client without SNI (xpra dialling an address) gets the first domain.
	if noSNI, err := handshake(edge.ln.Addr().String(), "", nil, 5*time.Second); err != nil || !slices.Contains(noSNI.DNSNames, name) {
		t.Fatalf("handshake without SNI: %v", err)
	}
	// A name outside the configured domains is refused.
	if _, err := handshake(edge.ln.Addr().String(), testName("other"), nil, 5*time.Second); err == nil {
		t.Fatal("handshake for an unconfigured name succeeded")
	}
}

func TestACMEHTTP01(t *testing.T) {
	edge := listenEdge(t)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := httpLn.Addr().(*net.TCPAddr).Port
	p := startPebble(t, httpPort, 1 /* TLS-ALPN-01 disabled */)
	name := testName("http")
	cfg := Config{
		Mode:           ModeACME,
		Domains:        []string{name},
		CA:             p.dirURL,
		CARoot:         p.caRootPEM,
		StateDir:       t.TempDir(),
		HTTPBind:       httpLn.Addr().String(),
		DisableTLSALPN: true,
	}
	m, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var answered atomic.Int32
	h := m.HTTPHandler(nil)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			answered.Add(1)
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(httpLn) }()
	defer srv.Close()
	edge.serve(m.TLSConfig())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	leaf := waitCert(t, edge.ln.Addr().String(), name, p.root(t), 60*time.Second)
	t.Logf("obtained through HTTP-01 in %v", time.Since(start))
	if !slices.Contains(leaf.DNSNames, name) {
		t.Fatalf("leaf names %v", leaf.DNSNames)
	}
	if answered.Load() == 0 {
		t.Fatal("Pebble's VA made no HTTP-01 request to our handler")
	}
	if n := edge.challenges.Load(); n != 0 {
		t.Fatalf("%d TLS-ALPN-01 handshakes with the challenge disabled", n)
	}

	// Everything else on the port-80 listener redirects to https.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpLn.Addr().String()+"/a/b?c=d", nil)
	req.Host = name + ":80"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "https://"+name+"/a/b?c=d"; resp.StatusCode != http.StatusMovedPermanently || got != want {
		t.Fatalf("redirect %d %q, want 301 %q", resp.StatusCode, got, want)
	}
}

func TestACMEOnDemandAllowList(t *testing.T) {
	edge := listenEdge(t)
	p := startPebble(t, 1, edge.port())
	storage := filepath.Join(t.TempDir(), "acme")
	cfg := Config{
		Mode:          ModeACME,
		OnDemand:      true,
		OnDemandAllow: []string{"*.desk.xpra-edge.test", testName("exact")},
		OnDemandLimit: 3,
		CA:            p.dirURL,
		CARoot:        p.caRootPEM,
		Storage:       storage,
		TLSPort:       edge.port(),
	}
	m, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[tls.Config]
	current.Store(m.TLSConfig())
	edge.serve(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return current.Load(), nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	roots := p.root(t)
	addr := edge.ln.Addr().String()

	// Refused names fail the handshake and reach no CA.
	for _, name := range []string{testName("evil"), "desk.xpra-edge.test", "a.desk.xpra-edge.test.evil.test", "example.com"} {
		if _, err := handshake(addr, name, nil, 10*time.Second); err == nil {
			t.Fatalf("handshake for refused %s succeeded", name)
		}
	}
	if n := p.newOrders.Load(); n != 0 {
		t.Fatalf("%d ACME orders placed for refused names", n)
	}

	// Allowed names are obtained during the first handshake.
	for _, name := range []string{"a.desk.xpra-edge.test", "b.c.desk.xpra-edge.test", testName("exact")} {
		start := time.Now()
		leaf, err := handshake(addr, name, roots, 60*time.Second)
		if err != nil {
			t.Fatalf("on-demand %s: %v", name, err)
		}
		t.Logf("on-demand %s issued during the handshake in %v", name, time.Since(start))
		if !slices.Contains(leaf.DNSNames, name) {
			t.Fatalf("leaf names %v for %s", leaf.DNSNames, name)
		}
		if m.Expiry()[name].IsZero() {
			t.Fatalf("no expiry for %s: %v", name, m.Expiry())
		}
	}
	orders := p.newOrders.Load()
	if orders != 3 {
		t.Fatalf("%d orders for 3 allowed names", orders)
	}
	// on_demand_limit = 3: a fourth allowed name within the hour is
	// refused before any order.
	if _, err := handshake(addr, "d.desk.xpra-edge.test", nil, 30*time.Second); err == nil {
		t.Fatal("fourth on-demand name within the limit's hour succeeded")
	}
	if p.newOrders.Load() != orders {
		t.Fatal("an order was placed over on_demand_limit")
	}
	// Names already issued are still served.
	if _, err := handshake(addr, "a.desk.xpra-edge.test", roots, 10*time.Second); err != nil {
		t.Fatalf("issued name after the limit: %v", err)
	}

	// After a restart, names kept in storage are loaded at their first
	// handshake without counting against the limit and without orders.
	m.Stop()
	cfg.OnDemandLimit = 1
	m2, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	current.Store(m2.TLSConfig())
	if err := m2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m2.Stop()
	for _, name := range []string{"a.desk.xpra-edge.test", "b.c.desk.xpra-edge.test", testName("exact")} {
		if _, err := handshake(addr, name, roots, 10*time.Second); err != nil {
			t.Fatalf("kept %s after restart: %v", name, err)
		}
	}
	if p.newOrders.Load() != orders {
		t.Fatal("restart placed orders for kept on-demand names")
	}
	if n := len(m2.Expiry()); n != 3 {
		t.Fatalf("Expiry after restart has %d names: %v", n, m2.Expiry())
	}
	// Refused again after issuance elsewhere; still no orders.
	if _, err := handshake(addr, testName("evil2"), nil, 10*time.Second); err == nil {
		t.Fatal("refused name succeeded")
	}
	if p.newOrders.Load() != orders {
		t.Fatal("an order was placed for a refused name")
	}
}

func TestACMEKeptAcrossRestartAndReload(t *testing.T) {
	edge := listenEdge(t)
	var current atomic.Pointer[tls.Config]
	edge.serve(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return current.Load(), nil
	}})
	p := startPebble(t, 1, edge.port())
	roots := p.root(t)
	addr := edge.ln.Addr().String()
	a, b := testName("keep-a"), testName("keep-b")
	cfg := Config{Mode: ModeACME, Domains: []string{a}, CA: p.dirURL, CARoot: p.caRootPEM,
		StateDir: t.TempDir(), TLSPort: edge.port(), Email: "admin@xpra-edge.test"}

	m1, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	current.Store(m1.TLSConfig())
	if err := m1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := waitCert(t, addr, a, roots, 60*time.Second)
	m1.Stop()
	orders := p.newOrders.Load()

	// A new Manager on the same storage serves the kept certificate: no new order.
	m2, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	current.Store(m2.TLSConfig())
	if _, err := handshake(addr, a, roots, 5*time.Second); err == nil {
		t.Fatal("handshake before Start succeeded")
	}
	if err := m2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m2.Stop()
	again := waitCert(t, addr, a, roots, 30*time.Second)
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("restart served serial %s, want the kept %s", again.SerialNumber, first.SerialNumber)
	}
	if p.newOrders.Load() != orders {
		t.Fatal("restart placed a new order")
	}

	// Reload adds a domain: obtained in the background.
	cfg.Domains = []string{a, b}
	if err := m2.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	waitCert(t, addr, b, roots, 60*time.Second)
	if exp := m2.Expiry(); exp[a].IsZero() || exp[b].IsZero() {
		t.Fatalf("Expiry %v", exp)
	}
	// Reload drops a domain: refused from then on.
	cfg.Domains = []string{b}
	if err := m2.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, a, roots, 5*time.Second); err == nil {
		t.Fatal("dropped domain still served")
	}
	if _, ok := m2.Expiry()[a]; ok {
		t.Fatal("dropped domain still in Expiry")
	}
}

func TestACMEStartFailsOnUnusableStorage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Mode: ModeACME, Domains: []string{"a.example.com"}, Storage: filepath.Join(file, "acme"),
		CA: "https://127.0.0.1:1/dir"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with storage under a regular file")
	} else {
		t.Logf("Start: %v", err)
	}
	m.Stop()
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"}); err == nil {
		t.Fatal("certificate served after a failed Start")
	}
}
