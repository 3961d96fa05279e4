package tlsconf

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// Modes of Config.Mode.
const (
	ModeACME       = "acme"
	ModeStatic     = "static"
	ModeSelfSigned = "self-signed"
)

// Key types of Config.KeyType.
const (
	KeyP256    = "p256"
	KeyP384    = "p384"
	KeyRSA2048 = "rsa2048"
	KeyRSA4096 = "rsa4096"
	KeyEd25519 = "ed25519"
)

// Config selects where certificates come from. The toml tags match the
// [tls] section of the edge's configuration file; the config package may
// embed it.
type Config struct {
	// Mode is "acme", "static" or "self-signed".
	Mode string `toml:"mode"`

	// Domains are the names managed by ACME ("acme"), or extra names of
	// the self-signed leaf ("self-signed"; localhost, 127.0.0.1 and ::1
	// are always included).
	Domains []string `toml:"domains"`
	// Email is the ACME account contact (optional). Configuring mode
	// "acme" means agreeing to the CA's subscriber agreement.
	Email string `toml:"email"`
	// CA is the ACME directory URL; default Let's Encrypt production.
	CA string `toml:"ca"`
	// CARoot is a PEM file of roots trusted when talking to the ACME
	// directory (a private CA, or Pebble in tests); default system roots.
	CARoot string `toml:"ca_root"`
	// Storage keeps ACME accounts, keys and certificates; default
	// <state_dir>/acme. Unused when Manager.UsePostgres was called.
	Storage string `toml:"storage"`
	// StateDir keeps the self-signed development CA and leaf, and is the
	// parent of the default ACME storage.
	StateDir string `toml:"state_dir"`
	// KeyType of certificate keys: "p256" (default), "p384", "rsa2048",
	// "rsa4096", "ed25519".
	KeyType string `toml:"key_type"`

	// OnDemand obtains a certificate at the first handshake for a name
	// that matches OnDemandAllow: exact names ("a.example.com") or
	// wildcard suffixes ("*.example.com" matches any name ending in
	// ".example.com", at any depth, but not "example.com" itself).
	// Every other name is refused without contacting the CA.
	OnDemand      bool     `toml:"on_demand"`
	OnDemandAllow []string `toml:"on_demand_allow"`
	// OnDemandLimit caps new on-demand certificates per hour (renewals
	// and configured domains are not counted), so a wildcard allow-list
	// cannot be used to exhaust the CA's rate limits; default 20.
	OnDemandLimit int `toml:"on_demand_limit"`

	// HTTPBind is the optional port-80 listener ("host:port") that serves
	// HTTPHandler: HTTP-01 answers, everything else redirected to https.
	// tlsconf does not listen on it; the caller does. Setting it enables
	// the HTTP-01 challenge.
	HTTPBind string `toml:"http_bind"`
	// HTTPPort is the port the ACME CA reaches for HTTP-01 (default: the
	// port of HTTPBind, else 80). Only needed behind port forwarding.
	HTTPPort int `toml:"http_port"`
	// TLSPort is the port the ACME CA reaches for TLS-ALPN-01, where the
	// edge serves TLSConfig (default 443). Only needed behind port
	// forwarding.
	TLSPort int `toml:"tls_port"`
	// HTTPSPort is the port in redirects to https (default 443: none in
	// the URL).
	HTTPSPort int `toml:"https_port"`
	// DisableTLSALPN turns off the TLS-ALPN-01 challenge (for example
	// when the TLS port is not reachable from the internet on 443).
	DisableTLSALPN bool `toml:"disable_tls_alpn"`

	// CertFile and KeyFile are PEM files for "static" (KeyFile may be the
	// same file as CertFile). They are re-read when they change.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid tls configuration")

// FieldError is one invalid setting; Field is the toml key ("tls.email").
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Validate checks the configuration without touching the file system
// (except for ca_root, which is read to check that it holds certificates).
// Every problem is reported; each error names its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: "tls." + field, Reason: fmt.Sprintf(format, a...)})
	}
	switch c.Mode {
	case ModeACME:
		if len(c.Domains) == 0 && !c.OnDemand {
			add("domains", "mode %q needs domains or on_demand", c.Mode)
		}
		if c.OnDemand && len(c.OnDemandAllow) == 0 {
			add("on_demand_allow", "on_demand needs an allow-list")
		}
		if c.Storage == "" && c.StateDir == "" {
			add("storage", "mode %q needs storage or state_dir", c.Mode)
		}
		if c.CA != "" && !strings.HasPrefix(c.CA, "https://") {
			add("ca", "%q is not an https:// directory URL", c.CA)
		}
		if c.CARoot != "" {
			if _, err := readRoots(c.CARoot); err != nil {
				add("ca_root", "%v", err)
			}
		}
		if c.Email != "" && !strings.Contains(c.Email, "@") {
			add("email", "%q is not an email address", c.Email)
		}
		if c.HTTPBind != "" {
			if _, _, err := net.SplitHostPort(c.HTTPBind); err != nil {
				add("http_bind", "%q is not host:port", c.HTTPBind)
			}
		}
		if c.DisableTLSALPN && c.HTTPBind == "" {
			add("disable_tls_alpn", "no challenge left: set http_bind for HTTP-01")
		}
	case ModeStatic:
		if c.CertFile == "" {
			add("cert_file", "mode %q needs cert_file", c.Mode)
		}
		if c.KeyFile == "" {
			add("key_file", "mode %q needs key_file", c.Mode)
		}
	case ModeSelfSigned:
		if c.StateDir == "" {
			add("state_dir", "mode %q needs state_dir", c.Mode)
		}
	case "":
		add("mode", "missing; one of acme, static, self-signed")
	default:
		add("mode", "%q is not one of acme, static, self-signed", c.Mode)
	}
	if c.Mode != ModeACME {
		if c.OnDemand {
			add("on_demand", "only used with mode \"acme\"")
		}
		if c.HTTPBind != "" {
			add("http_bind", "only used with mode \"acme\"")
		}
	}
	for i, d := range c.Domains {
		if err := checkName(d, false); err != nil {
			add(fmt.Sprintf("domains[%d]", i), "%v", err)
		}
	}
	for i, d := range c.OnDemandAllow {
		if err := checkName(d, true); err != nil {
			add(fmt.Sprintf("on_demand_allow[%d]", i), "%v", err)
		}
	}
	switch strings.ToLower(c.KeyType) {
	case "", KeyP256, KeyP384, KeyRSA2048, KeyRSA4096, KeyEd25519:
	default:
		add("key_type", "%q is not one of p256, p384, rsa2048, rsa4096, ed25519", c.KeyType)
	}
	if c.OnDemandLimit < 0 {
		add("on_demand_limit", "%d is negative", c.OnDemandLimit)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"http_port", c.HTTPPort}, {"tls_port", c.TLSPort}, {"https_port", c.HTTPSPort}} {
		if p.v < 0 || p.v > 65535 {
			add(p.name, "%d is not a port", p.v)
		}
	}
	return errors.Join(errs...)
}

// checkName accepts a DNS name or an IP address; with wildcard, also a
// leading "*." label.
func checkName(s string, wildcard bool) error {
	if s == "" {
		return errors.New("empty name")
	}
	if net.ParseIP(s) != nil {
		return nil
	}
	name := s
	if wildcard && strings.HasPrefix(s, "*.") {
		name = s[2:]
	}
	if len(name) > 253 {
		return fmt.Errorf("%q is longer than 253 bytes", s)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a DNS name", s)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q is not a DNS name", s)
			}
		}
	}
	return nil
}

func (c *Config) acmeStorage() string {
	if c.Storage != "" {
		return c.Storage
	}
	return filepath.Join(c.StateDir, "acme")
}

// CAFile is where the self-signed development CA certificate is kept
// (<state_dir>/ca.pem).
func (c *Config) CAFile() string {
	if c.StateDir == "" {
		return ""
	}
	return filepath.Join(c.StateDir, "ca.pem")
}

func (c *Config) httpPort() int {
	if c.HTTPPort != 0 {
		return c.HTTPPort
	}
	if _, p, err := net.SplitHostPort(c.HTTPBind); err == nil {
		if n, err := net.LookupPort("tcp", p); err == nil && n != 0 {
			return n
		}
	}
	return 80
}

// DefaultOnDemandLimit is OnDemandLimit when it is 0.
const DefaultOnDemandLimit = 20

func (c *Config) onDemandLimit() int {
	if c.OnDemandLimit > 0 {
		return c.OnDemandLimit
	}
	return DefaultOnDemandLimit
}

func (c *Config) tlsPort() int {
	if c.TLSPort != 0 {
		return c.TLSPort
	}
	return 443
}
