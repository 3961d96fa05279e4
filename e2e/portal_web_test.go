package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// webClient is a browser stand-in for portal tests that need no
// JavaScript: a cookie jar, trusting only the given CA files, following
// redirects, every request bounded.
type webClient struct {
	t    *testing.T
	c    *http.Client
	base string // https://127.0.0.1:PORT
	// stopAt: a redirect to a URL with this prefix is not followed (the
	// response with the Location is returned).
	stopAt string
}

func newWebClient(t *testing.T, base string, caFiles ...string) *webClient {
	t.Helper()
	pool := x509.NewCertPool()
	for _, f := range caFiles {
		pem, err := os.ReadFile(f)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("CA file %s: %v", f, err)
		}
	}
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	w := &webClient{t: t, base: base}
	w.c = &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: tr,
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("too many redirects")
			}
			if w.stopAt != "" && strings.HasPrefix(r.URL.String(), w.stopAt) {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	return w
}

func (w *webClient) read(resp *http.Response, err error) (*http.Response, string) {
	w.t.Helper()
	if err != nil {
		w.t.Fatalf("request: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		w.t.Fatalf("read %s: %v", resp.Request.URL, err)
	}
	return resp, string(b)
}

// get fetches a URL (a path is relative to base).
func (w *webClient) get(u string) (*http.Response, string) {
	w.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = w.base + u
	}
	return w.read(w.c.Get(u))
}

func (w *webClient) post(u string, form url.Values) (*http.Response, string) {
	w.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = w.base + u
	}
	return w.read(w.c.PostForm(u, form))
}

var formCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// portalLogin signs in with the login page's password form and returns
// the answer to the form (after redirects: the session list on success).
func (w *webClient) portalLogin(user, password string) (*http.Response, string) {
	w.t.Helper()
	_, page := w.get("/login")
	m := formCSRF.FindStringSubmatch(page)
	if m == nil {
		w.t.Fatalf("no CSRF token on the login page:\n%s", page)
	}
	return w.post("/login", url.Values{"csrf": {html.UnescapeString(m[1])}, "username": {user}, "password": {password}})
}

// signedInAs reports whether a portal page is the session list of user.
func signedInAs(page, user string) bool {
	return strings.Contains(page, `<strong id="user">`+html.EscapeString(user)+`</strong>`)
}
