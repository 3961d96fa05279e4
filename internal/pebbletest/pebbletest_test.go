package pebbletest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestStartServesDirectoryAndRoots(t *testing.T) {
	ca := Start(t, Options{})
	pemBytes, err := os.ReadFile(ca.RootPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("RootPEM holds no certificate")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(ca.DirectoryURL)
	if err != nil {
		t.Fatalf("directory, trusting RootPEM: %v", err)
	}
	defer resp.Body.Close()
	var dir map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil || dir["newOrder"] == nil || dir["newAccount"] == nil {
		t.Fatalf("directory %v: %v", dir, err)
	}
	if _, err := http.Get(ca.DirectoryURL); err == nil {
		t.Fatal("the directory is trusted without RootPEM")
	}
	roots := ca.Roots(t)
	if roots.Equal(pool) {
		t.Fatal("the issuing root is the directory's TLS root")
	}
	if ca.NewOrders() != 0 {
		t.Fatalf("NewOrders = %d before any order", ca.NewOrders())
	}
}

func TestDNSAnswersTheZoneOnly(t *testing.T) {
	addr := startDNS(t)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	for name, want := range map[string]int{Name("a"): 1, "x.y." + Zone: 1, "example.com": 0, "xpra-edge.test.evil.com": 0} {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(r.Answer) != want {
			t.Fatalf("%s: %d answers, want %d", name, len(r.Answer), want)
		}
		if want == 1 && r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
			t.Fatalf("%s: %v", name, r.Answer[0])
		}
	}
}
