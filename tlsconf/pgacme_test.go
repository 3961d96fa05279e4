package tlsconf

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

// TestACMETwoNodesSharePostgres: two managers (two nodes) share one
// PostgreSQL and start at the same moment. Pebble sees one order, its
// TLS-ALPN-01 validation reaches only node a's port (whichever node
// placed the order, the other answers from the shared storage), and both
// serve the same certificate, verified against Pebble's root. Each node's
// own state directory stays empty of ACME data.
func TestACMETwoNodesSharePostgres(t *testing.T) {
	c := pgtest.Start(t)
	edgeA, edgeB := listenEdge(t), listenEdge(t)
	p := startPebble(t, 1, edgeA.port())
	name := testName("fleet")
	managers := make([]*Manager, 2)
	for i, e := range []*edgeListener{edgeA, edgeB} {
		cfg := Config{Mode: ModeACME, Domains: []string{name}, CA: p.dirURL, CARoot: p.caRootPEM, StateDir: t.TempDir(), TLSPort: e.port()}
		m, err := New(cfg, testLogger(t).With("node", string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		m.UsePostgres(openFleet(t, c.DSN(), string(rune('a'+i))).Pool())
		e.serve(m.TLSConfig())
		managers[i] = m
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range managers {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = m.Start(ctx) }()
		defer m.Stop()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	roots := p.root(t)
	leafA := waitCert(t, edgeA.ln.Addr().String(), name, roots, 90*time.Second)
	leafB := waitCert(t, edgeB.ln.Addr().String(), name, roots, 90*time.Second)
	t.Logf("both nodes serve %s (serial %s) after %v; Pebble orders: %d", name, leafA.SerialNumber, time.Since(start), p.newOrders.Load())
	if leafA.SerialNumber.Cmp(leafB.SerialNumber) != 0 {
		t.Fatalf("nodes serve different certificates: %s and %s", leafA.SerialNumber, leafB.SerialNumber)
	}
	if n := p.newOrders.Load(); n != 1 {
		t.Fatalf("Pebble got %d orders for two nodes, want 1", n)
	}
	var stored int
	pool := openFleet(t, c.DSN(), "check").Pool()
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM edge_cert_data WHERE key LIKE 'certificates/%'").Scan(&stored); err != nil || stored < 3 {
		t.Fatalf("certificate keys in PostgreSQL: %d, %v", stored, err)
	}
}
