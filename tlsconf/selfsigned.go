package tlsconf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of the development CA in state_dir.
const (
	devCAFile   = "ca.pem"
	devCAKey    = "ca-key.pem"
	devCertFile = "cert.pem"
	devKeyFile  = "key.pem"
)

const (
	devCAValidity   = 10 * 365 * 24 * time.Hour
	devLeafValidity = 397 * 24 * time.Hour
	// devRenewBefore: a leaf (or CA) closer than this to its end is remade.
	devRenewBefore = 30 * 24 * time.Hour
)

// devSource serves the development leaf.
type devSource struct {
	cert *tls.Certificate
}

func (d *devSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return d.cert, nil
}

func (d *devSource) expiry() map[string]time.Time {
	m := make(map[string]time.Time)
	leafExpiry(d.cert, m)
	return m
}

// devNames are the leaf's names: the loopback names plus the configured ones.
func devNames(domains []string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d != "" && !slices.Contains(names, d) {
			names = append(names, d)
		}
	}
	return names
}

// loadDev loads a kept CA and leaf that are still good for names; it
// writes nothing. It returns an error when the files are missing or
// unusable.
func loadDev(dir string, domains []string) (*devSource, error) {
	caCert, _, err := loadDevCA(dir)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, devCertFile), filepath.Join(dir, devKeyFile))
	if err != nil {
		return nil, err
	}
	if err := leafUsable(pair.Leaf, caCert, devNames(domains)); err != nil {
		return nil, err
	}
	pair.Certificate = append(pair.Certificate, caCert.Raw)
	return &devSource{cert: &pair}, nil
}

func loadDevCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, devCAFile), filepath.Join(dir, devCAKey))
	if err != nil {
		return nil, nil, err
	}
	ca := pair.Leaf
	if !ca.IsCA || time.Until(ca.NotAfter) < devRenewBefore {
		return nil, nil, errors.New("development CA expires soon or is not a CA")
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("development CA key cannot sign")
	}
	return ca, signer, nil
}

func leafUsable(leaf, ca *x509.Certificate, names []string) error {
	if leaf == nil {
		return errors.New("no leaf")
	}
	if time.Until(leaf.NotAfter) < devRenewBefore {
		return errors.New("leaf expires soon")
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("leaf not signed by the kept CA: %w", err)
	}
	for _, n := range names {
		if err := leaf.VerifyHostname(n); err != nil {
			return err
		}
	}
	return nil
}

// loadOrMakeDev loads the kept CA and leaf, making whichever is missing or
// unusable: a new CA means a new leaf; a leaf lacking a configured name or
// near its end is remade from the kept CA.
func loadOrMakeDev(dir string, domains []string, log *slog.Logger) (*devSource, error) {
	if s, err := loadDev(dir, domains); err == nil {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls.state_dir: %w", err)
	}
	// Two processes starting at once must not pair one's CA certificate
	// with the other's key: make under a lock, and look again inside it.
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tls.state_dir: lock: %w", err)
	}
	defer unlock()
	if s, err := loadDev(dir, domains); err == nil {
		return s, nil
	}
	caCert, caKey, err := loadDevCA(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("development CA unusable; making a new one", "dir", dir, "err", err)
		}
		caCert, caKey, err = makeDevCA(dir)
		if err != nil {
			return nil, fmt.Errorf("tls.state_dir: development CA: %w", err)
		}
		log.Info("made a development CA; clients must trust it", "ca_file", filepath.Join(dir, devCAFile))
	}
	names := devNames(domains)
	if err := makeDevLeaf(dir, caCert, caKey, names); err != nil {
		return nil, fmt.Errorf("tls.state_dir: development certificate: %w", err)
	}
	log.Info("made a development certificate", "names", names)
	return loadDev(dir, domains)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func makeDevCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "xpra-edge development CA " + host, Organization: []string{"xpra-edge development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	// Key first: a CA certificate without its key is useless.
	if err := writeAtomic(filepath.Join(dir, devCAKey), pemBytes("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeAtomic(filepath.Join(dir, devCAFile), pemBytes("CERTIFICATE", der), 0o644); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func makeDevLeaf(dir string, ca *x509.Certificate, caKey crypto.Signer, names []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"xpra-edge development"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(devLeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, devKeyFile), pemBytes("PRIVATE KEY", keyDER), 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, devCertFile), pemBytes("CERTIFICATE", der), 0o644)
}

func pemBytes(typ string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}

// writeAtomic writes data to a temporary file in the same directory with
// mode perm, syncs it, and renames it over path.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
