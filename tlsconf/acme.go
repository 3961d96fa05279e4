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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// acmeSource manages certificates with certmagic. Its certmagic state is
// made in start (certmagic's cache starts a goroutine) and swapped whole
// by reload.
type acmeSource struct {
	log  *slog.Logger
	zlog *zap.Logger

	mu     sync.Mutex // start, reload, stop
	cfg    Config
	roots  *x509.CertPool
	cache  *certmagic.Cache
	ctx    context.Context
	cancel context.CancelFunc
	done   bool

	state   atomic.Pointer[acmeState]
	seen    sync.Map // on-demand names served so far (string -> struct{})
	stopped atomic.Bool
	limiter rateWindow // new on-demand certificates

	storage certmagic.Storage // shared storage (PostgreSQL); nil: tls.storage on disk
}

// ErrOnDemandLimit is returned (wrapped) when on_demand_limit new
// on-demand certificates were obtained in the last hour.
var ErrOnDemandLimit = errors.New("on-demand certificate limit reached")

// errStopped aborts obtaining after Stop.
var errStopped = errors.New("tlsconf: stopped")

// rateWindow admits at most n events in any hour.
type rateWindow struct {
	mu    sync.Mutex
	times []time.Time
}

func (w *rateWindow) allow(now time.Time, n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	cut := now.Add(-time.Hour)
	i := 0
	for i < len(w.times) && !w.times[i].After(cut) {
		i++
	}
	w.times = w.times[i:]
	if len(w.times) >= n {
		return false
	}
	w.times = append(w.times, now)
	return true
}

// acmeState is one configuration's certmagic objects and allow-lists.
type acmeState struct {
	cache    *certmagic.Cache
	cm       *certmagic.Config
	issuer   *certmagic.ACMEIssuer
	domains  []string
	managed  *allowList // Domains
	onDemand *allowList // OnDemandAllow, nil when on_demand is off
}

func (s *acmeState) allowed(name string) bool {
	return s.managed.allowed(name) || (s.onDemand != nil && s.onDemand.allowed(name))
}

func newACMESource(cfg Config, log *slog.Logger) (*acmeSource, error) {
	a := &acmeSource{log: log, zlog: newZapLogger(log), cfg: cfg}
	if cfg.CARoot != "" {
		roots, err := readRoots(cfg.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_root: %w", err)
		}
		a.roots = roots
	}
	return a, nil
}

func keyType(s string) certmagic.KeyType {
	switch strings.ToLower(s) {
	case KeyP384:
		return certmagic.P384
	case KeyRSA2048:
		return certmagic.RSA2048
	case KeyRSA4096:
		return certmagic.RSA4096
	case KeyEd25519:
		return certmagic.ED25519
	default:
		return certmagic.P256
	}
}

func normalizeNames(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// build makes the certmagic config for cfg on a.cache.
func (a *acmeSource) build(cfg Config, roots *x509.CertPool) *acmeState {
	st := &acmeState{
		cache:   a.cache,
		domains: normalizeNames(cfg.Domains),
		managed: newAllowList(cfg.Domains),
	}
	cmCfg := certmagic.Config{
		Storage:   a.storageFor(cfg),
		KeySource: certmagic.StandardKeyGenerator{KeyType: keyType(cfg.KeyType)},
		// Let's Encrypt no longer runs OCSP; do not fetch staples in
		// handshakes or maintenance.
		OCSP:   certmagic.OCSPConfig{DisableStapling: true},
		Logger: a.zlog,
	}
	if len(st.domains) > 0 {
		// Clients without SNI (xpra by IP address) get the first domain.
		cmCfg.DefaultServerName = st.domains[0]
	}
	if cfg.OnDemand {
		st.onDemand = newAllowList(cfg.OnDemandAllow)
		limit := cfg.onDemandLimit()
		cmCfg.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: func(ctx context.Context, name string) error {
			if a.stopped.Load() {
				return errStopped
			}
			if !st.allowed(name) {
				return fmt.Errorf("%w: %q", ErrNotAllowed, name)
			}
			// Loading a kept certificate or renewing one is not counted:
			// only names with nothing in storage would be new orders.
			if st.managed.allowed(name) || st.cm.Storage.Exists(ctx, certmagic.StorageKeys.SiteCert(st.issuer.IssuerKey(), name)) {
				return nil
			}
			if !a.limiter.allow(time.Now(), limit) {
				a.log.Warn("on-demand certificate refused: limit reached", "name", name, "per_hour", limit)
				return fmt.Errorf("%w (%d per hour): %q", ErrOnDemandLimit, limit, name)
			}
			return nil
		}}
	}
	cmCfg.ShouldEmitFunc = func(event string) bool {
		return event == "cert_obtaining" || event == "cert_obtained"
	}
	cmCfg.OnEvent = func(_ context.Context, event string, data map[string]any) error {
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		switch event {
		case "cert_obtaining":
			if a.stopped.Load() {
				return errStopped
			}
			// A second guard behind the handshake check and DecisionFunc.
			if !st.allowed(name) {
				return fmt.Errorf("%w: %q", ErrNotAllowed, name)
			}
		case "cert_obtained":
			// certmagic logs failures itself (at warn/error); success is
			// worth an info line (its own is at debug here).
			a.log.Info("certificate obtained", "name", name, "renewal", renewal)
		}
		return nil
	}
	cm := certmagic.New(a.cache, cmCfg)
	ca := cfg.CA
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	listenHost := ""
	if h, _, err := net.SplitHostPort(cfg.HTTPBind); err == nil {
		listenHost = h
	}
	st.issuer = certmagic.NewACMEIssuer(cm, certmagic.ACMEIssuer{
		CA:     ca,
		Email:  cfg.Email,
		Agreed: true,
		// HTTP-01 only when the caller serves HTTPHandler on http_bind.
		DisableHTTPChallenge:    cfg.HTTPBind == "",
		DisableTLSALPNChallenge: cfg.DisableTLSALPN,
		// certmagic binds these ports itself only when nothing listens on
		// them; the edge (TLS port) and the http_bind listener already do.
		ListenHost:     listenHost,
		AltHTTPPort:    cfg.httpPort(),
		AltTLSALPNPort: cfg.tlsPort(),
		TrustedRoots:   roots,
		Logger:         a.zlog,
	})
	cm.Issuers = []certmagic.Issuer{st.issuer}
	st.cm = cm
	return st
}

// storageFor is the shared storage when there is one, else the
// directory of cfg.
func (a *acmeSource) storageFor(cfg Config) certmagic.Storage {
	if a.storage != nil {
		return a.storage
	}
	return &certmagic.FileStorage{Path: cfg.acmeStorage()}
}

func (a *acmeSource) start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return errors.New("tlsconf: start after stop")
	}
	if a.storage == nil {
		if err := checkWritableDir(a.cfg.acmeStorage()); err != nil {
			return fmt.Errorf("tls.storage: %w", err)
		}
	}
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if st := a.state.Load(); st != nil {
				return st.cm, nil
			}
			return nil, ErrNotStarted
		},
		Logger: a.zlog,
	})
	a.ctx, a.cancel = context.WithCancel(ctx)
	st := a.build(a.cfg, a.roots)
	a.state.Store(st)
	if len(st.domains) > 0 {
		if err := st.cm.ManageAsync(a.ctx, st.domains); err != nil {
			// Leave nothing running; Start may be called again.
			a.cancel()
			a.cache.Stop()
			a.state.Store(nil)
			a.cache, a.ctx, a.cancel = nil, nil, nil
			return fmt.Errorf("tls.domains: %w", err)
		}
	}
	a.log.Info("acme started", "domains", st.domains, "on_demand", a.cfg.OnDemand,
		"ca", st.issuer.CA, "http01", a.cfg.HTTPBind != "", "tls_alpn01", !a.cfg.DisableTLSALPN)
	return nil
}

func (a *acmeSource) reload(cfg Config) error {
	var roots *x509.CertPool
	if cfg.CARoot != "" {
		r, err := readRoots(cfg.CARoot)
		if err != nil {
			return fmt.Errorf("tls.ca_root: %w", err)
		}
		roots = r
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.state.Load()
	a.cfg, a.roots = cfg, roots
	if old == nil || a.done {
		return nil // not started: start uses the new settings
	}
	st := a.build(cfg, roots)
	a.state.Store(st)
	var gone []certmagic.SubjectIssuer
	for _, d := range old.domains {
		if !slices.Contains(st.domains, d) {
			gone = append(gone, certmagic.SubjectIssuer{Subject: d})
		}
	}
	if len(gone) > 0 {
		a.cache.RemoveManaged(gone)
	}
	a.seen.Range(func(k, _ any) bool {
		if !st.allowed(k.(string)) {
			a.seen.Delete(k)
		}
		return true
	})
	if len(st.domains) > 0 {
		if err := st.cm.ManageAsync(a.ctx, st.domains); err != nil {
			return fmt.Errorf("tls.domains: %w", err)
		}
	}
	return nil
}

func (a *acmeSource) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	a.stopped.Store(true)
	if a.cancel != nil {
		a.cancel()
	}
	if a.cache != nil {
		a.cache.Stop()
	}
}

func (a *acmeSource) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := a.state.Load()
	if st == nil {
		return nil, ErrNotStarted
	}
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	challenge := slices.Contains(hello.SupportedProtos, ACMETLS1)
	// Refuse names outside the lists before certmagic sees them: nothing
	// is looked up or issued for them. A TLS-ALPN-01 validation for one of
	// our names is answered by certmagic from its challenge memory.
	if name != "" && !st.allowed(name) {
		return nil, fmt.Errorf("%w: %q", ErrNotAllowed, name)
	}
	c, err := st.cm.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	if !challenge && name != "" && st.onDemand != nil && !st.managed.allowed(name) {
		a.seen.Store(name, struct{}{})
	}
	return c, nil
}

func (a *acmeSource) expiry() map[string]time.Time {
	out := make(map[string]time.Time)
	st := a.state.Load()
	if st == nil {
		return out
	}
	names := slices.Clone(st.domains)
	a.seen.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	for _, n := range names {
		for _, c := range st.cache.AllMatchingCertificates(n) {
			m := make(map[string]time.Time)
			leafExpiry(&c.Certificate, m)
			var t time.Time
			for _, v := range m {
				if v.After(t) {
					t = v
				}
			}
			if t.After(out[n]) {
				out[n] = t
			}
		}
	}
	return out
}

// handleHTTPChallenge answers an HTTP-01 request for one of our names.
func (a *acmeSource) handleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	st := a.state.Load()
	if st == nil || !certmagic.LooksLikeHTTPChallenge(r) {
		return false
	}
	return st.issuer.HandleHTTPChallenge(w, r)
}

// checkWritableDir makes dir (0700) and proves a file can be written in
// it, so an unusable storage fails Start instead of every later obtain.
func checkWritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
