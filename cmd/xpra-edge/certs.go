package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xpra-edge/xpra-edge/fleet"
	"github.com/xpra-edge/xpra-edge/internal/config"
	"github.com/xpra-edge/xpra-edge/tlsconf"
)

// certs owns the certificate manager and the optional port-80 listener
// (HTTP-01 answers, redirects to https).
type certs struct {
	m        *tlsconf.Manager
	log      *slog.Logger
	httpBind string // tls.http_bind, bound by start
	http     *http.Server
}

// newCerts makes the certificate manager; with a fleet store, ACME
// state lives in its PostgreSQL.
func newCerts(c config.TLS, fl *fleet.Store, log *slog.Logger) (*certs, error) {
	m, err := tlsconf.New(c, log)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if fl != nil {
		m.UsePostgres(fl.Pool())
	}
	return &certs{m: m, log: log, httpBind: c.HTTPBind}, nil
}

func (c *certs) tlsConfig() *tls.Config { return c.m.TLSConfig() }

// start begins certificate management, the port-80 listener and the
// certificate-expiry metric.
func (c *certs) start(ctx context.Context, reg *prometheus.Registry) error {
	if err := c.m.Start(ctx); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if reg != nil {
		if err := reg.Register(expiryCollector{c.m}); err != nil {
			return err
		}
	}
	if c.httpBind != "" {
		ln, err := net.Listen("tcp", c.httpBind)
		if err != nil {
			return fmt.Errorf("tls.http_bind: %w", err)
		}
		c.http = &http.Server{Handler: c.m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second}
		go func() {
			if err := c.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("http listener", "err", err)
			}
		}()
		c.log.Info("http listener for ACME HTTP-01 and redirects", "addr", ln.Addr().String())
	}
	return nil
}

func (c *certs) reload(cfg config.TLS) error { return c.m.Reload(cfg) }

func (c *certs) stop() {
	if c.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.http.Shutdown(ctx)
		cancel()
	}
	c.m.Stop()
}

var expiryDesc = prometheus.NewDesc("xpra_edge_certificate_expiry_timestamp_seconds",
	"When each certificate served expires (Unix time).", []string{"name"}, nil)

// expiryCollector reports the manager's certificates at scrape time.
type expiryCollector struct{ m *tlsconf.Manager }

func (e expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (e expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for name, t := range e.m.Expiry() {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(t.Unix()), name)
	}
}
