package auth

import "context"

// SecretCheck verifies a login against secrets the proxy knows itself (a
// portal's single-use tickets): match reports whether the client's
// response was computed with secret, in constant time for equal lengths.
// It returns the identity of the secret that matched, or an error
// wrapping ErrFailed.
type SecretCheck func(ctx context.Context, username string, match func(secret []byte) bool) (Identity, error)

// NewSecretLogin is a Login of module (its name, for Identity.Module and
// reasons) that sends an hmac challenge, as for a stored plaintext
// password, and checks the response with check. The shared login rules
// apply: the strongest hmac digest offered, no weak digest by default, a
// combined salt used only once.
func NewSecretLogin(module, username string, t Transport, check SecretCheck) Login {
	return newLogin(&secretChecker{name: module, check: check}, username, t)
}

type secretChecker struct {
	name  string
	check SecretCheck
}

func (c *secretChecker) moduleName() string                   { return c.name }
func (c *secretChecker) prompt() string                       { return "password" }
func (c *secretChecker) mode(string, Transport) (mode, error) { return modeHMAC, nil }

func (c *secretChecker) verify(ctx context.Context, username string, p *proof) (Identity, error) {
	return c.check(ctx, username, func(secret []byte) bool { return len(secret) > 0 && p.check(secret) })
}
