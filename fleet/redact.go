package fleet

import (
	"net/url"
	"regexp"
	"strings"
)

// RedactDSN returns dsn with its secrets (the password and sslpassword,
// the passphrase of an encrypted sslkey) replaced by "xxxxx", for logs and
// errors. It handles URLs (postgres://user:pw@host/db?password=pw) and
// key/value strings (host=h password=pw); anything it cannot parse is
// replaced as a whole.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(unparsable postgres URL)"
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		q := u.Query()
		changed := false
		for _, k := range secretParams {
			if q.Has(k) {
				q.Set(k, "xxxxx")
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// secretParams are the DSN parameters that hold secrets.
var secretParams = []string{"password", "sslpassword"}

// kvPassword matches password=VALUE and sslpassword=VALUE in a key/value
// DSN: a quoted value (with \' escapes) or up to the next blank.
var kvPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)

// dsnSSLPassword is the sslpassword a DSN carries (pgx keeps it out of
// its Config), so that it can be redacted from error texts.
func dsnSSLPassword(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return ""
		}
		return u.Query().Get("sslpassword")
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(m[1])), "sslpassword") {
			v := m[2]
			if len(v) >= 2 && v[0] == '\'' {
				v = strings.ReplaceAll(v[1:len(v)-1], `\'`, `'`)
			}
			return v
		}
	}
	return ""
}

// redactor removes secrets from error texts while keeping the error
// chain for errors.Is/As.
type redactor struct{ secrets []string }

func newRedactor(secrets ...string) redactor {
	var r redactor
	for _, s := range secrets {
		if s != "" {
			r.secrets = append(r.secrets, s)
			if e := url.QueryEscape(s); e != s {
				r.secrets = append(r.secrets, e)
			}
			if e := url.PathEscape(s); e != s {
				r.secrets = append(r.secrets, e)
			}
		}
	}
	return r
}

func (r redactor) text(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "xxxxx")
	}
	return s
}

// err wraps e so that its message holds no secret; nil stays nil.
func (r redactor) err(e error) error {
	if e == nil {
		return nil
	}
	msg := r.text(e.Error())
	if msg == e.Error() {
		return e
	}
	return &redactedError{msg: msg, err: e}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
