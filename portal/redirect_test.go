package portal

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/edge"
)

// fakeIdP is a RedirectMethod whose provider is the test itself.
type fakeIdP struct {
	began    int
	finished []Flow
	refuse   bool
}

func (f *fakeIdP) Name() string  { return "idp" }
func (f *fakeIdP) Label() string { return "Sign in with the IdP" }
func (f *fakeIdP) Begin(_ context.Context, cb string) (string, Flow, error) {
	f.began++
	state := fmt.Sprintf("state-%d", f.began)
	return "https://idp.test/authorize?state=" + state + "&redirect_uri=" + url.QueryEscape(cb), Flow{"state": state}, nil
}
func (f *fakeIdP) Finish(_ context.Context, r *http.Request, _ string, fl Flow) (Result, error) {
	f.finished = append(f.finished, fl)
	if f.refuse || r.URL.Query().Get("state") != fl["state"] {
		return Result{}, fmt.Errorf("idp: %w", auth.ErrFailed)
	}
	return Result{Identity: auth.Identity{Username: "alice", Module: "idp"}, Groups: []string{"xpra-admins"}}, nil
}

// A redirect login: Begin's URL and a Lax flow cookie; the callback with
// that cookie hands Finish the flow once and logs in (group → admin),
// answering with a same-site page that moves on to "/"; without the
// cookie, a second time, or refused by the method, it is no login (a
// refusal counts toward bans).
func TestRedirectMethod(t *testing.T) {
	e := newEnv(t)
	idp := &fakeIdP{}
	mod, _ := auth.New(auth.Spec{Name: "toml"}, auth.Options{})
	e.p = New(Config{Logger: slog.New(slog.DiscardHandler), AdminGroup: "xpra-admins", Methods: []Method{idp, &ModuleLogin{Module: mod}},
		Info: func(*http.Request) (edge.RequestInfo, bool) {
			return edge.RequestInfo{Remote: "192.0.2.1:4000", TLS: true, HTTPS: true, Listener: "test"}, true
		}, SystemGroups: func(string) []string { return nil }})
	e.p.Attach(e.px)
	b := e.browser()
	page := bodyOf(t, b.do("GET", "/", nil))
	if !strings.Contains(page, `href="/login/idp"`) || !strings.Contains(page, `name="password"`) {
		t.Fatalf("login page lacks the IdP button or the password form:\n%s", page)
	}
	resp := b.do("GET", "/login/idp", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "https://idp.test/authorize?state=state-1") ||
		!strings.Contains(loc, url.QueryEscape("https://portal.test/login/idp/callback")) {
		t.Fatalf("begin: %s %q", resp.Status, loc)
	}
	fc := b.cookies[flowCookieName]
	if fc == nil || !fc.Secure || !fc.HttpOnly || fc.SameSite != http.SameSiteLaxMode {
		t.Fatalf("flow cookie %+v", fc)
	}
	// Another browser (no flow cookie) cannot finish it.
	if resp := e.browser().do("GET", "/login/idp/callback?state=state-1", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback without the flow cookie: %s", resp.Status)
	}
	saved := *fc
	resp = b.do("GET", "/login/idp/callback?state=state-1&code=x", nil)
	page = bodyOf(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `http-equiv="refresh" content="0; url=/"`) {
		t.Fatalf("callback: %s\n%s", resp.Status, page)
	}
	if len(idp.finished) != 1 || idp.finished[0]["state"] != "state-1" {
		t.Errorf("Finish got %v", idp.finished)
	}
	if _, ok := b.cookies[flowCookieName]; ok {
		t.Errorf("the flow cookie was not cleared")
	}
	sessions := bodyOf(t, b.do("GET", "/", nil))
	if !strings.Contains(sessions, `id="user">alice<`) || !strings.Contains(sessions, `id="admin-link"`) {
		t.Errorf("after the redirect login:\n%s", sessions)
	}
	// The flow was used: replaying the callback with its cookie fails.
	replay := e.browser()
	replay.cookies[flowCookieName] = &saved
	if resp := replay.do("GET", "/login/idp/callback?state=state-1&code=x", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed callback: %s", resp.Status)
	}
	// A refusal by the method is a failed login, counted.
	idp.refuse = true
	c := e.browser()
	c.do("GET", "/login/idp", nil)
	before := e.px.failures
	if resp := c.do("GET", "/login/idp/callback?state=state-2", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("refused callback: %s", resp.Status)
	}
	if e.px.failures != before+1 {
		t.Errorf("the refusal was not counted toward bans")
	}
	if _, ok := c.cookies[cookieName]; ok {
		t.Errorf("a refused redirect login set the login cookie")
	}
	if resp := b.do("GET", "/login/nope", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown method: %s", resp.Status)
	}
}

// Pending redirect logins are bounded per client host (a flood from one
// address is refused there, not for others) and in all (the oldest go).
func TestFlowBounds(t *testing.T) {
	e := newEnv(t)
	s := e.p.store
	var first string
	for i := range maxFlowsPerAddr {
		c := s.addFlow("idp", Flow{"i": fmt.Sprint(i)}, "192.0.2.66")
		if c == "" {
			t.Fatalf("flow %d of one address refused", i)
		}
		if i == 0 {
			first = c
		}
	}
	if c := s.addFlow("idp", nil, "192.0.2.66"); c != "" {
		t.Errorf("flow %d of one address accepted", maxFlowsPerAddr+1)
	}
	if c := s.addFlow("idp", nil, "192.0.2.67"); c == "" {
		t.Errorf("another address refused")
	}
	// Taken (or expired) flows free the address's room.
	if fl, ok := s.takeFlow(first, "idp"); !ok || fl["i"] != "0" {
		t.Errorf("takeFlow: %v %v", fl, ok)
	}
	if c := s.addFlow("idp", nil, "192.0.2.66"); c == "" {
		t.Errorf("a taken flow did not free its address's room")
	}
	e.advance(FlowTTL + 1)
	for range maxFlowsPerAddr {
		if c := s.addFlow("idp", nil, "192.0.2.66"); c == "" {
			t.Fatalf("expired flows did not free the address's room")
		}
	}
	// The global bound: filling it evicts the oldest, never refuses.
	for i := range maxFlows + 5 {
		if c := s.addFlow("idp", nil, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)); c == "" {
			t.Fatalf("flow %d refused at the global bound", i)
		}
	}
	s.mu.Lock()
	n := len(s.flows)
	s.mu.Unlock()
	if n > maxFlows {
		t.Errorf("%d flows held, bound %d", n, maxFlows)
	}
}

// The per-host bound of pending redirect logins counts an IPv6 client by
// its /64, as the ban table does: one host owns a whole /64, so counting
// each address on its own would let it begin any number of logins and
// evict everybody's logins in progress.
func TestFlowBoundPerIPv6Prefix(t *testing.T) {
	e := newEnv(t)
	idp := &fakeIdP{}
	var remote string
	e.p = New(Config{Logger: slog.New(slog.DiscardHandler), Methods: []Method{idp},
		Info: func(*http.Request) (edge.RequestInfo, bool) {
			return edge.RequestInfo{Remote: remote, TLS: true, HTTPS: true, Listener: "test"}, true
		}, SystemGroups: func(string) []string { return nil }})
	e.p.Attach(e.px)
	for i := range maxFlowsPerAddr {
		remote = fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1)
		if resp := e.browser().do("GET", "/login/idp", nil); resp.StatusCode != http.StatusFound {
			t.Fatalf("begin %d from %s: %s", i, remote, resp.Status)
		}
	}
	remote = "[2001:db8:1:2:ffff::1]:4000" // same /64
	if resp := e.browser().do("GET", "/login/idp", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("begin %d from the same /64: %s, want 429", maxFlowsPerAddr+1, resp.Status)
	}
	remote = "[2001:db8:1:3::1]:4000" // another /64
	if resp := e.browser().do("GET", "/login/idp", nil); resp.StatusCode != http.StatusFound {
		t.Errorf("begin from another /64: %s", resp.Status)
	}
}
