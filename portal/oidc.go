package portal

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/xpra-edge/xpra-edge/auth"
)

// OIDCConfig configures an OpenID Connect login (authorization code flow
// with PKCE).
type OIDCConfig struct {
	// Name is the method's name in URLs (/login/NAME/callback), default
	// "oidc"; Label the text of its button.
	Name, Label string
	// Issuer is the provider's issuer URL (https); its discovery document
	// is fetched at the first login.
	Issuer string
	// ClientID and the client secret: from ClientSecretFile (its first
	// line) or the environment variable ClientSecretEnv, read at each
	// login; neither: a public client (PKCE alone).
	ClientID                          string
	ClientSecretFile, ClientSecretEnv string
	// RedirectURL is the callback registered with the provider; default:
	// https://<the request's host>/login/NAME/callback.
	RedirectURL string
	// Scopes asked for; "openid" is always added. Default openid,
	// profile, email.
	Scopes []string
	// UsernameClaim names the user (default "preferred_username");
	// GroupsClaim lists their groups (default "groups"). Both are read
	// from the verified ID token.
	UsernameClaim, GroupsClaim string
	// AllowedGroups: when set, only members of one of them log in.
	AllowedGroups []string
	// GroupDisplays maps a group to the sessions (display entries, as in
	// a toml [[user]]'s displays) its members may open.
	GroupDisplays map[string][]string
	// LocalSessions: the user's sessions are also the local system
	// user's of the same name (system-wide mode, as with pam).
	LocalSessions bool
	// CAFile holds PEM CAs to trust for the provider (default: the
	// system's).
	CAFile string
	// Timeout bounds each request to the provider (default 10 s).
	Timeout time.Duration
	// HTTPClient replaces the client built from CAFile and Timeout (tests).
	HTTPClient *http.Client
	// Now is the clock ID tokens are checked with (tests); default
	// time.Now.
	Now func() time.Time
}

// OIDC is a RedirectMethod that logs in with an OpenID provider: the
// authorization code flow with PKCE (S256), a state and a nonce kept in
// the portal's Flow (bound to the browser by the flow cookie), and the ID
// token verified (signature, issuer, audience, expiry, nonce).
type OIDC struct {
	cfg    OIDCConfig
	client *http.Client

	mu   sync.Mutex
	prov *oidc.Provider
}

var _ RedirectMethod = (*OIDC)(nil)

// maxProviderBody bounds every response read from the provider.
const maxProviderBody = 1 << 20

// NewOIDC checks cfg; it contacts nobody and reads no file.
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	if cfg.Name == "" {
		cfg.Name = "oidc"
	}
	if cfg.Label == "" {
		cfg.Label = "Sign in with single sign-on"
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "preferred_username"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"profile", "email"}
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oidc: issuer must be an https URL, got %q", cfg.Issuer)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("oidc: client_id is required")
	}
	if cfg.ClientSecretFile != "" && cfg.ClientSecretEnv != "" {
		return nil, errors.New("oidc: give client_secret_file or client_secret_env, not both")
	}
	if cfg.RedirectURL != "" {
		r, err := url.Parse(cfg.RedirectURL)
		if err != nil || r.Scheme != "https" || r.Host == "" || r.Path != "/login/"+cfg.Name+"/callback" || r.RawQuery != "" {
			return nil, fmt.Errorf("oidc: redirect_url must be https://HOST/login/%s/callback, got %q", cfg.Name, cfg.RedirectURL)
		}
	}
	o := &OIDC{cfg: cfg, client: cfg.HTTPClient}
	if o.client == nil {
		o.client = &http.Client{Timeout: cfg.Timeout, Transport: &limitedTransport{caFile: cfg.CAFile, timeout: cfg.Timeout}}
	}
	return o, nil
}

// Name implements Method.
func (o *OIDC) Name() string { return o.cfg.Name }

// Label implements Method.
func (o *OIDC) Label() string { return o.cfg.Label }

func (o *OIDC) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, o.client)
}

// provider fetches the discovery document once (again after a failure).
func (o *OIDC) provider(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.prov != nil {
		return o.prov, nil
	}
	p, err := oidc.NewProvider(o.ctx(ctx), o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc: discovery of %s: %w", o.cfg.Issuer, err)
	}
	o.prov = p
	return p, nil
}

func (o *OIDC) oauth2Config(p *oidc.Provider, callbackURL, secret string) *oauth2.Config {
	redirect := o.cfg.RedirectURL
	if redirect == "" {
		redirect = callbackURL
	}
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: redirect, Scopes: o.cfg.Scopes}
}

// Begin implements RedirectMethod.
func (o *OIDC) Begin(ctx context.Context, callbackURL string) (string, Flow, error) {
	p, err := o.provider(ctx)
	if err != nil {
		return "", nil, err
	}
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	c := o.oauth2Config(p, callbackURL, "")
	to := c.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	return to, Flow{"state": state, "nonce": nonce, "verifier": verifier, "redirect": c.RedirectURL}, nil
}

// errOIDCFailed is wrapped by every refused OIDC login.
func oidcFailed(format string, args ...any) error {
	return fmt.Errorf("oidc: %w: "+format, append([]any{auth.ErrFailed}, args...)...)
}

// Finish implements RedirectMethod.
func (o *OIDC) Finish(ctx context.Context, r *http.Request, callbackURL string, fl Flow) (Result, error) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || fl["state"] == "" || subtle.ConstantTimeCompare([]byte(state), []byte(fl["state"])) != 1 {
		return Result{}, oidcFailed("the state does not match this browser's login")
	}
	if e := q.Get("error"); e != "" {
		return Result{}, &auth.RefusedError{Reason: "the identity provider refused the login (" + printableCode(e) + ")"}
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		return Result{}, oidcFailed("no authorization code")
	}
	p, err := o.provider(ctx)
	if err != nil {
		return Result{}, err
	}
	secret, err := o.secret()
	if err != nil {
		return Result{}, err
	}
	c := o.oauth2Config(p, callbackURL, secret)
	c.RedirectURL = fl["redirect"]
	tok, err := c.Exchange(o.ctx(ctx), code, oauth2.VerifierOption(fl["verifier"]))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return Result{}, oidcFailed("the provider refused the code (invalid_grant)")
		}
		return Result{}, fmt.Errorf("oidc: token exchange: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Result{}, fmt.Errorf("oidc: the token response has no id_token")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.cfg.Now}).Verify(o.ctx(ctx), raw)
	if err != nil {
		return Result{}, oidcFailed("ID token: %v", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(fl["nonce"])) != 1 || idt.Nonce == "" {
		return Result{}, oidcFailed("the ID token's nonce does not match this login")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Result{}, oidcFailed("at_hash: %v", err)
		}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Result{}, oidcFailed("claims: %v", err)
	}
	return o.result(claims)
}

// result maps verified claims to who logged in.
func (o *OIDC) result(claims map[string]any) (Result, error) {
	name, _ := claims[o.cfg.UsernameClaim].(string)
	if !validUsername(name) {
		return Result{}, oidcFailed("claim %q is missing or not a usable user name", o.cfg.UsernameClaim)
	}
	var groups []string
	switch g := claims[o.cfg.GroupsClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok && s != "" && len(groups) < 1000 {
				groups = append(groups, s)
			}
		}
	}
	if len(o.cfg.AllowedGroups) > 0 && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(o.cfg.AllowedGroups, g) }) {
		return Result{}, oidcFailed("%s is in none of the allowed groups", name)
	}
	id := auth.Identity{Username: name, Module: "oidc", LocalSessions: o.cfg.LocalSessions}
	for _, g := range groups {
		for _, d := range o.cfg.GroupDisplays[g] {
			if !slices.Contains(id.Displays, d) {
				id.Displays = append(id.Displays, d)
			}
		}
	}
	return Result{Identity: id, Groups: groups}, nil
}

// validUsername: 1..256 bytes of UTF-8 without spaces, control
// characters, '/' or ':' (the name may name a system user).
func validUsername(s string) bool {
	if s == "" || len(s) > 256 || !utf8.ValidString(s) || strings.ContainsAny(s, "/:") {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// printableCode keeps an error code from the provider short and plain.
func printableCode(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (o *OIDC) secret() (string, error) {
	switch {
	case o.cfg.ClientSecretEnv != "":
		s := os.Getenv(o.cfg.ClientSecretEnv)
		if s == "" {
			return "", fmt.Errorf("oidc: $%s is empty or unset", o.cfg.ClientSecretEnv)
		}
		return s, nil
	case o.cfg.ClientSecretFile != "":
		b, err := auth.ReadSmallFile(o.cfg.ClientSecretFile, maxProviderBody)
		if err != nil {
			return "", fmt.Errorf("oidc: client secret: %w", err)
		}
		s, _, _ := strings.Cut(string(b), "\n")
		s = strings.TrimSuffix(s, "\r")
		if s == "" {
			return "", fmt.Errorf("oidc: client secret file %s is empty", o.cfg.ClientSecretFile)
		}
		return s, nil
	}
	return "", nil
}

// limitedTransport is the provider's transport: the configured CAs (read
// at first use, again after a failure), bounded dial and handshake, https
// only, and bounded response bodies.
type limitedTransport struct {
	caFile  string
	timeout time.Duration
	mu      sync.Mutex
	rt      http.RoundTripper
}

func (t *limitedTransport) transport() (http.RoundTripper, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rt != nil {
		return t.rt, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.caFile != "" {
		pem, err := auth.ReadSmallFile(t.caFile, maxProviderBody)
		if err != nil {
			return nil, fmt.Errorf("oidc: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oidc: ca_file %s holds no PEM certificate", t.caFile)
		}
		tc.RootCAs = pool
	}
	t.rt = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: t.timeout}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: t.timeout,
		MaxIdleConns:        4,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   true,
	}
	return t.rt, nil
}

func (t *limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt, err := t.transport()
	if err != nil {
		return nil, err
	}
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("oidc: refusing %s: the provider is spoken to over https only", r.URL.Redacted())
	}
	resp, err := rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{io.LimitReader(resp.Body, maxProviderBody), resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}
