package auth

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func seq(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

func mustHMAC(t *testing.T, d string, key, msg []byte) string {
	t.Helper()
	h, err := hmacHex(d, key, msg)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// Vectors from reference 3.4 (observed with xpra 3.1.3).
func TestDigestVectors(t *testing.T) {
	server := seq(0, 64)
	client := seq(100, 32)
	pw := []byte("secret")

	salt256 := mustHMAC(t, "hmac+sha256", client, server)
	if salt256 != "c6ddbd2786d6182d273a23d702751593631bcccd0d4ce9850310f9f675ab2cd3" {
		t.Errorf("salt(hmac+sha256) = %s", salt256)
	}
	if r := mustHMAC(t, "hmac+sha256", pw, []byte(salt256)); r != "c8df66360e37a10c9af2d9ba5fa6f67653ac78ce74fb1dcf7b71e32ad44cb419" {
		t.Errorf("response(hmac+sha256) = %s", r)
	}
	for _, d := range []string{"hmac", "hmac+md5"} {
		if r := mustHMAC(t, d, pw, []byte(salt256)); r != "ed00ed1c828351fff8f90839b41723a9" {
			t.Errorf("response(%s) = %s", d, r)
		}
	}
	salt512 := mustHMAC(t, "hmac+sha512", client, server)
	if !strings.HasPrefix(salt512, "851fd3a0") || !strings.HasSuffix(salt512, "d9da2507") || len(salt512) != 128 {
		t.Errorf("salt(hmac+sha512) = %s", salt512)
	}
	if r := mustHMAC(t, "hmac+sha256", pw, []byte(salt512)); r != "7b9df8b04223663c206e2e5e50c255e6312e0b35235d5148405d65a804044beb" {
		t.Errorf("response(hmac+sha256, salt512) = %s", r)
	}
	// unittests/unit/net/HMAC_test.py
	if r := mustHMAC(t, "hmac", []byte("71051d81d27745b59c1c56c6e9046c19697e452453e04aa5abbd52c8edc8c232"), []byte("99ea464f-7117-4e38-95b3-d3aa80e7b806")); r != "dc26a074c9378b1b5735a27563320a26" {
		t.Errorf("HMAC_test = %s", r)
	}

	// The server side recomputes exactly these from the client's salt.
	l := &login{c: newReject(&optionReader{opts: map[string]string{}, seen: map[string]bool{}}), challenged: true, mode: modeHMAC,
		salt: server, digest: "hmac+sha256", saltDigest: "hmac+sha256"}
	p := &Password{base: base{name: "password"}, password: "secret"}
	l.c = p
	id, err := l.Verify(context.Background(), []byte("c8df66360e37a10c9af2d9ba5fa6f67653ac78ce74fb1dcf7b71e32ad44cb419"), client)
	if err != nil || id.Module != "password" {
		t.Fatalf("verify of the reference vector: %v %+v", err, id)
	}
}

// The xor combination: gendigest("xor", a, b) = a XOR b.ljust(len(a), 0)[:len(a)].
func TestXorPad(t *testing.T) {
	cases := []struct{ a, b, want string }{
		{"\x01\x02\x03", "\x01\x01", "\x00\x03\x03"}, // b padded with zeros
		{"\x0f\x0f", "\xf0\xf0\xff\xff", "\xff\xff"}, // b cut to len(a)
		{"secret", "", "secret"},                     // empty b
		{"", "abc", ""},                              // empty a
		{"pass", "pass", "\x00\x00\x00\x00"},         // self-inverse
		{"abc", "\x20\x20\x20", "ABC"},               // case flip
	}
	for _, c := range cases {
		if got := xorPad([]byte(c.a), []byte(c.b)); string(got) != c.want {
			t.Errorf("xor(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
	// xor digest round trip: the server recovers the password.
	salt := []byte(mustHMAC(t, "hmac+sha512", seq(100, 32), seq(0, 64)))
	resp := xorPad([]byte("secret"), salt)
	if got := xorPad(resp, salt); string(got) != "secret" {
		t.Fatalf("xor round trip = %q", got)
	}
}

func TestChooseHMAC(t *testing.T) {
	cases := []struct {
		offered []string
		want    string
	}{
		{xpraDigests, "hmac+sha512"},
		{[]string{"hmac+sha256", "hmac+sha384"}, "hmac+sha384"},
		{[]string{"hmac+md5", "hmac", "hmac+sha224"}, "hmac+sha224"},
		{[]string{"hmac+sha1", "hmac"}, ""}, // weak: only with AllowWeakDigests
		{[]string{"hmac", "xor"}, ""},
		{[]string{"xor", "des"}, ""},
		{[]string{"hmac+sha3_512", "hmac+blake2b"}, ""},
		{nil, ""},
	}
	for _, c := range cases {
		if got := chooseHMAC(c.offered); got != c.want {
			t.Errorf("chooseHMAC(%v) = %q, want %q", c.offered, got, c.want)
		}
	}
}

func TestRespond(t *testing.T) {
	ch := Challenge{Salt: seq(0, 64), Digest: "hmac+sha512", SaltDigest: "hmac+sha512"}
	r1, s1, err := Respond([]byte("pw"), ch, false)
	if err != nil {
		t.Fatal(err)
	}
	r2, s2, _ := Respond([]byte("pw"), ch, false)
	if len(s1) != 32 || bytes.Equal(s1, s2) || bytes.Equal(r1, r2) {
		t.Fatal("client salts must be fresh 32-byte values")
	}
	if len(r1) != 128 || strings.ToLower(string(r1)) != string(r1) {
		t.Fatalf("response is not lowercase sha512 hex: %d bytes", len(r1))
	}
	bad := []struct {
		name string
		ch   Challenge
		xor  bool
	}{
		{"xor on plain", Challenge{Salt: seq(0, 64), Digest: "xor", SaltDigest: "hmac+sha256"}, false},
		{"xor salt digest", Challenge{Salt: seq(0, 64), Digest: "hmac+sha256", SaltDigest: "xor"}, true},
		{"no salt digest", Challenge{Salt: seq(0, 64), Digest: "hmac+sha256"}, true},
		{"des", Challenge{Salt: seq(0, 64), Digest: "des", SaltDigest: "hmac+sha256"}, true},
		{"unknown", Challenge{Salt: seq(0, 64), Digest: "hmac+sha3_512", SaltDigest: "hmac+sha256"}, true},
		{"no salt", Challenge{Digest: "hmac+sha256", SaltDigest: "hmac+sha256"}, true},
	}
	for _, b := range bad {
		if _, _, err := Respond([]byte("pw"), b.ch, b.xor); err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
	if _, _, err := Respond(nil, ch, true); err == nil {
		t.Error("empty password: no error")
	}
	r, s, err := Respond([]byte("pw"), Challenge{Salt: seq(0, 64), Digest: "xor", SaltDigest: "hmac+sha256"}, true)
	if err != nil || len(r) != 2 || len(s) != 32 {
		t.Fatalf("xor respond: %v", err)
	}
	if !errors.Is(func() error { _, _, e := Respond([]byte("pw"), bad[0].ch, false); return e }(), ErrDigest) {
		t.Error("xor refusal does not wrap ErrDigest")
	}
}

func TestFakeChallenge(t *testing.T) {
	a, b := FakeChallenge(xpraDigests, xpraSaltDigests), FakeChallenge(xpraDigests, xpraSaltDigests)
	if len(a.Salt) != 64 || bytes.Equal(a.Salt, b.Salt) {
		t.Fatal("fake challenge salts must be fresh and 64 bytes")
	}
	if a.Digest != "hmac+sha512" || a.SaltDigest != "hmac+sha512" || a.Prompt != "password" {
		t.Fatalf("fake challenge %+v", a)
	}
	c := FakeChallenge([]string{"hmac"}, nil)
	if c.Digest != "hmac+sha512" || c.SaltDigest != "hmac+sha512" {
		t.Fatalf("fake challenge %+v", c)
	}
	AllowWeakDigests(true)
	t.Cleanup(func() { AllowWeakDigests(false) })
	if got := chooseHMAC([]string{"hmac+sha1", "hmac"}); got != "hmac+sha1" {
		t.Fatalf("with weak digests allowed: %q", got)
	}
	c = FakeChallenge([]string{"hmac"}, nil)
	if c.Digest != "hmac" || c.SaltDigest != "hmac" {
		t.Fatalf("fake challenge with weak digests %+v", c)
	}
}

// The real xpra.net.digest computes the same digests as ours, and the real
// xpra server-side authenticator accepts our Respond, in both directions.
func TestDifferentialPythonDigest(t *testing.T) {
	needXpraPython(t)
	AllowWeakDigests(true) // every digest xpra has, md5 and sha1 included
	t.Cleanup(func() { AllowWeakDigests(false) })
	const script = `
import sys, json, binascii
from xpra.net.digest import gendigest
from xpra.server.auth.sys_auth_base import SysAuthenticatorBase
class A(SysAuthenticatorBase):
    def __init__(self, pw):
        SysAuthenticatorBase.__init__(self, "someone")
        self.pw = pw
    def get_password(self):
        return self.pw
out = []
for c in json.load(sys.stdin):
    u = binascii.unhexlify
    if c["op"] == "gen":
        v = gendigest(c["digest"], u(c["key"]), u(c["msg"]))
        if isinstance(v, str):
            v = v.encode("latin1")
        out.append(binascii.hexlify(v).decode())
    elif c["op"] == "client":
        cs = u(c["client_salt"])
        salt = gendigest(c["salt_digest"], cs, u(c["server_salt"]))
        key = u(c["key"])
        if c.get("as_str"):
            key = key.decode("utf8")
        r = gendigest(c["digest"], key, salt)
        if isinstance(r, str):
            r = r.encode("latin1")
        out.append(binascii.hexlify(r).decode())
    else:
        a = A(u(c["key"]).decode("latin1"))
        a.salt = u(c["server_salt"])
        a.digest = c["digest"]
        a.salt_digest = c["salt_digest"]
        a.challenge_sent = True
        r = u(c["response"]).decode("latin1")
        out.append("ok" if a.authenticate_hmac(r, u(c["client_salt"])) else "no")
print(json.dumps(out))
`
	type kase struct {
		Op         string `json:"op"`
		Digest     string `json:"digest,omitempty"`
		SaltDigest string `json:"salt_digest,omitempty"`
		Key        string `json:"key,omitempty"`
		Msg        string `json:"msg,omitempty"`
		ServerSalt string `json:"server_salt,omitempty"`
		ClientSalt string `json:"client_salt,omitempty"`
		Response   string `json:"response,omitempty"`
		AsStr      bool   `json:"as_str,omitempty"`
	}
	var cases []kase
	var want []string
	digests := []string{"hmac", "hmac+md5", "hmac+sha1", "hmac+sha224", "hmac+sha256", "hmac+sha384", "hmac+sha512"}
	passwords := []string{"secret", "bar", "pässwörd", strings.Repeat("x", 200), "a|b;c=d"}
	for i, d := range digests {
		for j, pw := range passwords {
			key, msg := []byte(pw), randomBytes(1+(i*7+j*13)%150)
			h, _ := hmacHex(d, key, msg)
			cases = append(cases, kase{Op: "gen", Digest: d, Key: hex.EncodeToString(key), Msg: hex.EncodeToString(msg)})
			want = append(want, hex.EncodeToString(h))
		}
	}
	// xor, including a password longer than the salt.
	for _, pw := range []string{"secret", strings.Repeat("y", 150)} {
		salt := []byte(mustHMAC(t, "hmac+sha256", randomBytes(32), randomBytes(64)))
		cases = append(cases, kase{Op: "gen", Digest: "xor", Key: hex.EncodeToString([]byte(pw)), Msg: hex.EncodeToString(salt)})
		want = append(want, hex.EncodeToString(xorPad([]byte(pw), salt)))
	}
	// xpra's client math against our Verify; our Respond against xpra's server.
	type pending struct {
		l   *login
		idx int
	}
	var logins []pending
	pa, _ := New(Spec{Name: "password", Options: map[string]string{"value": "secret"}}, Options{})
	for _, d := range digests {
		for _, sd := range digests {
			l := pa.Begin("u", plainTCP).(*login)
			ch, err := l.Challenge([]string{d}, []string{sd})
			if err != nil {
				t.Fatal(err)
			}
			cs := randomBytes(32)
			cases = append(cases, kase{Op: "client", Digest: d, SaltDigest: sd, Key: hex.EncodeToString([]byte("secret")),
				ServerSalt: hex.EncodeToString(ch.Salt), ClientSalt: hex.EncodeToString(cs)})
			want = append(want, "")
			logins = append(logins, pending{l, len(cases) - 1})
			cases[len(cases)-1].Msg = hex.EncodeToString(cs) // remember our client salt

			resp, rcs, err := Respond([]byte("secret"), *ch, false)
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, kase{Op: "server", Digest: d, SaltDigest: sd, Key: hex.EncodeToString([]byte("secret")),
				ServerSalt: hex.EncodeToString(ch.Salt), ClientSalt: hex.EncodeToString(rcs), Response: hex.EncodeToString(resp)})
			want = append(want, "ok")
			wrong, wcs, _ := Respond([]byte("Secret"), *ch, false)
			cases = append(cases, kase{Op: "server", Digest: d, SaltDigest: sd, Key: hex.EncodeToString([]byte("secret")),
				ServerSalt: hex.EncodeToString(ch.Salt), ClientSalt: hex.EncodeToString(wcs), Response: hex.EncodeToString(wrong)})
			want = append(want, "no")
		}
	}
	// A 3.1 client holding a non-ASCII password as a str keys with latin1;
	// one reading a password file keys with its bytes (UTF-8).
	pu := mustNew(t, "password,value=pässwörd", Options{})
	for _, asStr := range []bool{true, false} {
		l := pu.Begin("u", plainTCP).(*login)
		ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
		if err != nil {
			t.Fatal(err)
		}
		cs := randomBytes(32)
		cases = append(cases, kase{Op: "client", Digest: ch.Digest, SaltDigest: ch.SaltDigest, Key: hex.EncodeToString([]byte("pässwörd")),
			ServerSalt: hex.EncodeToString(ch.Salt), ClientSalt: hex.EncodeToString(cs), Msg: hex.EncodeToString(cs), AsStr: asStr})
		want = append(want, "")
		logins = append(logins, pending{l, len(cases) - 1})
	}
	in, _ := json.Marshal(cases)
	out, err := runPython(t, script, in)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got []string
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil || len(got) != len(cases) {
		t.Fatalf("python output: %v\n%s", err, out)
	}
	for i := range cases {
		if want[i] != "" && got[i] != want[i] {
			t.Errorf("case %d (%s %s/%s): python %s, go %s", i, cases[i].Op, cases[i].Digest, cases[i].SaltDigest, got[i], want[i])
		}
	}
	for _, p := range logins {
		resp, _ := hex.DecodeString(got[p.idx])
		cs, _ := hex.DecodeString(cases[p.idx].Msg)
		if _, err := p.l.Verify(context.Background(), resp, cs); err != nil {
			t.Errorf("xpra client response for %s/%s rejected: %v", cases[p.idx].Digest, cases[p.idx].SaltDigest, err)
		}
	}
	if len(logins) != 51 {
		t.Fatalf("ran %d client cases", len(logins))
	}
}
