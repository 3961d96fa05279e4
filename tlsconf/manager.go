package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ACMETLS1 is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const ACMETLS1 = "acme-tls/1"

// ErrNotStarted is returned by handshakes that need Start to have run.
var ErrNotStarted = errors.New("tlsconf: not started")

// ErrModeChange is returned by Reload when the mode differs; a restart is needed.
var ErrModeChange = errors.New("tls.mode cannot change on reload")

// IsACMEChallenge reports whether a completed handshake was a TLS-ALPN-01
// validation; the caller should close such a connection without reading.
func IsACMEChallenge(cs tls.ConnectionState) bool {
	return cs.NegotiatedProtocol == ACMETLS1
}

// source is one way of answering GetCertificate.
type source interface {
	getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	expiry() map[string]time.Time
}

// Manager provides certificates for one configuration. New makes it
// without side effects; Start creates files and starts goroutines, Stop
// ends them.
type Manager struct {
	log *slog.Logger

	mu      sync.Mutex // serialises Start, Reload, Stop
	cfg     Config
	started bool
	stopped bool

	src  atomic.Pointer[sourceBox]
	acme *acmeSource // mode "acme" only
}

type sourceBox struct{ s source }

// New checks cfg and prepares a Manager. It reads existing files (static
// certificates, a kept development CA) but writes nothing and starts no
// goroutine. log may be nil.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: log, cfg: cloneConfig(cfg)}
	switch cfg.Mode {
	case ModeStatic:
		s, err := newStaticSource(cfg.CertFile, cfg.KeyFile, log)
		if err != nil {
			return nil, err
		}
		m.src.Store(&sourceBox{s})
	case ModeSelfSigned:
		// A kept CA and leaf are served at once; missing ones are made
		// by Start (New writes nothing).
		if s, err := loadDev(cfg.StateDir, cfg.Domains); err == nil {
			m.src.Store(&sourceBox{s})
		}
	case ModeACME:
		a, err := newACMESource(cfg, log)
		if err != nil {
			return nil, err
		}
		m.acme = a
		m.src.Store(&sourceBox{a})
	}
	return m, nil
}

// UsePostgres keeps ACME accounts, keys, certificates, challenge tokens
// and locks in the fleet's PostgreSQL (table edge_cert_data, made by
// package fleet's migrations) instead of tls.storage, so that every node
// of a fleet serves what one obtained and two nodes place one order. Call
// it before Start; it does nothing outside mode acme. Certificates
// already loaded keep being served from memory while the database is
// down.
func (m *Manager) UsePostgres(pool *pgxpool.Pool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acme == nil || pool == nil {
		return
	}
	m.acme.mu.Lock()
	defer m.acme.mu.Unlock()
	m.acme.storage = newPGStorage(pool, m.log.With("storage", "postgres"))
}

func cloneConfig(c Config) Config {
	c.Domains = append([]string(nil), c.Domains...)
	c.OnDemandAllow = append([]string(nil), c.OnDemandAllow...)
	return c
}

// Mode is the configured mode.
func (m *Manager) Mode() string { return m.cfg.Mode }

// TLSConfig returns the configuration to serve with tls.Server. Its
// GetCertificate answers every name through the Manager (also after
// Reload); with ACME, NextProtos offers "acme-tls/1" for TLS-ALPN-01.
// Each call returns a new *tls.Config the caller may modify.
func (m *Manager) TLSConfig() *tls.Config {
	protos := []string{"http/1.1"}
	if m.cfg.Mode == ModeACME {
		protos = append(protos, ACMETLS1)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   append([]uint16(nil), TLS12CipherSuites...),
		NextProtos:     protos,
		GetCertificate: m.GetCertificate,
	}
}

// TLS12CipherSuites are the only TLS 1.2 suites served: ECDHE with an AEAD
// (AES-GCM, ChaCha20-Poly1305). No CBC (Lucky13-style padding oracles,
// SHA-1 MACs) and no RSA key exchange (no forward secrecy). TLS 1.3 suites
// are all AEAD and not configurable.
var TLS12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// GetCertificate is the tls.Config callback.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	b := m.src.Load()
	if b == nil {
		return nil, ErrNotStarted
	}
	return b.s.getCertificate(hello)
}

// Start begins managing certificates and returns quickly: in
// "self-signed" it loads or makes the development CA and leaf; in "acme"
// it starts certmagic's cache and obtains or renews the configured
// domains in the background (on-demand names are obtained at handshake
// time). ctx bounds the background work; Stop ends it.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return errors.New("tlsconf: start after stop")
	}
	if m.started {
		return errors.New("tlsconf: already started")
	}
	switch m.cfg.Mode {
	case ModeSelfSigned:
		// Loads the kept pair again (a Reload before Start may have
		// changed the names) and makes what is missing.
		s, err := loadOrMakeDev(m.cfg.StateDir, m.cfg.Domains, m.log)
		if err != nil {
			return err
		}
		m.src.Store(&sourceBox{s})
	case ModeACME:
		if err := m.acme.start(ctx); err != nil {
			return err
		}
	}
	m.started = true
	return nil
}

// Reload applies a new configuration of the same mode: static files are
// re-read (a failure keeps the old certificate and returns the error),
// the self-signed leaf is remade from the same CA when the names change,
// and ACME settings (domains, allow-list, CA, email ...) are swapped.
func (m *Manager) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cfg.Mode != m.cfg.Mode {
		return fmt.Errorf("%w: %q to %q", ErrModeChange, m.cfg.Mode, cfg.Mode)
	}
	cfg = cloneConfig(cfg)
	switch cfg.Mode {
	case ModeStatic:
		s, err := newStaticSource(cfg.CertFile, cfg.KeyFile, m.log)
		if err != nil {
			return err
		}
		m.src.Store(&sourceBox{s})
	case ModeSelfSigned:
		if m.started {
			s, err := loadOrMakeDev(cfg.StateDir, cfg.Domains, m.log)
			if err != nil {
				return err
			}
			m.src.Store(&sourceBox{s})
		}
	case ModeACME:
		if err := m.acme.reload(cfg); err != nil {
			return err
		}
	}
	m.cfg = cfg
	return nil
}

// Stop ends the goroutines Start began: it cancels background obtaining
// and waits for certmagic's maintenance loop. certmagic keeps two kinds of
// its own package-level goroutines that Stop cannot end: a rate limiter per
// ACME account (for the life of the process) and a storage-lock refresher
// that exits within seconds of its lock's release. Handshakes after Stop
// still get cached certificates but nothing new is obtained.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	m.stopped = true
	if m.acme != nil {
		m.acme.stop()
	}
}

// Expiry returns NotAfter of the certificate currently served for each
// name (managed domains, on-demand names obtained so far, the static or
// self-signed leaf's names).
func (m *Manager) Expiry() map[string]time.Time {
	b := m.src.Load()
	if b == nil {
		return map[string]time.Time{}
	}
	return b.s.expiry()
}

// CAFile is the PEM file of the development CA in "self-signed" mode
// (give it to clients: xpra attach ssl://... --ssl-ca-certs=FILE); "" in
// other modes.
func (m *Manager) CAFile() string {
	if m.cfg.Mode != ModeSelfSigned {
		return ""
	}
	return m.cfg.CAFile()
}

// HTTPHandler serves the port-80 listener: ACME HTTP-01 answers (mode
// "acme" with http_bind), then fallback, or when fallback is nil a
// permanent redirect to the same host and path over https.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.HandlerFunc(m.redirect)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.acme != nil && m.acme.handleHTTPChallenge(w, r) {
			return
		}
		fallback.ServeHTTP(w, r)
	})
}

func (m *Manager) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" || checkName(host, false) != nil {
		http.Error(w, "use https", http.StatusBadRequest)
		return
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	m.mu.Lock()
	port := m.cfg.HTTPSPort
	m.mu.Unlock()
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	target := "https://" + host + r.URL.RequestURI()
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return
	}
	http.Redirect(w, r, target, http.StatusPermanentRedirect)
}

// readRoots reads a PEM file of certificates into a pool.
func readRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no certificates in %s", path)
	}
	return pool, nil
}

// leafExpiry maps every name of c's leaf to its NotAfter.
func leafExpiry(c *tls.Certificate, into map[string]time.Time) {
	if c == nil {
		return
	}
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		l, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return
		}
		leaf = l
	}
	if leaf == nil {
		return
	}
	for _, n := range leaf.DNSNames {
		into[n] = leaf.NotAfter
	}
	for _, ip := range leaf.IPAddresses {
		into[ip.String()] = leaf.NotAfter
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 && leaf.Subject.CommonName != "" {
		into[leaf.Subject.CommonName] = leaf.NotAfter
	}
}
