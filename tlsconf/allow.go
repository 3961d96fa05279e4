package tlsconf

import (
	"errors"
	"strings"
)

// ErrNotAllowed is returned (wrapped) for a name outside the configured
// domains and the on-demand allow-list; nothing is issued for it.
var ErrNotAllowed = errors.New("name not allowed for a certificate")

// allowList holds exact names and wildcard suffixes, lower-cased.
type allowList struct {
	exact    map[string]struct{}
	suffixes []string // ".example.com"
}

func newAllowList(names ...[]string) *allowList {
	a := &allowList{exact: make(map[string]struct{})}
	for _, list := range names {
		for _, n := range list {
			n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
			if n == "" {
				continue
			}
			if strings.HasPrefix(n, "*.") {
				a.suffixes = append(a.suffixes, n[1:])
				continue
			}
			a.exact[n] = struct{}{}
		}
	}
	return a
}

// allowed reports whether name may get a certificate. "*.example.com"
// matches "a.example.com" and "a.b.example.com", never "example.com".
func (a *allowList) allowed(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" || strings.ContainsAny(name, "*/\\ ") {
		return false
	}
	if _, ok := a.exact[name]; ok {
		return true
	}
	for _, s := range a.suffixes {
		if len(name) > len(s) && strings.HasSuffix(name, s) && !strings.HasPrefix(name, ".") {
			return true
		}
	}
	return false
}
