// Package ldaptest runs Debian's real OpenLDAP server (slapd) for tests of
// LDAP logins: a private configuration, database and test CA in a
// temporary directory, listening on loopback only (ldap:// with StartTLS
// and ldaps://), loaded with the entries the test gives, stopped in
// t.Cleanup.
//
// Its job is only to stand the directory up and tell the test how to reach
// and trust it. It must not be imported by non-test code (it imports
// "testing"), never uses or touches the system slapd service, its
// configuration (/etc/ldap/slapd.d) or its database, and never listens on
// anything but 127.0.0.1.
package ldaptest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// EnvRequirePeers turns a missing slapd from a skip into a failure (the
// same variable as internal/xpratest's).
const EnvRequirePeers = "XPRA_EDGE_REQUIRE_PEERS"

// Suffix is the naming context of every test directory.
const Suffix = "dc=example,dc=org"

// People and Groups are where User and Group entries go.
const (
	People = "ou=people," + Suffix
	Groups = "ou=groups," + Suffix
)

// Service is a service account (for search-then-bind) with ServicePassword.
const Service = "cn=edge-service," + Suffix

// User is a posixAccount/inetOrgPerson under People.
type User struct {
	UID       string // the uid attribute (the login name)
	Password  string // stored as {SSHA}
	UIDNumber int
	GIDNumber int
}

// DN is the user's entry.
func (u User) DN() string { return "uid=" + escapeDN(u.UID) + "," + People }

// Group is a groupOfNames under Groups whose members are user DNs
// (member), and also their uids (memberUid, as a posixGroup lists them;
// the entry is an extensibleObject to hold both).
type Group struct {
	CN      string
	Members []string // uids of Users
}

// DN is the group's entry.
func (g Group) DN() string { return "cn=" + escapeDN(g.CN) + "," + Groups }

// Options says what the directory holds.
type Options struct {
	Users  []User
	Groups []Group
}

// Server is one running slapd.
type Server struct {
	LDAPURL         string // ldap://127.0.0.1:PORT (StartTLS offered)
	LDAPSURL        string // ldaps://127.0.0.1:PORT
	CAFile          string // PEM of the CA that signed the server certificate
	CAPool          *x509.CertPool
	ServicePassword string // of Service
	ServicePWFile   string // a file holding ServicePassword (mode 0600)
	Dir             string

	cmd     *exec.Cmd
	done    chan struct{}
	logMu   sync.Mutex
	logBuf  bytes.Buffer
	stopped bool
}

func (s *Server) Write(p []byte) (int, error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.logBuf.Len() < 1<<20 {
		s.logBuf.Write(p)
	}
	return len(p), nil
}

// Log is what slapd printed so far.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.logBuf.String()
}

const (
	slapdBin   = "/usr/sbin/slapd"
	slapaddBin = "/usr/sbin/slapadd"
	schemaDir  = "/etc/ldap/schema"
	moduleDir  = "/usr/lib/ldap"
)

// Available reports why slapd cannot run here ("" when it can).
func Available() string {
	for _, p := range []string{slapdBin, slapaddBin, filepath.Join(schemaDir, "nis.schema"), filepath.Join(moduleDir, "back_mdb.so")} {
		if _, err := os.Stat(p); err != nil {
			return "slapd (" + p + " is missing; run scripts/install-test-deps.sh as root)"
		}
	}
	return ""
}

// Require skips the test when slapd is missing, or fails it under
// XPRA_EDGE_REQUIRE_PEERS=1.
func Require(t testing.TB) {
	t.Helper()
	why := Available()
	if why == "" {
		return
	}
	if os.Getenv(EnvRequirePeers) == "1" {
		t.Fatalf("required peer missing: %s", why)
	}
	t.Skipf("peer missing: %s", why)
}

// Start runs a slapd loaded with o's users and groups and returns once it
// answers on both ports (at most 20 s). It is stopped in t.Cleanup.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	s := &Server{Dir: dir, done: make(chan struct{}), ServicePassword: "svc-" + randHex(12)}
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	s.CAFile = filepath.Join(dir, "ca.pem")
	pool, err := writeCerts(s.CAFile, certFile, keyFile)
	if err != nil {
		t.Fatalf("ldaptest: certificates: %v", err)
	}
	s.CAPool = pool
	s.ServicePWFile = filepath.Join(dir, "service.pw")
	if err := os.WriteFile(s.ServicePWFile, []byte(s.ServicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(conf, []byte(slapdConf(dir, db, certFile, keyFile, s.CAFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	ldif := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(ldif, []byte(s.ldif(o)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, slapaddBin, "-f", conf, "-l", ldif).CombinedOutput(); err != nil {
		t.Fatalf("ldaptest: slapadd: %v\n%s", err, out)
	}

	plain, tlsAddr := freeAddr(t), freeAddr(t)
	s.LDAPURL, s.LDAPSURL = "ldap://"+plain, "ldaps://"+tlsAddr
	// -d 0: stay in the foreground (no detach), log nothing extra.
	s.cmd = exec.Command(slapdBin, "-d", "0", "-f", conf, "-h", s.LDAPURL+"/ "+s.LDAPSURL+"/")
	s.cmd.Stdout, s.cmd.Stderr = s, s
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("ldaptest: start slapd: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range []string{plain, tlsAddr} {
		for !canDial(a) {
			select {
			case <-s.done:
				t.Fatalf("ldaptest: slapd exited:\n%s", s.Log())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("ldaptest: slapd does not listen on %s:\n%s", a, s.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return s
}

// Stop stops slapd (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *Server) Stop() {
	if s.stopped || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.stopped = true
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// TLSConfig trusts the test CA.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CAPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func slapdConf(dir, db, cert, key, ca string) string {
	var b strings.Builder
	for _, sc := range []string{"core", "cosine", "nis", "inetorgperson"} {
		fmt.Fprintf(&b, "include %s/%s.schema\n", schemaDir, sc)
	}
	fmt.Fprintf(&b, "modulepath %s\nmoduleload back_mdb\n", moduleDir)
	fmt.Fprintf(&b, "pidfile %s/slapd.pid\nargsfile %s/slapd.args\n", dir, dir)
	fmt.Fprintf(&b, "TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n", ca, cert, key)
	// Simple binds with a password only over TLS (ssf 128), as a real
	// directory would demand; sizelimit small, as a test of the client's
	// own limits must not depend on the server's.
	b.WriteString("security simple_bind=128\nsizelimit 50\n")
	fmt.Fprintf(&b, "database mdb\nmaxsize 16777216\nsuffix %q\ndirectory %s\n", Suffix, db)
	b.WriteString("index objectClass,uid,member,memberUid eq\n")
	// Passwords: only for binds; everything else: logged-in users read,
	// anonymous nothing (so a search needs the service account).
	b.WriteString("access to attrs=userPassword by anonymous auth by * none\n")
	b.WriteString("access to * by users read by * none\n")
	return b.String()
}

func (s *Server) ldif(o Options) string {
	var b strings.Builder
	entry := func(lines ...string) {
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		b.WriteString("\n")
	}
	entry("dn: "+Suffix, "objectClass: dcObject", "objectClass: organization", "dc: example", "o: example")
	entry("dn: "+People, "objectClass: organizationalUnit", "ou: people")
	entry("dn: "+Groups, "objectClass: organizationalUnit", "ou: groups")
	entry("dn: "+Service, "objectClass: organizationalRole", "objectClass: simpleSecurityObject", "cn: edge-service",
		"userPassword: "+ssha(s.ServicePassword))
	for _, u := range o.Users {
		entry("dn:: "+b64(u.DN()), "objectClass: inetOrgPerson", "objectClass: posixAccount",
			"uid:: "+b64(u.UID), "cn:: "+b64(u.UID), "sn:: "+b64(u.UID),
			fmt.Sprintf("uidNumber: %d", u.UIDNumber), fmt.Sprintf("gidNumber: %d", u.GIDNumber),
			"homeDirectory: /home/ldap-"+hex.EncodeToString([]byte(u.UID)), "userPassword:: "+b64(ssha(u.Password)))
	}
	for _, g := range o.Groups {
		lines := []string{"dn:: " + b64(g.DN()), "objectClass: groupOfNames", "objectClass: extensibleObject", "cn:: " + b64(g.CN)}
		for _, m := range g.Members {
			lines = append(lines, "member:: "+b64(User{UID: m}.DN()), "memberUid:: "+b64(m))
		}
		if len(g.Members) == 0 {
			lines = append(lines, "member: "+Service) // groupOfNames needs one
		}
		entry(lines...)
	}
	return b.String()
}

// ssha is OpenLDAP's {SSHA} password scheme: sha1(password+salt)+salt.
func ssha(pw string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.Sum(append([]byte(pw), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h[:], salt...))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// escapeDN escapes an attribute value for a DN (RFC 4514), hex-escaping
// everything but letters, digits and a few safe characters.
func escapeDN(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "\\%02x", c)
	}
	return b.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	_ = l.Close()
	return a
}

func canDial(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	self := c.LocalAddr().String() == c.RemoteAddr().String()
	_ = c.Close()
	return !self
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it.
func writeCerts(caFile, certFile, keyFile string) (*x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ldaptest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, nil
}

// SilentProxy is an ldaps:// front of s (trusted through CAFile) that
// relays every LDAP message of a client to slapd and slapd's answers back,
// until a client message that holds the bytes silence (a search base's DN,
// for example): that message and everything after it is dropped, slapd's
// connection closed, and the client is never answered again, as by a
// directory that hangs in the middle of a login. The client's connection
// stays open until the client closes it (at most 30 s). It returns the URL
// and the number of connections that fell silent; all stops in t.Cleanup.
func (s *Server) SilentProxy(t testing.TB, silence []byte) (string, *atomic.Int32) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.Dir, "server.pem"), filepath.Join(s.Dir, "server.key"))
	if err != nil {
		t.Fatalf("ldaptest: silent proxy: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var silenced atomic.Int32
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false
		}
		conns[c] = true
		return true
	}
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	upstream := strings.TrimPrefix(s.LDAPSURL, "ldaps://")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			if !track(raw) {
				_ = raw.Close()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer raw.Close()
				_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
				client := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
				d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: s.TLSConfig()}
				up, err := d.Dial("tcp", upstream)
				if err != nil {
					return
				}
				if !track(up) {
					_ = up.Close()
					return
				}
				defer up.Close()
				_ = up.SetDeadline(time.Now().Add(30 * time.Second))
				wg.Add(1)
				go func() { defer wg.Done(); _, _ = io.Copy(client, up) }()
				r := bufio.NewReader(client)
				quiet := false
				for {
					msg, err := readMessage(r)
					if err != nil {
						return
					}
					if !quiet && bytes.Contains(msg, silence) {
						quiet = true
						silenced.Add(1)
						_ = up.Close()
					}
					if !quiet {
						if _, err := up.Write(msg); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return "ldaps://" + ln.Addr().String(), &silenced
}

// readMessage reads one BER-encoded LDAPMessage (a SEQUENCE, definite
// length, at most 1 MiB).
func readMessage(r *bufio.Reader) ([]byte, error) {
	hdr := make([]byte, 2, 6)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	if hdr[0] != 0x30 {
		return nil, fmt.Errorf("not an LDAP message: tag %#x", hdr[0])
	}
	n := int(hdr[1])
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 3 {
			return nil, fmt.Errorf("unsupported BER length form %#x", hdr[1])
		}
		lb := make([]byte, k)
		if _, err := io.ReadFull(r, lb); err != nil {
			return nil, err
		}
		hdr = append(hdr, lb...)
		n = 0
		for _, b := range lb {
			n = n<<8 | int(b)
		}
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("LDAP message of %d bytes", n)
	}
	msg := make([]byte, len(hdr)+n)
	copy(msg, hdr)
	if _, err := io.ReadFull(r, msg[len(hdr):]); err != nil {
		return nil, err
	}
	return msg, nil
}
