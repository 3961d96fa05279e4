package tlsconf

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// staticCheckEvery bounds how often the files are stat'ed for changes.
var staticCheckEvery = time.Second

// fileStamp identifies one version of a file: the file itself (a rename
// over it is a new file), its modification time and size.
type fileStamp struct {
	fi os.FileInfo
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi}, nil
}

func (a fileStamp) same(b fileStamp) bool {
	if a.fi == nil || b.fi == nil {
		return a.fi == b.fi
	}
	return os.SameFile(a.fi, b.fi) && a.fi.ModTime().Equal(b.fi.ModTime()) && a.fi.Size() == b.fi.Size()
}

// staticSource serves a cert/key pair from files and re-reads them when
// their modification time or size changes (checked at most once per
// staticCheckEvery, on a handshake or an Expiry call). A pair that fails
// to load keeps the previous certificate in service.
type staticSource struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
	checked   time.Time
	lastErr   string
}

func newStaticSource(certFile, keyFile string, log *slog.Logger) (*staticSource, error) {
	s := &staticSource{certFile: certFile, keyFile: keyFile, log: log}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads both files; the caller holds mu or owns s.
func (s *staticSource) load() error {
	cs, err := stamp(s.certFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file: %w", err)
	}
	ks, err := stamp(s.keyFile)
	if err != nil {
		return fmt.Errorf("tls.key_file: %w", err)
	}
	c, err := s.loadPair()
	if err != nil {
		return fmt.Errorf("tls.cert_file/key_file: %w", err)
	}
	s.cert, s.certStamp, s.keyStamp, s.checked = c, cs, ks, time.Now()
	return nil
}

func (s *staticSource) loadPair() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func (s *staticSource) current() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) < staticCheckEvery {
		return s.cert
	}
	s.checked = time.Now()
	cs, err1 := stamp(s.certFile)
	ks, err2 := stamp(s.keyFile)
	if err1 != nil || err2 != nil || (cs.same(s.certStamp) && ks.same(s.keyStamp)) {
		return s.cert
	}
	if err := s.load(); err != nil {
		// Often a pair half-written by a renewal tool: keep serving the old
		// certificate, log once per distinct error, retry next check.
		if msg := err.Error(); msg != s.lastErr {
			s.lastErr = msg
			s.log.Warn("static certificate changed but does not load; the previous one stays", "err", err)
		}
		return s.cert
	}
	s.lastErr = ""
	s.log.Info("static certificate re-read", "cert_file", s.certFile)
	return s.cert
}

func (s *staticSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current(), nil
}

func (s *staticSource) expiry() map[string]time.Time {
	m := make(map[string]time.Time)
	leafExpiry(s.current(), m)
	return m
}
