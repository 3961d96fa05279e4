package auth

import (
	"context"
	"io"
	"path/filepath"
	"testing"
)

func benchLogins(b *testing.B, a Authenticator, user, pw string, tr Transport) {
	b.ReportAllocs()
	for b.Loop() {
		l := a.Begin(user, tr)
		ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
		if err != nil {
			b.Fatal(err)
		}
		resp, cs, err := Respond([]byte(pw), *ch, tr.Encrypted)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Verify(context.Background(), resp, cs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoginPassword is one whole hmac+sha512 login (both sides).
func BenchmarkLoginPassword(b *testing.B) {
	a, err := New(Spec{Name: "password", Options: map[string]string{"value": "pw"}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	benchLogins(b, a, "u", "pw", plainTCP)
}

// BenchmarkLoginSQLite includes opening and querying the database (once
// per login: the rows read for the challenge are reused for the response).
func BenchmarkLoginSQLite(b *testing.B) {
	file := filepath.Join(b.TempDir(), "b.sdb")
	if SQLiteCLI([]string{file, "create"}, io.Discard, io.Discard) != 0 || SQLiteCLI([]string{file, "add", "u", "pw"}, io.Discard, io.Discard) != 0 {
		b.Fatal("setup")
	}
	a, err := New(Spec{Name: "sqlite", Options: map[string]string{"filename": file}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	benchLogins(b, a, "u", "pw", plainTCP)
}

// BenchmarkLoginArgon2id is a TOML user with an argon2id hash over TLS.
func BenchmarkLoginArgon2id(b *testing.B) {
	a, err := New(Spec{Name: "toml"}, Options{Users: []User{{Name: "u", PasswordHash: HashPassword([]byte("pw"))}}})
	if err != nil {
		b.Fatal(err)
	}
	benchLogins(b, a, "u", "pw", tlsTCP)
}
