package fleet

import (
	"context"
	"database/sql"
	"testing"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

// BenchmarkLoginPostgres is one whole hmac login through the postgres
// module against a private cluster on loopback: one query per login
// (compare auth's BenchmarkLoginSQLite).
func BenchmarkLoginPostgres(b *testing.B) {
	c := pgtest.Start(b)
	s, err := Open(context.Background(), Options{DSN: c.DSN()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Users().Insert(context.Background(), auth.UserRow{Username: "u", Password: sql.NullString{String: "pw", Valid: true}}); err != nil {
		b.Fatal(err)
	}
	sp, _ := auth.ParseSpec("postgres")
	a, err := auth.New(sp, auth.Options{Postgres: s.Users()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l := a.Begin("u", plain)
		ch, err := l.Challenge([]string{"hmac+sha512"}, []string{"hmac+sha512"})
		if err != nil {
			b.Fatal(err)
		}
		resp, cs, err := auth.Respond([]byte("pw"), *ch, false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Verify(context.Background(), resp, cs); err != nil {
			b.Fatal(err)
		}
	}
}
