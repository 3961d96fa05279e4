package xpratest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// ErrDisconnected: the HTML5 client shows that its connection closed (or
// never opened); the error text carries the reason the page shows.
var ErrDisconnected = errors.New("html5 client disconnected")

// BrowserOptions configures OpenHTML5With.
type BrowserOptions struct {
	// Lifetime bounds the browser; it is killed after it (default 5m).
	Lifetime time.Duration
	// Width and Height of the browser window (default 1280x1024).
	Width, Height int
	// IgnoreCertErrors accepts self-signed certificates (for wss tests).
	IgnoreCertErrors bool
}

// Browser is Debian's chromium, headless, showing xpra's HTML5 client.
type Browser struct {
	URL         string
	UserDataDir string

	ctx     context.Context
	cancel  context.CancelFunc
	marker  string
	stopped bool
	tab     bool // a tab of another Browser: Close closes the tab only
}

// OpenHTML5 opens pageURL (xpra's HTML5 client, e.g.
// "http://127.0.0.1:PORT/?username=U&password=P" from a server started
// with --html=on, or the same path through the proxy) in a fresh headless
// chromium and waits until the page has loaded. t.Cleanup closes it and
// kills every chromium process it started.
//
// The HTML5 client (Debian's /usr/share/xpra/www, the 3.1 series) reads
// server, port, username, password, encoding, sound, submit... from the
// query string and connects at once over ws:// (wss:// for https pages) to
// the page's own host and port unless server/port say otherwise. When the
// connection closes it navigates to connect.html and shows the reason in
// #disconnect-reason (submit=false keeps it on index.html instead).
func OpenHTML5(t testing.TB, pageURL string) *Browser {
	t.Helper()
	return OpenHTML5With(t, pageURL, BrowserOptions{})
}

// OpenHTML5With is OpenHTML5 with options.
func OpenHTML5With(t testing.TB, pageURL string, o BrowserOptions) *Browser {
	t.Helper()
	RequirePeers(t, "chromium")
	if o.Lifetime == 0 {
		o.Lifetime = 5 * time.Minute
	}
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 1280, 1024
	}
	bin, _ := lookPath("chromium")
	w := newWorkDir(t, "chromium", -1, -1)
	b := &Browser{URL: pageURL, UserDataDir: filepath.Join(w.root, "profile"), marker: newMarker()}
	registry.add(b.marker)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(b.UserDataDir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(o.Width, o.Height),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Env(append(w.env(), markerVar+"="+b.marker)...),
	}
	if o.IgnoreCertErrors {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors", true))
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	lifeCtx, lifeCancel := context.WithTimeout(allocCtx, o.Lifetime)
	ctx, cancel := chromedp.NewContext(lifeCtx)
	b.ctx = ctx
	b.cancel = func() {
		cancel()
		lifeCancel()
		allocCancel()
	}
	t.Cleanup(b.Close)

	// The first Run starts chromium and must not carry its own timeout (it
	// would end the browser with it): bound it with a watchdog instead.
	watchdog := time.AfterFunc(60*time.Second, cancel)
	_, err := chromedp.Run(ctx, chromedp.Navigate(pageURL))
	watchdog.Stop()
	if err != nil {
		t.Fatalf("xpratest: chromium: open %s: %v", redactURL(pageURL), err)
	}
	return b
}

// Close closes the browser and kills whatever is left of its processes.
// Idempotent; also run by t.Cleanup.
func (b *Browser) Close() {
	if b.stopped {
		return
	}
	b.stopped = true
	if b.tab {
		b.cancel()
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	_ = chromedp.Cancel(ctx) // closes the browser gracefully
	cancel()
	b.cancel()
	for range 50 {
		pids := findMarked(b.marker, -2)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Processes lists the live chromium processes of this browser.
func (b *Browser) Processes() []int { return findMarked(b.marker, -2) }

// Eval evaluates a JavaScript expression in the page (bounded to 10 s) and
// stores its JSON result in out (which may be nil).
func (b *Browser) Eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
	if err != nil {
		return fmt.Errorf("evaluate in page: %w", err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(v, out); err != nil {
		return fmt.Errorf("evaluate in page: decode result: %w", err)
	}
	return nil
}

// PageText is the visible text of the page (document.body.innerText), or
// the error reading it.
func (b *Browser) PageText() string {
	var s string
	if err := b.Eval(`document.body ? document.body.innerText : ""`, &s); err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// Location is the page's current URL (connect.html after a disconnect).
func (b *Browser) Location() string {
	var s string
	if err := b.Eval(`document.location.href`, &s); err != nil {
		return ""
	}
	return s
}

// html5State is what WaitDrawn reads from the page in one evaluation.
type html5State struct {
	Connected bool   `json:"connected"`
	Windows   int    `json:"windows"`
	Drawn     int    `json:"drawn"`
	Reason    string `json:"reason"`
	Page      string `json:"page"`
}

// html5StateJS counts the HTML5 client's windows (div.window, one per
// remote window) and how many of their canvases hold more than one colour,
// and picks up a disconnect reason from the client object or connect.html.
const html5StateJS = `(() => {
	const st = {connected: false, windows: 0, drawn: 0, reason: "", page: document.location.pathname};
	try {
		if (typeof client !== "undefined" && client) {
			st.connected = !!client.connected;
			st.reason = client.disconnect_reason || "";
		}
	} catch (e) {}
	const dr = document.getElementById("disconnect-reason");
	if (dr && dr.innerText) { st.reason = dr.innerText; }
	const wins = document.querySelectorAll("div.window");
	st.windows = wins.length;
	for (const w of wins) {
		const c = w.querySelector("canvas");
		if (!c || c.width < 2 || c.height < 2) continue;
		let data;
		try { data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; } catch (e) { continue; }
		const seen = new Set();
		for (let i = 0; i < data.length && seen.size < 2; i += 4 * 7) {
			seen.add((data[i] << 16) | (data[i+1] << 8) | data[i+2]);
		}
		if (seen.size >= 2) st.drawn++;
	}
	return st;
})()`

// WaitDrawn waits up to d until the HTML5 client is connected and at least
// one remote window's canvas holds more than one colour (the server's
// pixels were decoded and painted). It returns an error wrapping
// ErrDisconnected with the page's reason when the client shows a
// disconnect, ErrTimeout otherwise.
func (b *Browser) WaitDrawn(d time.Duration) error {
	deadline := time.Now().Add(d)
	var st html5State
	var onConnectPage time.Time
	for {
		err := b.Eval(html5StateJS, &st)
		if err == nil {
			if st.Connected && st.Drawn > 0 {
				return nil
			}
			if st.Reason != "" {
				return fmt.Errorf("%w: %s", ErrDisconnected, st.Reason)
			}
			if strings.HasSuffix(st.Page, "connect.html") {
				if onConnectPage.IsZero() {
					onConnectPage = time.Now()
				} else if time.Since(onConnectPage) > 3*time.Second {
					return fmt.Errorf("%w: (no reason shown)", ErrDisconnected)
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("html5 client: %w after %s (connected=%v windows=%d drawn=%d eval error=%v)",
				ErrTimeout, d, st.Connected, st.Windows, st.Drawn, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitDisconnected waits up to d until the HTML5 client shows that its
// connection closed and returns the reason it shows (for example
// "authentication failed" or "server shutdown").
func (b *Browser) WaitDisconnected(d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	var st html5State
	var onConnectPage time.Time
	for {
		if err := b.Eval(html5StateJS, &st); err == nil {
			if st.Reason != "" {
				return st.Reason, nil
			}
			// connect.html fills in the reason once it has loaded
			if strings.HasSuffix(st.Page, "connect.html") {
				if onConnectPage.IsZero() {
					onConnectPage = time.Now()
				} else if time.Since(onConnectPage) > 3*time.Second {
					return "(no reason shown)", nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("html5 client still connected: %w after %s", ErrTimeout, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Screenshot writes a PNG of the browser's viewport to path.
func (b *Browser) Screenshot(path string) error {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	var buf []byte
	for {
		var err error
		buf, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err == nil {
			break
		}
		// While the page navigates (the HTML5 client leaves its page
		// after a failed login), no page is attached for a moment.
		if !strings.Contains(err.Error(), "Not attached to an active page") || ctx.Err() != nil {
			return fmt.Errorf("screenshot: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("screenshot: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return nil
}

// redactURL drops the password query parameter and URL userinfo so an
// error message never carries a password.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '@'); j >= 0 && !strings.Contains(u[i+3:i+3+j], "/") {
			u = u[:i+3] + "REDACTED@" + u[i+3+j+1:]
		}
	}
	if i := strings.Index(u, "password="); i >= 0 {
		end := strings.IndexByte(u[i:], '&')
		if end < 0 {
			u = u[:i] + "password=REDACTED"
		} else {
			u = u[:i] + "password=REDACTED" + u[i+end:]
		}
	}
	return u
}

// Navigate loads pageURL in the browser's tab and waits for its load
// (bounded to 30 s).
func (b *Browser) Navigate(pageURL string) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(pageURL)); err != nil {
		return fmt.Errorf("navigate to %s: %w", redactURL(pageURL), err)
	}
	b.URL = pageURL
	return nil
}

// WaitTrue evaluates expr every 100 ms until it is true, for at most d.
func (b *Browser) WaitTrue(expr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var ok bool
		err := b.Eval(`(() => { try { return !!(`+expr+`); } catch (e) { return false; } })()`, &ok)
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s waiting for %s (eval error %v); page %s: %q", ErrTimeout, d, expr, err, b.Location(), b.PageText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// OnNewDocument has every document loaded from now on run js before its
// own scripts (tests use it to observe what a page does).
func (b *Browser) OnNewDocument(js string) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
	return err
}

// Cookies are the browser's cookies for pageURL, HttpOnly ones included.
func (b *Browser) Cookies(pageURL string) ([]*network.Cookie, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{pageURL}})
	if err != nil {
		return nil, err
	}
	return res.Cookies, nil
}

// NewTab opens pageURL in a new tab of the same browser (same cookies and
// origin storage, its own sessionStorage). Closing it closes the tab only.
func (b *Browser) NewTab(t testing.TB, pageURL string) *Browser {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tab := &Browser{URL: pageURL, UserDataDir: b.UserDataDir, ctx: ctx, cancel: cancel, marker: b.marker, tab: true}
	t.Cleanup(tab.Close)
	// The tab's first Run creates it and must not carry its own timeout
	// (it would close the tab with it): a watchdog bounds it instead.
	watchdog := time.AfterFunc(30*time.Second, cancel)
	_, err := chromedp.Run(ctx, chromedp.Navigate(pageURL))
	watchdog.Stop()
	if err != nil {
		t.Fatalf("xpratest: chromium: new tab %s: %v", redactURL(pageURL), err)
	}
	return tab
}
