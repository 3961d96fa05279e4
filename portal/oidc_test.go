package portal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/internal/oidctest"
	"github.com/xpra-edge/xpra-edge/router"
)

// displaysProxy lists an identity's declared displays as its sessions, so
// a test sees what the OIDC method gave the identity.
type displaysProxy struct{ *fakeProxy }

func (d displaysProxy) UserTargets(id auth.Identity, _ string) ([]router.Target, error) {
	var ts []router.Target
	for _, s := range id.Displays {
		ts = append(ts, router.Target{Scheme: "tcp", Address: "127.0.0.1:9", Display: s})
	}
	return ts, nil
}

type oidcEnv struct {
	t      *testing.T
	op     *oidctest.Provider
	portal *httptest.Server
	px     *fakeProxy
	m      *OIDC
	p      *Portal
	pool   *x509.CertPool
	log    *lockedBuffer // the portal's log, at debug level
}

// lockedBuffer is a log sink safe for the portal's handler goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

const oidcSecret = "client-secret-for-the-test"

// newOIDCEnv runs the test OpenID provider and a portal (over TLS, on
// loopback) whose only login is OIDC: members of xpra-users may log in
// and open tcp://127.0.0.1:5/20; xpra-admins is the admin group.
func newOIDCEnv(t *testing.T, mod func(*OIDCConfig)) *oidcEnv {
	t.Helper()
	e := &oidcEnv{t: t, px: &fakeProxy{}, log: &lockedBuffer{}}
	e.portal = httptest.NewUnstartedServer(nil)
	e.portal.StartTLS()
	t.Cleanup(e.portal.Close)
	callback := e.portal.URL + "/login/oidc/callback"
	e.op = oidctest.Start(t, oidctest.Options{
		ClientSecret: oidcSecret,
		RedirectURIs: []string{callback},
		Users: []oidctest.User{
			{Username: "carol", Password: "carol-pw", Groups: []string{"xpra-users", "xpra-admins"}},
			{Username: "dave", Password: "dave-pw", Groups: []string{"others"}},
			{Username: "erin", Password: "erin-pw", Groups: []string{"xpra-users"}},
			{Username: "bad name", Password: "bad-pw", Groups: []string{"xpra-users"}},
		},
	})
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(oidcSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := OIDCConfig{
		Issuer: e.op.Issuer, ClientID: "xpra-edge", ClientSecretFile: secretFile, CAFile: e.op.CAFile,
		RedirectURL:   callback,
		AllowedGroups: []string{"xpra-users"},
		GroupDisplays: map[string][]string{"xpra-users": {"tcp://127.0.0.1:5/20"}, "xpra-admins": {"tcp://127.0.0.1:6/21"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := NewOIDC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	p := New(Config{
		Methods:    []Method{m},
		Logger:     slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AdminGroup: "xpra-admins",
		Info: func(r *http.Request) (edge.RequestInfo, bool) {
			return edge.RequestInfo{Remote: "192.0.2.7:4000", TLS: true, HTTPS: true, Listener: "test"}, true
		},
		SystemGroups: func(string) []string { return nil },
	})
	p.Attach(displaysProxy{e.px})
	e.p = p
	e.portal.Config.Handler = p
	e.pool = e.op.CAPool.Clone()
	e.pool.AddCert(e.portal.Certificate())
	return e
}

// client is a browser stand-in: a cookie jar, trusting the portal and
// the provider, following redirects except (with stop) to the portal's
// callback.
func (e *oidcEnv) client(stopAtCallback bool) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool}}}
	if stopAtCallback {
		c.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
			if strings.HasPrefix(r.URL.String(), e.portal.URL+"/login/oidc/callback") {
				return http.ErrUseLastResponse
			}
			return nil
		}
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	return resp, readAll(t, resp)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 4096)
	for b.Len() < 1<<20 {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

var opIDRe = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signInAtProvider starts at begin (a URL that leads to the provider's
// login form), types the user's password there and returns the last
// response (the portal's callback answer, or with stop the redirect to it).
func (e *oidcEnv) signInAtProvider(c *http.Client, begin, user, password string) (*http.Response, string) {
	e.t.Helper()
	resp, page := get(e.t, c, begin)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), e.op.Issuer+"/login") {
		e.t.Fatalf("did not reach the provider's login form: %d %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	m := opIDRe.FindStringSubmatch(page)
	if m == nil {
		e.t.Fatalf("no auth request id in the provider's form:\n%s", page)
	}
	resp, err := c.PostForm(e.op.Issuer+"/login", url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(e.t, resp)
}

// TestOIDCLoginAllowedGroup: a user of the allowed group signs in at the
// provider and gets the portal's session list: the sessions her groups
// map to, and the admin view (admin group from the groups claim).
func TestOIDCLoginAllowedGroup(t *testing.T) {
	e := newOIDCEnv(t, nil)
	c := e.client(false)
	_, page := get(t, c, e.portal.URL+"/")
	if !strings.Contains(page, `href="/login/oidc"`) {
		t.Fatalf("the login page has no OIDC button:\n%s", page)
	}
	resp, page := e.signInAtProvider(c, e.portal.URL+"/login/oidc", "carol", "carol-pw")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Signed in") {
		t.Fatalf("callback: %d\n%s", resp.StatusCode, page)
	}
	var login *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == cookieName {
			login = ck
		}
	}
	if login == nil || !login.Secure || !login.HttpOnly || login.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login cookie %+v", login)
	}
	_, page = get(t, c, e.portal.URL+"/")
	for _, want := range []string{"carol", ":20", ":21", `href="/admin/"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("the session list lacks %q:\n%s", want, page)
		}
	}
	if resp, _ := get(t, c, e.portal.URL+"/admin/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin view for a member of xpra-admins: %d", resp.StatusCode)
	}
	if got := e.op.Logins(); len(got) != 1 || got[0] != "carol" {
		t.Fatalf("provider logins %v", got)
	}

	// erin is in xpra-users only: her session, no admin view.
	c2 := e.client(false)
	e.signInAtProvider(c2, e.portal.URL+"/login/oidc", "erin", "erin-pw")
	_, page = get(t, c2, e.portal.URL+"/")
	if !strings.Contains(page, "erin") || !strings.Contains(page, ":20") || strings.Contains(page, ":21") {
		t.Fatalf("erin's session list:\n%s", page)
	}
	if resp, _ := get(t, c2, e.portal.URL+"/admin/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin view for a non-admin: %d", resp.StatusCode)
	}
	if e.px.failures != 0 {
		t.Fatalf("%d failures noted for good logins", e.px.failures)
	}
}

// TestOIDCRefusals: a user outside the allowed groups, a user whose name
// claim is unusable, a tampered state, a replayed callback and a callback
// from another browser are refused; failures count toward bans.
func TestOIDCRefusals(t *testing.T) {
	e := newOIDCEnv(t, nil)
	notIn := func(c *http.Client, what string) {
		t.Helper()
		_, page := get(t, c, e.portal.URL+"/")
		if strings.Contains(page, "Sign out") || !strings.Contains(page, `href="/login/oidc"`) {
			t.Fatalf("%s: logged in:\n%s", what, page)
		}
	}
	c := e.client(false)
	resp, page := e.signInAtProvider(c, e.portal.URL+"/login/oidc", "dave", "dave-pw")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "authentication failed") || strings.Contains(page, "others") {
		t.Fatalf("dave (outside the allowed group): %d\n%s", resp.StatusCode, page)
	}
	notIn(c, "dave")
	if e.px.failures != 1 {
		t.Fatalf("failures %d, want 1", e.px.failures)
	}
	c = e.client(false)
	if resp, _ := e.signInAtProvider(c, e.portal.URL+"/login/oidc", "bad name", "bad-pw"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a name with a space: %d", resp.StatusCode)
	}
	notIn(c, "bad name")

	// Tampered state: the callback with another state is refused, and the
	// flow is gone afterwards (the right callback no longer works either).
	c = e.client(true)
	resp, _ = e.signInAtProvider(c, e.portal.URL+"/login/oidc", "carol", "carol-pw")
	cb, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
		t.Fatalf("redirect to the callback: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := cb.Query()
	good := cb.String()
	q.Set("state", q.Get("state")+"x")
	cb.RawQuery = q.Encode()
	resp, page = get(t, c, cb.String())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "authentication failed") {
		t.Fatalf("tampered state: %d\n%s", resp.StatusCode, page)
	}
	notIn(c, "tampered state")
	resp, _ = get(t, c, good)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the callback after its flow was used: %d", resp.StatusCode)
	}
	notIn(c, "replayed callback")

	// A callback carried to another browser (no flow cookie) is refused.
	c = e.client(true)
	resp, _ = e.signInAtProvider(c, e.portal.URL+"/login/oidc", "carol", "carol-pw")
	other := e.client(false)
	if resp, _ := get(t, other, resp.Header.Get("Location")); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a callback in another browser: %d", resp.StatusCode)
	}
	notIn(other, "callback in another browser")
	if e.px.failures != 3 {
		t.Fatalf("failures %d, want 3 (dave, bad name, tampered state)", e.px.failures)
	}
}

// TestOIDCTokenChecks drives the method without the portal: a changed
// nonce, a wrong PKCE verifier, an expired ID token, a reused code and a
// wrong client secret are refused; the right flow passes; the provider's
// error and an unreachable provider are no credential failures.
func TestOIDCTokenChecks(t *testing.T) {
	var now func() time.Time
	e := newOIDCEnv(t, func(c *OIDCConfig) {
		c.Now = func() time.Time {
			if now != nil {
				return now()
			}
			return time.Now()
		}
	})
	callback := e.portal.URL + "/login/oidc/callback"
	// run returns the callback request for a fresh flow and the flow.
	run := func() (*http.Request, Flow) {
		t.Helper()
		to, fl, err := e.m.Begin(context.Background(), callback)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(to)
		if u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("code_challenge") == "" || u.Query().Get("nonce") != fl["nonce"] || u.Query().Get("state") != fl["state"] {
			t.Fatalf("authorization URL without PKCE, nonce or state: %s", to)
		}
		resp, _ := e.signInAtProvider(e.client(true), to, "carol", "carol-pw")
		return httptest.NewRequest("GET", resp.Header.Get("Location"), nil), fl
	}
	finish := func(r *http.Request, fl Flow) error {
		_, err := e.m.Finish(context.Background(), r, callback, fl)
		return err
	}
	r, fl := run()
	fl["nonce"] = randomToken()
	if err := finish(r, fl); !errors.Is(err, auth.ErrFailed) || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("changed nonce: %v", err)
	}
	r, fl = run()
	fl["verifier"] = "A" + fl["verifier"][1:]
	if err := finish(r, fl); !errors.Is(err, auth.ErrFailed) {
		t.Fatalf("wrong PKCE verifier: %v", err)
	}
	r, fl = run()
	now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	if err := finish(r, fl); !errors.Is(err, auth.ErrFailed) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired ID token: %v", err)
	}
	now = nil
	r, fl = run()
	res, err := e.m.Finish(context.Background(), r, callback, fl)
	if err != nil || res.Identity.Username != "carol" || res.Identity.Module != "oidc" || len(res.Groups) != 2 {
		t.Fatalf("the right flow: %+v %v", res, err)
	}
	// The same code again: the provider refuses it.
	if err := finish(r, fl); err == nil {
		t.Fatal("a code was accepted twice")
	}

	// The provider's own refusal (the user denied consent) is told as
	// such, without a ban.
	_, fl, err = e.m.Begin(context.Background(), callback)
	if err != nil {
		t.Fatal(err)
	}
	var re *auth.RefusedError
	err = finish(httptest.NewRequest("GET", callback+"?state="+url.QueryEscape(fl["state"])+"&error=access_denied%3Cscript%3E", nil), fl)
	if !errors.As(err, &re) || errors.Is(err, auth.ErrFailed) || re.Reason != "the identity provider refused the login (access_deniedscript)" {
		t.Fatalf("error=access_denied: %v", err)
	}
	// A provider that cannot be reached: Begin fails (the portal says so),
	// nothing counts toward a ban.
	down, err := NewOIDC(OIDCConfig{Issuer: "https://127.0.0.1:1", ClientID: "x", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := down.Begin(context.Background(), callback); err == nil || errors.Is(err, auth.ErrFailed) {
		t.Fatalf("unreachable provider: %v", err)
	}

	bad := newOIDCEnv(t, func(c *OIDCConfig) { c.ClientSecretFile = ""; c.ClientSecretEnv = "XE_OIDC_TEST_SECRET" })
	t.Setenv("XE_OIDC_TEST_SECRET", "wrong")
	to, fl, err := bad.m.Begin(context.Background(), callback)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := bad.signInAtProvider(bad.client(true), to, "carol", "carol-pw")
	_, err = bad.m.Finish(context.Background(), httptest.NewRequest("GET", resp.Header.Get("Location"), nil), callback, fl)
	if err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong client secret: %v", err)
	}
}

func TestOIDCConfigErrors(t *testing.T) {
	for _, c := range []OIDCConfig{
		{ClientID: "x"},
		{Issuer: "http://idp.example", ClientID: "x"},
		{Issuer: "https://idp.example"},
		{Issuer: "https://idp.example", ClientID: "x", ClientSecretFile: "/f", ClientSecretEnv: "E"},
		{Issuer: "https://idp.example", ClientID: "x", RedirectURL: "https://desk.example/elsewhere"},
		{Issuer: "https://idp.example", ClientID: "x", RedirectURL: "http://desk.example/login/oidc/callback"},
	} {
		if _, err := NewOIDC(c); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
	o, err := NewOIDC(OIDCConfig{Issuer: "https://idp.example", ClientID: "x", Scopes: []string{"groups"}})
	if err != nil || o.cfg.Scopes[0] != "openid" || o.Name() != "oidc" {
		t.Fatalf("%+v %v", o, err)
	}
}

// TestOIDCNameIsNoSystemUser: a provider account named like a local
// admin does not get that system user's groups (and so no admin view),
// unless local_sessions says the provider's names are system users.
func TestOIDCNameIsNoSystemUser(t *testing.T) {
	for _, local := range []bool{false, true} {
		e := newOIDCEnv(t, func(c *OIDCConfig) { c.LocalSessions = local })
		p := e.portal.Config.Handler.(*Portal)
		p.cfg.SystemGroups = func(name string) []string {
			if name == "erin" {
				return []string{"xpra-admins"}
			}
			return nil
		}
		c := e.client(false)
		e.signInAtProvider(c, e.portal.URL+"/login/oidc", "erin", "erin-pw")
		resp, _ := get(t, c, e.portal.URL+"/admin/")
		want := http.StatusForbidden
		if local {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Fatalf("local_sessions=%v: admin view for erin (system group xpra-admins): %d, want %d", local, resp.StatusCode, want)
		}
	}
}

// The groups claim, missing or of another shape than a list of strings
// (or one string), gives no group: with allowed_groups that is a refused
// login (counted), never a crash or a group made of the wrong value; the
// strings of a mixed list count, the rest are ignored.
func TestOIDCGroupsClaimShapes(t *testing.T) {
	o, err := NewOIDC(OIDCConfig{Issuer: "https://op.test", ClientID: "x", AllowedGroups: []string{"xpra-users"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []any{nil, 7, true, map[string]any{"xpra-users": true}, []any{7, nil, []any{"xpra-users"}}, "xpra-users-not", []any{""}} {
		claims := map[string]any{"preferred_username": "carol"}
		if g != nil {
			claims["groups"] = g
		}
		if res, err := o.result(claims); !errors.Is(err, auth.ErrFailed) {
			t.Errorf("groups claim %#v: %+v %v, want a refusal", g, res, err)
		}
	}
	for _, g := range []any{"xpra-users", []any{"a", 7, "xpra-users", map[string]any{}}} {
		res, err := o.result(map[string]any{"preferred_username": "carol", "groups": g})
		if err != nil || !slices.Contains(res.Groups, "xpra-users") || slices.Contains(res.Groups, "7") {
			t.Errorf("groups claim %#v: %+v %v", g, res, err)
		}
	}
	for _, n := range []any{nil, 7, []any{"carol"}, "", "a b", "a/b", "a:b", strings.Repeat("x", 257), "a\x00b"} {
		claims := map[string]any{"groups": "xpra-users"}
		if n != nil {
			claims["preferred_username"] = n
		}
		if res, err := o.result(claims); !errors.Is(err, auth.ErrFailed) {
			t.Errorf("name claim %#v: %+v %v, want a refusal", n, res, err)
		}
	}
}

// Nothing secret of a login reaches the portal's log (at debug level):
// not the authorization code, the state, the nonce or the PKCE verifier
// (a refused callback and a replayed one included), not the login, flow
// or CSRF cookies, not a ticket, not the client secret.
func TestOIDCSecretsNotLogged(t *testing.T) {
	e := newOIDCEnv(t, nil)
	var secrets []string
	c := e.client(true)
	resp, _ := e.signInAtProvider(c, e.portal.URL+"/login/oidc", "carol", "carol-pw")
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || cb.Query().Get("code") == "" {
		t.Fatalf("redirect to the callback: %q", resp.Header.Get("Location"))
	}
	secrets = append(secrets, cb.Query().Get("code"), cb.Query().Get("state"))
	e.p.store.mu.Lock()
	for _, f := range e.p.store.flows {
		secrets = append(secrets, f.data["nonce"], f.data["verifier"], f.data["state"])
	}
	e.p.store.mu.Unlock()
	portalURL, _ := url.Parse(e.portal.URL)
	for _, ck := range c.Jar.Cookies(portalURL) {
		secrets = append(secrets, ck.Value)
	}
	// A tampered state first (refused; the flow is gone), then a fresh
	// login through to the session list and a ticket.
	q := cb.Query()
	q.Set("state", q.Get("state")+"x")
	bad := *cb
	bad.RawQuery = q.Encode()
	if resp, _ := get(t, c, bad.String()); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered state: %d", resp.StatusCode)
	}
	if resp, _ := get(t, c, cb.String()); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback after the flow was used: %d", resp.StatusCode)
	}
	c = e.client(false)
	if resp, page := e.signInAtProvider(c, e.portal.URL+"/login/oidc", "carol", "carol-pw"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d\n%s", resp.StatusCode, page)
	}
	_, sessions := get(t, c, e.portal.URL+"/")
	csrf := csrfOf(t, sessions)
	resp, err = c.PostForm(e.portal.URL+"/open", url.Values{"csrf": {csrf}, "session": {"0"}, "display": {":20"}})
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, resp)
	resp.Body.Close()
	m := ticketRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no ticket: %d\n%s", resp.StatusCode, page)
	}
	secrets = append(secrets, csrf, m[1], oidcSecret)
	for _, ck := range c.Jar.Cookies(portalURL) {
		secrets = append(secrets, ck.Value)
	}
	log := e.log.String()
	if !strings.Contains(log, "portal login") || !strings.Contains(log, "ticket minted") || !strings.Contains(log, "portal login refused") {
		t.Fatalf("the log lacks the login, the refusal or the ticket:\n%s", log)
	}
	for _, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("secret %q too short to look for", s)
		}
		if strings.Contains(log, s) {
			t.Errorf("the portal's log holds %q:\n%s", s, log)
		}
	}
}
