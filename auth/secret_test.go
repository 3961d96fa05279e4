package auth

import (
	"context"
	"errors"
	"testing"
)

// A secret login sends an hmac challenge (never xor, nor a weak digest
// unless allowed), checks the response with its SecretCheck, and, like
// every login, verifies once and never accepts a combined salt twice.
func TestSecretLogin(t *testing.T) {
	check := func(_ context.Context, user string, match func([]byte) bool) (Identity, error) {
		if user == "u" && match([]byte("s3cret")) {
			return Identity{Username: "u"}, nil
		}
		return Identity{}, failed("secret")
	}
	tr := Transport{Kind: "wss", Encrypted: true}
	l := NewSecretLogin("secret", "u", tr, check)
	ch, err := l.Challenge([]string{"xor", "hmac+sha256"}, []string{"hmac+sha256"})
	if err != nil || ch.Digest != "hmac+sha256" {
		t.Fatalf("challenge %+v %v", ch, err)
	}
	resp, salt, err := Respond([]byte("s3cret"), *ch, false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := l.Verify(context.Background(), resp, salt)
	if err != nil || id.Username != "u" || id.Module != "secret" {
		t.Fatalf("verify: %+v %v", id, err)
	}
	if _, err := l.Verify(context.Background(), resp, salt); !errors.Is(err, ErrFailed) {
		t.Errorf("second verify: %v", err)
	}
	// The same answer on a new login with the same salt: refused.
	l2 := NewSecretLogin("secret", "u", tr, check)
	if _, err := l2.Challenge([]string{"hmac+sha256"}, []string{"hmac+sha256"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Verify(context.Background(), []byte("00"), salt); !errors.Is(err, ErrFailed) {
		t.Errorf("wrong response: %v", err)
	}
	// Only xor or a weak digest offered: refused.
	for _, d := range [][]string{{"xor"}, {"hmac+sha1", "hmac+md5"}} {
		if _, err := NewSecretLogin("secret", "u", tr, check).Challenge(d, []string{"hmac+sha256"}); err == nil {
			t.Errorf("challenge with %v offered: accepted", d)
		}
	}
	// A wrong secret.
	l3 := NewSecretLogin("secret", "u", tr, check)
	ch, _ = l3.Challenge([]string{"hmac+sha512"}, []string{"hmac+sha512"})
	resp, salt, _ = Respond([]byte("other"), *ch, false)
	if _, err := l3.Verify(context.Background(), resp, salt); !errors.Is(err, ErrFailed) {
		t.Errorf("wrong secret: %v", err)
	}
}
