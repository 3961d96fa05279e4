package auth

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"golang.org/x/crypto/bcrypt"
)

func TestUsersHashed(t *testing.T) {
	argon := HashPassword([]byte("argon-pw"))
	if !strings.HasPrefix(argon, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("hash %q", argon)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("bcrypt-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// The users come from a real TOML document, as the config decodes them.
	doc := `
[[user]]
name = "plain"
password = "plain-pw"
uid = "nobody"
gid = "nobody"
displays = ["tcp://127.0.0.1:10000/"]
env = { A = "1" }
session_options = { compression = "0" }

[[user]]
name = "argon"
password_hash = '` + argon + `'
displays = [":7"]

[[user]]
name = "bc"
password_hash = '` + string(bc) + `'
`
	var cfg struct {
		Users []User `toml:"user"`
	}
	if err := toml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	a := mustNew(t, "toml", Options{Users: cfg.Users})

	// plaintext: hmac everywhere.
	for _, tr := range []Transport{plainTCP, tlsTCP} {
		l := a.Begin("plain", tr)
		ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
		if err != nil || ch.Digest != "hmac+sha512" {
			t.Fatalf("plain user on %s: %+v %v", tr.Kind, ch, err)
		}
		resp, cs, _ := Respond([]byte("plain-pw"), *ch, tr.Encrypted)
		id, err := l.Verify(context.Background(), resp, cs)
		if err != nil {
			t.Fatal(err)
		}
		want := Identity{Username: "plain", Module: "toml", UID: "nobody", GID: "nobody", Displays: []string{"tcp://127.0.0.1:10000/"},
			Env: map[string]string{"A": "1"}, SessionOptions: map[string]string{"compression": "0"}}
		if !reflect.DeepEqual(id, want) {
			t.Fatalf("identity %+v", id)
		}
	}
	for _, u := range []struct{ name, pw string }{{"argon", "argon-pw"}, {"bc", "bcrypt-pw"}} {
		// Encrypted: xor, the right password passes, a wrong one fails.
		l := a.Begin(u.name, tlsTCP)
		ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
		if err != nil || ch.Digest != "xor" || ch.SaltDigest != "hmac+sha512" {
			t.Fatalf("%s: %+v %v", u.name, ch, err)
		}
		resp, cs, err := Respond([]byte(u.pw), *ch, true)
		if err != nil {
			t.Fatal(err)
		}
		if string(resp) == u.pw {
			t.Fatal("xor response is the password itself")
		}
		if id, err := l.Verify(context.Background(), resp, cs); err != nil || id.Username != u.name {
			t.Fatalf("%s: %+v %v", u.name, id, err)
		}
		if _, err := doLogin(t, a, u.name, u.pw+"x", tlsTCP); !errors.Is(err, ErrFailed) {
			t.Fatalf("%s wrong password: %v", u.name, err)
		}
		// Plain transport: refused with a reason, never an xor challenge.
		_, err = a.Begin(u.name, plainTCP).Challenge(xpraDigests, xpraSaltDigests)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, "encrypted") {
			t.Fatalf("%s on plain tcp: %v", u.name, err)
		}
		// A client without xor is refused too.
		_, err = a.Begin(u.name, tlsTCP).Challenge([]string{"hmac+sha256"}, xpraSaltDigests)
		if !errors.As(err, &re) {
			t.Fatalf("%s without xor: %v", u.name, err)
		}
		// An hmac answer (a client that ignores the digest) cannot pass.
		l = a.Begin(u.name, tlsTCP)
		ch, _ = l.Challenge(xpraDigests, xpraSaltDigests)
		ch.Digest = "hmac+sha512"
		resp, cs, _ = Respond([]byte(u.pw), *ch, true)
		if _, err := l.Verify(context.Background(), resp, cs); !errors.Is(err, ErrFailed) {
			t.Fatalf("%s hmac answer to xor: %v", u.name, err)
		}
	}
	// Unknown users get a normal hmac challenge on both transports.
	for _, tr := range []Transport{plainTCP, tlsTCP} {
		ch, err := a.Begin("ghost", tr).Challenge(xpraDigests, xpraSaltDigests)
		if err != nil || ch.Digest != "hmac+sha512" {
			t.Fatalf("ghost on %s: %+v %v", tr.Kind, ch, err)
		}
		if _, err := doLogin(t, a, "ghost", "plain-pw", tr); !errors.Is(err, ErrFailed) {
			t.Fatal(err)
		}
	}
}

func TestUsersConfigErrors(t *testing.T) {
	bad := [][]User{
		{{Name: "", Password: "x"}},
		{{Name: "a", Password: "x"}, {Name: "a", Password: "y"}},
		{{Name: "a"}},
		{{Name: "a", Password: "x", PasswordHash: HashPassword([]byte("x"))}},
		{{Name: "a", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$"}},
		{{Name: "a", PasswordHash: "$argon2id$v=19$m=99999999,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"}},
		{{Name: "a", PasswordHash: "$2b$99$abc"}},
		{{Name: "a", PasswordHash: "sha256:abc"}},
	}
	for i, u := range bad {
		if _, err := New(Spec{Name: "toml"}, Options{Users: u}); err == nil {
			t.Errorf("case %d: no error", i)
		} else if strings.Contains(err.Error(), "$argon2id") {
			t.Errorf("case %d: error quotes the hash: %v", i, err)
		}
	}
}

func TestArgon2idParsing(t *testing.T) {
	h := HashPassword([]byte("pw"))
	if !verifyHash(h, []byte("pw")) || verifyHash(h, []byte("pw2")) || verifyHash(h, nil) {
		t.Fatal("argon2id verify")
	}
	// A hash made elsewhere (RFC 9106 parameters, padded base64 tolerated).
	for _, s := range []string{h, strings.Replace(h, "$v=19$", "$v=19$", 1)} {
		if _, err := parseArgon2id(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{
		"$argon2id$v=16$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=65536,t=0,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=65536,t=3$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=65536,t=3,p=4,x=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=65536,t=3,p=4$!!$aGFzaGhhc2g",
		"$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ",
	} {
		if _, err := parseArgon2id(s); err == nil {
			t.Errorf("parsed %q", s)
		}
		if verifyHash(s, []byte("pw")) {
			t.Errorf("verified %q", s)
		}
	}
}
